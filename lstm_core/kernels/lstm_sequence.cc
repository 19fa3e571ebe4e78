// Fused CPU LSTM recurrence for lstm_core (TensorFlow custom ops).
//
// LstmCoreSequence runs the whole time loop over inputs that are already projected
// (xw = x·W + b, time-major [T, B, 4H], gate order i, f, c, o as in Keras): per step one GEMM
// h·U into the step's [rows, 4H] block, then the gate math for that block in one pass.
// LstmCoreSequenceGrad is its BPTT: per step the fused gate derivatives, then one GEMM dz·Uᵀ.
// dU = Σ h_{t-1}ᵀ·dz_t and dW are single big matmuls done in TensorFlow after the loop.
//
// Batch rows never interact in an LSTM, so both ops split the batch into one contiguous shard per
// intra-op thread and every thread runs the whole sequence for its rows: no per-step
// synchronisation, and each shard's h, c and U stay in that core's cache.
//
// Masks follow keras.backend.rnn: a masked step carries (h, c) over and emits the previous output
// (zeros with zero_output_for_mask; zeros before the first unmasked step).

#include <algorithm>
#include <cstring>
#include <functional>

#include "Eigen/Core"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/platform/blocking_counter.h"
#include "tensorflow/core/platform/threadpool.h"

namespace lstm_core {
namespace {

using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::errors::InvalidArgument;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixMap = Eigen::Map<RowMatrix>;
using ConstMatrixMap = Eigen::Map<const RowMatrix>;
using ArrayMap = Eigen::Map<Eigen::ArrayXf>;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXf>;

// Sizes shared by the forward and backward shards.
struct Dims {
  int64_t steps;   // T
  int64_t batch;   // B
  int64_t units;   // H
  int64_t gates() const { return 4 * units; }
};

// Runs fn(row_begin, row_end) for contiguous batch shards, one per intra-op thread, and waits.
void ForEachBatchShard(OpKernelContext* context, int64_t batch,
                       const std::function<void(int64_t, int64_t)>& fn) {
  auto* pool = context->device()->tensorflow_cpu_worker_threads()->workers;
  const int64_t shards = std::max<int64_t>(1, std::min<int64_t>(pool->NumThreads(), batch));
  const int64_t base = batch / shards, extra = batch % shards;
  ::tensorflow::BlockingCounter done(static_cast<int>(shards - 1));
  int64_t begin = 0;
  int64_t first_end = 0;
  for (int64_t s = 0; s < shards; ++s) {
    const int64_t end = begin + base + (s < extra ? 1 : 0);
    if (s == 0) {
      first_end = end;
    } else {
      pool->Schedule([&fn, &done, begin, end] {
        fn(begin, end);
        done.DecrementCount();
      });
    }
    begin = end;
  }
  fn(0, first_end);  // the calling thread takes the first shard
  done.Wait();
}

// ---------------------------------------------------------------------------------- forward
struct ForwardBuffers {
  const float* xw;      // [T, B, 4H]
  const float* h0;      // [B, H]
  const float* c0;      // [B, H]
  const float* kernel;  // U [H, 4H]
  const float* mask;    // [T, B] or nullptr
  float* outputs;       // [T, B, H]
  float* gates;         // [T, B, 4H] activated i, f, g, o
  float* cells;         // [T, B, H] c after each step
  float* hidden;        // [T, B, H] h after each step (== outputs without a mask)
};

void ForwardShard(const Dims& d, const ForwardBuffers& io, bool zero_output_for_mask,
                  int64_t row_begin, int64_t row_end) {
  const int64_t rows = row_end - row_begin, H = d.units, G = d.gates(), B = d.batch;
  ConstMatrixMap recurrent_kernel(io.kernel, H, G);
  for (int64_t t = 0; t < d.steps; ++t) {
    const int64_t step_row = t * B + row_begin;
    const float* h_prev = t ? io.hidden + (step_row - B) * H : io.h0 + row_begin * H;
    const float* c_prev = t ? io.cells + (step_row - B) * H : io.c0 + row_begin * H;
    float* z = io.gates + step_row * G;
    MatrixMap z_block(z, rows, G);
    z_block = ConstMatrixMap(io.xw + step_row * G, rows, G);
    z_block.noalias() += ConstMatrixMap(h_prev, rows, H) * recurrent_kernel;
    for (int64_t r = 0; r < rows; ++r) {
      float* zr = z + r * G;
      ArrayMap if_gates(zr, 2 * H), candidate(zr + 2 * H, H), out_gate(zr + 3 * H, H);
      if_gates = if_gates.logistic();
      candidate = candidate.tanh();
      out_gate = out_gate.logistic();
      ConstArrayMap input_gate(zr, H), forget_gate(zr + H, H), c_old(c_prev + r * H, H);
      ArrayMap c_new(io.cells + (step_row + r) * H, H), h_new(io.hidden + (step_row + r) * H, H);
      const bool keep = io.mask == nullptr || io.mask[step_row + r] > 0.5f;
      if (keep) {
        c_new = forget_gate * c_old + input_gate * candidate;
        h_new = out_gate * c_new.tanh();
      } else {
        c_new = c_old;
        h_new = ConstArrayMap(h_prev + r * H, H);
      }
      if (io.mask != nullptr) {
        ArrayMap out(io.outputs + (step_row + r) * H, H);
        if (keep) {
          out = h_new;
        } else if (zero_output_for_mask || t == 0) {
          out.setZero();
        } else {
          out = ConstArrayMap(io.outputs + (step_row - B + r) * H, H);
        }
      }
    }
  }
}

class LstmCoreSequenceOp : public OpKernel {
 public:
  explicit LstmCoreSequenceOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("zero_output_for_mask", &zero_output_for_mask_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& xw = context->input(0);
    const Tensor& h0 = context->input(1);
    const Tensor& c0 = context->input(2);
    const Tensor& kernel = context->input(3);
    const Tensor& mask = context->input(4);
    OP_REQUIRES(context, xw.dims() == 3, InvalidArgument("xw must be [T, B, 4H]"));
    OP_REQUIRES(context, kernel.dims() == 2 && kernel.dim_size(1) == 4 * kernel.dim_size(0),
                InvalidArgument("recurrent_kernel must be [H, 4H]"));
    const Dims d{xw.dim_size(0), xw.dim_size(1), kernel.dim_size(0)};
    OP_REQUIRES(context, xw.dim_size(2) == d.gates(),
                InvalidArgument("xw's last dimension must be 4H = ", d.gates()));
    const TensorShape state_shape({d.batch, d.units});
    OP_REQUIRES(context, h0.shape() == state_shape && c0.shape() == state_shape,
                InvalidArgument("h0 and c0 must be [B, H]"));
    const bool has_mask = mask.NumElements() > 0;
    OP_REQUIRES(context, !has_mask || mask.shape() == TensorShape({d.steps, d.batch}),
                InvalidArgument("mask must be [T, B] or empty"));

    const TensorShape seq_shape({d.steps, d.batch, d.units});
    Tensor *outputs, *h_last, *c_last, *gates, *cells, *hidden;
    OP_REQUIRES_OK(context, context->allocate_output(0, seq_shape, &outputs));
    OP_REQUIRES_OK(context, context->allocate_output(1, state_shape, &h_last));
    OP_REQUIRES_OK(context, context->allocate_output(2, state_shape, &c_last));
    OP_REQUIRES_OK(context, context->allocate_output(3, xw.shape(), &gates));
    OP_REQUIRES_OK(context, context->allocate_output(4, seq_shape, &cells));
    if (has_mask) {
      OP_REQUIRES_OK(context, context->allocate_output(5, seq_shape, &hidden));
    } else {
      context->set_output(5, *outputs);  // without a mask every output is the state
      hidden = outputs;
    }
    if (d.steps == 0) {
      h_last->flat<float>() = h0.flat<float>();
      c_last->flat<float>() = c0.flat<float>();
      return;
    }
    const ForwardBuffers io{xw.flat<float>().data(),     h0.flat<float>().data(),
                            c0.flat<float>().data(),     kernel.flat<float>().data(),
                            has_mask ? mask.flat<float>().data() : nullptr,
                            outputs->flat<float>().data(), gates->flat<float>().data(),
                            cells->flat<float>().data(), hidden->flat<float>().data()};
    const bool zero_output = zero_output_for_mask_;
    ForEachBatchShard(context, d.batch, [&](int64_t begin, int64_t end) {
      ForwardShard(d, io, zero_output, begin, end);
    });
    const int64_t last = (d.steps - 1) * d.batch * d.units, n = d.batch * d.units;
    std::memcpy(h_last->flat<float>().data(), io.hidden + last, n * sizeof(float));
    std::memcpy(c_last->flat<float>().data(), io.cells + last, n * sizeof(float));
  }

 private:
  bool zero_output_for_mask_;
};

// --------------------------------------------------------------------------------- backward
struct BackwardBuffers {
  const float* kernel;     // U [H, 4H]
  const float* mask;       // [T, B] or nullptr
  const float* c0;         // [B, H]
  const float* gates;      // [T, B, 4H] from the forward op
  const float* cells;      // [T, B, H] from the forward op
  const float* d_outputs;  // [T, B, H]
  const float* d_h;        // [B, H] gradient of the last h
  const float* d_c;        // [B, H] gradient of the last c
  float* d_xw;             // [T, B, 4H] = dz
  float* d_h0;             // [B, H]
  float* d_c0;             // [B, H]
};

void BackwardShard(const Dims& d, const BackwardBuffers& io, bool zero_output_for_mask,
                   int64_t row_begin, int64_t row_end) {
  const int64_t rows = row_end - row_begin, H = d.units, G = d.gates(), B = d.batch;
  ConstMatrixMap recurrent_kernel(io.kernel, H, G);
  // Running gradients w.r.t. the state (h, c) and, for masks, the carried previous output.
  MatrixMap dh(io.d_h0 + row_begin * H, rows, H);
  MatrixMap dc(io.d_c0 + row_begin * H, rows, H);
  dh = ConstMatrixMap(io.d_h + row_begin * H, rows, H);
  dc = ConstMatrixMap(io.d_c + row_begin * H, rows, H);
  RowMatrix d_carried_output, dh_from_gemm(rows, H);
  if (io.mask != nullptr) d_carried_output = RowMatrix::Zero(rows, H);
  Eigen::ArrayXf d_h_total(H), tanh_c(H), d_c_total(H);
  for (int64_t t = d.steps - 1; t >= 0; --t) {
    const int64_t step_row = t * B + row_begin;
    float* dz = io.d_xw + step_row * G;
    for (int64_t r = 0; r < rows; ++r) {
      const bool keep = io.mask == nullptr || io.mask[step_row + r] > 0.5f;
      ConstArrayMap d_out(io.d_outputs + (step_row + r) * H, H);
      ArrayMap dzr(dz + r * G, G);
      ArrayMap dh_r(dh.data() + r * H, H), dc_r(dc.data() + r * H, H);
      if (!keep) {  // state carried over unchanged; the output carried (or zeroed)
        dzr.setZero();
        ArrayMap carried(d_carried_output.data() + r * H, H);
        if (zero_output_for_mask) {
          carried.setZero();
        } else {
          carried += d_out;
        }
        continue;
      }
      d_h_total = dh_r + d_out;
      if (io.mask != nullptr) {
        ArrayMap carried(d_carried_output.data() + r * H, H);
        d_h_total += carried;
        carried.setZero();
      }
      const float* gr = io.gates + (step_row + r) * G;
      ConstArrayMap i(gr, H), f(gr + H, H), g(gr + 2 * H, H), o(gr + 3 * H, H);
      ConstArrayMap c(io.cells + (step_row + r) * H, H);
      ConstArrayMap c_prev(t ? io.cells + (step_row - B + r) * H : io.c0 + (row_begin + r) * H, H);
      tanh_c = c.tanh();
      d_c_total = dc_r + d_h_total * o * (1.0f - tanh_c.square());
      dzr.segment(0, H) = d_c_total * g * i * (1.0f - i);
      dzr.segment(H, H) = d_c_total * c_prev * f * (1.0f - f);
      dzr.segment(2 * H, H) = d_c_total * i * (1.0f - g.square());
      dzr.segment(3 * H, H) = d_h_total * tanh_c * o * (1.0f - o);
      dc_r = d_c_total * f;
    }
    // Masked rows have dz = 0, so their GEMM row is 0 and dh simply carries over.
    dh_from_gemm.noalias() = ConstMatrixMap(dz, rows, G) * recurrent_kernel.transpose();
    for (int64_t r = 0; r < rows; ++r) {
      if (io.mask == nullptr || io.mask[step_row + r] > 0.5f) dh.row(r) = dh_from_gemm.row(r);
    }
  }
}

class LstmCoreSequenceGradOp : public OpKernel {
 public:
  explicit LstmCoreSequenceGradOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("zero_output_for_mask", &zero_output_for_mask_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& kernel = context->input(0);
    const Tensor& mask = context->input(1);
    const Tensor& c0 = context->input(2);
    const Tensor& gates = context->input(3);
    const Tensor& cells = context->input(4);
    const Tensor& d_outputs = context->input(5);
    const Tensor& d_h = context->input(6);
    const Tensor& d_c = context->input(7);
    OP_REQUIRES(context, gates.dims() == 3 && kernel.dims() == 2,
                InvalidArgument("gates must be [T, B, 4H] and recurrent_kernel [H, 4H]"));
    const Dims d{gates.dim_size(0), gates.dim_size(1), kernel.dim_size(0)};
    const TensorShape seq_shape({d.steps, d.batch, d.units});
    const TensorShape state_shape({d.batch, d.units});
    OP_REQUIRES(context,
                gates.dim_size(2) == d.gates() && kernel.dim_size(1) == d.gates() &&
                    cells.shape() == seq_shape && d_outputs.shape() == seq_shape &&
                    c0.shape() == state_shape && d_h.shape() == state_shape &&
                    d_c.shape() == state_shape,
                InvalidArgument("inconsistent shapes for the LSTM gradient"));
    const bool has_mask = mask.NumElements() > 0;
    OP_REQUIRES(context, !has_mask || mask.shape() == TensorShape({d.steps, d.batch}),
                InvalidArgument("mask must be [T, B] or empty"));
    Tensor *d_xw, *d_h0, *d_c0;
    OP_REQUIRES_OK(context, context->allocate_output(0, gates.shape(), &d_xw));
    OP_REQUIRES_OK(context, context->allocate_output(1, state_shape, &d_h0));
    OP_REQUIRES_OK(context, context->allocate_output(2, state_shape, &d_c0));
    const BackwardBuffers io{kernel.flat<float>().data(),
                             has_mask ? mask.flat<float>().data() : nullptr,
                             c0.flat<float>().data(),
                             gates.flat<float>().data(),
                             cells.flat<float>().data(),
                             d_outputs.flat<float>().data(),
                             d_h.flat<float>().data(),
                             d_c.flat<float>().data(),
                             d_xw->flat<float>().data(),
                             d_h0->flat<float>().data(),
                             d_c0->flat<float>().data()};
    const bool zero_output = zero_output_for_mask_;
    ForEachBatchShard(context, d.batch, [&](int64_t begin, int64_t end) {
      BackwardShard(d, io, zero_output, begin, end);
    });
  }

 private:
  bool zero_output_for_mask_;
};

// ------------------------------------------------------------------------------ registration
::tensorflow::Status SequenceShape(InferenceContext* c) {
  ShapeHandle xw, kernel;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &xw));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 2, &kernel));
  DimensionHandle steps = c->Dim(xw, 0), batch = c->Dim(xw, 1), units = c->Dim(kernel, 0);
  ShapeHandle sequence = c->MakeShape({steps, batch, units});
  ShapeHandle state = c->MakeShape({batch, units});
  c->set_output(0, sequence);
  c->set_output(1, state);
  c->set_output(2, state);
  c->set_output(3, xw);
  c->set_output(4, sequence);
  c->set_output(5, sequence);
  return ::tensorflow::OkStatus();
}

::tensorflow::Status SequenceGradShape(InferenceContext* c) {
  c->set_output(0, c->input(3));
  c->set_output(1, c->input(2));
  c->set_output(2, c->input(2));
  return ::tensorflow::OkStatus();
}

}  // namespace

REGISTER_OP("LstmCoreSequence")
    .Input("xw: float")
    .Input("h0: float")
    .Input("c0: float")
    .Input("recurrent_kernel: float")
    .Input("mask: float")
    .Attr("zero_output_for_mask: bool = false")
    .Output("outputs: float")
    .Output("h: float")
    .Output("c: float")
    .Output("gates: float")
    .Output("cells: float")
    .Output("hidden: float")
    .SetShapeFn(SequenceShape)
    .Doc("lstm_core's fused LSTM time loop over projected inputs xw = x·W + b.");

REGISTER_OP("LstmCoreSequenceGrad")
    .Input("recurrent_kernel: float")
    .Input("mask: float")
    .Input("c0: float")
    .Input("gates: float")
    .Input("cells: float")
    .Input("d_outputs: float")
    .Input("d_h: float")
    .Input("d_c: float")
    .Attr("zero_output_for_mask: bool = false")
    .Output("d_xw: float")
    .Output("d_h0: float")
    .Output("d_c0: float")
    .SetShapeFn(SequenceGradShape)
    .Doc("BPTT of LstmCoreSequence: d_xw (= dz), d_h0, d_c0; dU is hᵀ·dz outside.");

REGISTER_KERNEL_BUILDER(Name("LstmCoreSequence").Device(DEVICE_CPU), LstmCoreSequenceOp);
REGISTER_KERNEL_BUILDER(Name("LstmCoreSequenceGrad").Device(DEVICE_CPU), LstmCoreSequenceGradOp);

}  // namespace lstm_core
