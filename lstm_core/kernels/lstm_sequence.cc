// Fused CPU LSTM recurrence for lstm_core (TensorFlow custom ops).
//
// LstmCoreSequence runs the whole time loop, input projection included (x batch-major [B, T, I],
// gate order i, f, c, o as in Keras): per step one GEMM [x_t, h]·[W; U] + b into the step's
// [rows, 4H] block, then the gate math for that block in one pass. Projecting inside the loop
// (rather than one big x·W matmul before it) means the [B, T, 4H] projected inputs are never
// written to memory and read back: at T=100 B=64 H=128 that is 13 MB each way, more than the
// caches hold, and it cost more than the arithmetic.
// LstmCoreSequenceGrad is its BPTT: per step the fused gate derivatives, then one GEMM dz·Uᵀ.
// dU = Σ h_{t-1}ᵀ·dz_t, dW = Σ x_tᵀ·dz_t, dx = dz·Wᵀ and db = Σ dz are single big matmuls done
// in TensorFlow after the loop.
//
// Batch rows never interact in an LSTM, so both ops split the batch into one contiguous shard per
// intra-op thread and every thread runs the whole sequence for its rows: no per-step
// synchronisation, and each shard's h, c and U stay in that core's cache.
//
// Masks follow keras.backend.rnn: a masked step carries (h, c) over and emits the previous output
// (zeros with zero_output_for_mask; zeros before the first unmasked step).

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) && ((defined(__clang__) && __clang_major__ >= 11) || \
                          (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 10))
#define LSTM_CORE_BF16_INTRINSICS 1  // the compiler knows avx512bf16 (vdpbf16ps)
#include <immintrin.h>
#else
#define LSTM_CORE_BF16_INTRINSICS 0
#endif

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

// Sizes shared by the forward and backward shards. Every sequence tensor is batch-major
// [B, T, ·] (as Keras hands them over), so a shard's rows are one contiguous block and no
// transposes are needed around the ops; step s reads input time s, or T-1-s for go_backwards.
struct Dims {
  int64_t steps;   // T
  int64_t batch;   // B
  int64_t units;   // H
  bool go_backwards;
  int64_t inputs = 0;  // I (the forward op only)
  int64_t gates() const { return 4 * units; }
  int64_t input_time(int64_t step) const { return go_backwards ? steps - 1 - step : step; }
};

// Runs fn(row_begin, row_end) over the batch in shards of about kShardRows rows, on the calling
// thread and the intra-op pool; threads take the next shard when done, so a core slowed down by
// another process ends up with fewer shards.
void ForEachBatchShard(OpKernelContext* context, int64_t batch,
                       const std::function<void(int64_t, int64_t)>& fn) {
  constexpr int64_t kShardRows = 16;
  auto* pool = context->device()->tensorflow_cpu_worker_threads()->workers;
  const int64_t threads = std::max<int64_t>(1, pool->NumThreads());
  // a multiple of the thread count, so that equal shards also end up evenly spread
  const int64_t wanted = (batch + kShardRows - 1) / kShardRows;
  const int64_t shards = std::max<int64_t>(
      1, std::min<int64_t>(batch, (wanted + threads - 1) / threads * threads));
  const int64_t workers = std::min<int64_t>(threads, shards);
  std::atomic<int64_t> next_shard{0};
  auto run_shards = [&] {
    for (int64_t s = next_shard++; s < shards; s = next_shard++) {
      fn(batch * s / shards, batch * (s + 1) / shards);
    }
  };
  ::tensorflow::BlockingCounter done(static_cast<int>(workers - 1));
  for (int64_t w = 1; w < workers; ++w) {
    pool->Schedule([&run_shards, &done] {
      run_shards();
      done.DecrementCount();
    });
  }
  run_shards();
  done.Wait();
}


// ------------------------------------------------------------------------------------ GEMM
// C_out = C_in + A·B for the per-step products h·U [rows, H]x[H, 4H] and dz·Uᵀ [rows, 4H]x[4H, H].
// B is packed once per op call into panels of two vectors' width (a general GEMM would re-pack U
// at every one of the T steps), and a 6-row register-tile micro-kernel walks each panel. GCC
// vector extensions: AVX-512 / AVX2+FMA code with the matching -m flags, plain SSE otherwise.
#if defined(__AVX512F__)
constexpr int kLanes = 16;
#else
constexpr int kLanes = 8;
#endif
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));
constexpr int kPanelVecs = 2;
constexpr int64_t kPanel = kPanelVecs * kLanes;  // columns per packed panel
// Rows per micro-kernel call: 12 accumulators + 2 B + 1 A fit AVX2's 16 registers. (With
// AVX-512 on a Zen 5 core, 8 x 2, 8 x 3, 4 x 4 and 6 x 4 tiles measured the same within noise.)
constexpr int kTileRows = 6;

inline Vec LoadVec(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void StoreVec(float* p, Vec v) { std::memcpy(p, &v, sizeof(v)); }

// exp, sigmoid and tanh on whole vectors. Eigen's logistic() ran element by element here (a scalar
// expf and a division per element), a third of the forward time. Cephes-style exp: round x·log2(e)
// to n, a degree-5 polynomial on the remainder, times 2^n built in the exponent bits; relative
// error ~2 ulp, so the kernel stays within 1e-6 of TensorFlow's activations.
typedef int32_t VecInt __attribute__((vector_size(kLanes * sizeof(int32_t))));

inline Vec Broadcast(float x) { return Vec{} + x; }

inline Vec ExpVec(Vec x) {
  // within [-87, 88] 2^n stays a normal float (exp(-87) = 1.6e-38); sigmoid and tanh saturate
  x = x < Broadcast(88.0f) ? x : Broadcast(88.0f);
  x = x > Broadcast(-87.0f) ? x : Broadcast(-87.0f);
  const Vec round_magic = Broadcast(12582912.0f);  // 1.5·2^23: adding it rounds to an integer
  const Vec n = (x * 1.44269504088896341f + round_magic) - round_magic;
  const Vec r = x - n * 0.693359375f + n * 2.12194440e-4f;  // x - n·ln2, ln2 split in two
  Vec poly = Broadcast(1.9875691500e-4f);
  poly = poly * r + 1.3981999507e-3f;
  poly = poly * r + 8.3334519073e-3f;
  poly = poly * r + 4.1665795894e-2f;
  poly = poly * r + 1.6666665459e-1f;
  poly = poly * r + 5.0000001201e-1f;
  poly = poly * r * r + r + 1.0f;
  VecInt bits = (__builtin_convertvector(n, VecInt) + 127) << 23;
  Vec scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return poly * scale;
}
inline Vec SigmoidVec(Vec x) { return 1.0f / (1.0f + ExpVec(-x)); }
inline Vec TanhVec(Vec x) { return 2.0f / (1.0f + ExpVec(-2.0f * x)) - 1.0f; }
inline float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// One row's step: activates z = [i, f, g, o] in place (i, f, o sigmoid, g tanh) and computes
// c_new = f·c_old + i·g and h_new = o·tanh(c_new).
inline void GateRow(int64_t units, float* z, const float* c_old, float* c_new, float* h_new) {
  float *i = z, *f = z + units, *g = z + 2 * units, *o = z + 3 * units;
  int64_t j = 0;
  for (; j + kLanes <= units; j += kLanes) {
    const Vec iv = SigmoidVec(LoadVec(i + j)), fv = SigmoidVec(LoadVec(f + j));
    const Vec gv = TanhVec(LoadVec(g + j)), ov = SigmoidVec(LoadVec(o + j));
    const Vec cv = fv * LoadVec(c_old + j) + iv * gv;
    StoreVec(i + j, iv);
    StoreVec(f + j, fv);
    StoreVec(g + j, gv);
    StoreVec(o + j, ov);
    StoreVec(c_new + j, cv);
    StoreVec(h_new + j, ov * TanhVec(cv));
  }
  for (; j < units; ++j) {
    i[j] = Sigmoid(i[j]);
    f[j] = Sigmoid(f[j]);
    g[j] = std::tanh(g[j]);
    o[j] = Sigmoid(o[j]);
    c_new[j] = f[j] * c_old[j] + i[j] * g[j];
    h_new[j] = o[j] * std::tanh(c_new[j]);
  }
}

// B (K x N) as ceil(N / kPanel) panels of K rows x kPanel columns, zero-padded on the right.
struct PackedPanels {
  int64_t depth = 0, cols = 0;
  std::vector<float> data;

  // Packs element (k, n) = src[k * row_stride + n * col_stride].
  PackedPanels(const float* src, int64_t depth_, int64_t cols_, int64_t row_stride,
               int64_t col_stride)
      : depth(depth_), cols(cols_), data(((cols_ + kPanel - 1) / kPanel) * kPanel * depth_, 0.f) {
    for (int64_t p = 0; p * kPanel < cols; ++p) {
      float* panel = data.data() + p * depth * kPanel;
      const int64_t width = std::min(kPanel, cols - p * kPanel);
      for (int64_t k = 0; k < depth; ++k) {
        for (int64_t j = 0; j < width; ++j) {
          panel[k * kPanel + j] = src[k * row_stride + (p * kPanel + j) * col_stride];
        }
      }
    }
  }
  // Packs [top; bottom] (top_rows + bottom_rows rows of cols_ floats each, row-major): the
  // forward op's [W; U], so that one product per step covers the input and the recurrence.
  PackedPanels(const float* top, int64_t top_rows, const float* bottom, int64_t bottom_rows,
               int64_t cols_)
      : depth(top_rows + bottom_rows), cols(cols_),
        data(((cols_ + kPanel - 1) / kPanel) * kPanel * (top_rows + bottom_rows), 0.f) {
    for (int64_t p = 0; p * kPanel < cols; ++p) {
      float* panel = data.data() + p * depth * kPanel;
      const int64_t width = std::min(kPanel, cols - p * kPanel);
      for (int64_t k = 0; k < depth; ++k) {
        const float* row = k < top_rows ? top + k * cols : bottom + (k - top_rows) * cols;
        std::copy(row + p * kPanel, row + p * kPanel + width, panel + k * kPanel);
      }
    }
  }
  const float* panel(int64_t p) const { return data.data() + p * depth * kPanel; }
};

template <int kRows>
void MicroKernel(int64_t depth, const float* a, int64_t lda, const float* panel,
                 const float* c_in, int64_t ldc_in, float* c_out, int64_t ldc, int64_t width) {
  Vec acc[kRows][kPanelVecs];
  float edge[kPanel];
  for (int r = 0; r < kRows; ++r) {
    const float* row_in = c_in;
    if (c_in != nullptr && width != kPanel) {
      std::fill(edge, edge + kPanel, 0.f);
      std::copy(c_in + r * ldc_in, c_in + r * ldc_in + width, edge);
      row_in = edge;
    } else if (c_in != nullptr) {
      row_in = c_in + r * ldc_in;
    }
    for (int v = 0; v < kPanelVecs; ++v) acc[r][v] = row_in ? LoadVec(row_in + v * kLanes) : Vec{};
  }
  for (int64_t k = 0; k < depth; ++k) {
    Vec b[kPanelVecs];
    for (int v = 0; v < kPanelVecs; ++v) b[v] = LoadVec(panel + k * kPanel + v * kLanes);
    for (int r = 0; r < kRows; ++r) {
      const float x = a[r * lda + k];  // scalar * vector: one broadcast load
      for (int v = 0; v < kPanelVecs; ++v) acc[r][v] += x * b[v];
    }
  }
  for (int r = 0; r < kRows; ++r) {
    if (width == kPanel) {
      for (int v = 0; v < kPanelVecs; ++v) StoreVec(c_out + r * ldc + v * kLanes, acc[r][v]);
    } else {
      for (int v = 0; v < kPanelVecs; ++v) StoreVec(edge + v * kLanes, acc[r][v]);
      std::copy(edge, edge + width, c_out + r * ldc);
    }
  }
}

// Calls tile(first_row, n) for tiles of n <= kTileRows rows covering [0, rows): the rows split
// evenly over ceil(rows / kTileRows) tiles (8 rows: 4 + 4, not 6 + 2), since a tile of n rows keeps
// 2n accumulator chains and under 4 rows the FMA latency sets the pace.
template <typename Tile>
inline void ForEachRowTile(int64_t rows, Tile tile) {
  const int64_t tiles = (rows + kTileRows - 1) / kTileRows;
  for (int64_t t = 0, r = 0, n = 0; t < tiles; ++t, r += n) {
    n = (rows - r) / (tiles - t);
    tile(r, n);
  }
}

// Calls kernel(std::integral_constant<int, n>) for a tile's row count n (1..kTileRows): the micro-kernels
// take their row count as a template argument, so each count is its own unrolled instance.
template <typename Kernel>
inline void WithRowCount(int64_t n, Kernel kernel) {
  static_assert(kTileRows == 6, "one case per row count");
  switch (n) {
    case 6: kernel(std::integral_constant<int, 6>()); break;
    case 5: kernel(std::integral_constant<int, 5>()); break;
    case 4: kernel(std::integral_constant<int, 4>()); break;
    case 3: kernel(std::integral_constant<int, 3>()); break;
    case 2: kernel(std::integral_constant<int, 2>()); break;
    default: kernel(std::integral_constant<int, 1>()); break;
  }
}

// c_out[rows, B.cols] = (c_in or 0) + a[rows, B.depth] · B; row strides lda, ldc_in, ldc
// (ldc_in = 0 adds the same row, a bias, to every row).
void Gemm(int64_t rows, const float* a, int64_t lda, const PackedPanels& b, const float* c_in,
          int64_t ldc_in, float* c_out, int64_t ldc) {
  for (int64_t p = 0; p * kPanel < b.cols; ++p) {
    const int64_t col = p * kPanel, width = std::min(kPanel, b.cols - col);
    ForEachRowTile(rows, [&](int64_t r, int64_t n) {
      const float* tile_in = c_in ? c_in + r * ldc_in + col : nullptr;
      float* tile_out = c_out + r * ldc + col;
      const float* tile_a = a + r * lda;
      WithRowCount(n, [&](auto count) {
        MicroKernel<decltype(count)::value>(b.depth, tile_a, lda, b.panel(p), tile_in, ldc_in, tile_out, ldc, width);
      });
    });
  }
}



// ------------------------------------------------------------------------------- bf16 GEMM
// gemm_precision="bfloat16": the per-step GEMM takes bf16 inputs ([x_t, h] and [W; U] rounded to
// nearest even) and accumulates in fp32, as oneDNN does; bias, gates and the cell state stay
// fp32. Where the CPU has avx512_bf16 one vdpbf16ps does 16 lanes x 2 products (twice the fp32
// FMA rate); elsewhere a portable loop computes the same numbers (products of two bf16 are exact
// in fp32, and both add them to the accumulator in vdpbf16ps' order: odd element, then even).
// B is packed as 32-column panels of k-pairs: lane j of a 32-bit slot holds (B[2kp, j] low,
// B[2kp+1, j] high), the layout vdpbf16ps reads; A's rows are bf16 with an even padded depth.
constexpr int kBfLanes = 16;
constexpr int kBfPanelVecs = 2;
constexpr int64_t kBfPanel = kBfPanelVecs * kBfLanes;

inline uint16_t ToBf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest, ties to even
  return static_cast<uint16_t>(bits >> 16);
}

// One row of A as bf16 pairs: depth floats -> (depth + 1) / 2 32-bit words, odd depth zero-padded.
inline void RowToBf16Pairs(const float* src, int64_t depth, uint32_t* dst) {
  for (int64_t k = 0; k + 1 < depth; k += 2) {
    dst[k / 2] = ToBf16(src[k]) | (static_cast<uint32_t>(ToBf16(src[k + 1])) << 16);
  }
  if (depth % 2) dst[depth / 2] = ToBf16(src[depth - 1]);
}

// [top; bottom] (cols_ floats per row, row-major) as bf16 k-pair panels.
struct PackedBf16Panels {
  int64_t pairs = 0, cols = 0;
  std::vector<uint32_t> data;

  PackedBf16Panels(const float* top, int64_t top_rows, const float* bottom, int64_t bottom_rows,
                   int64_t cols_)
      : pairs((top_rows + bottom_rows + 1) / 2), cols(cols_),
        data(((cols_ + kBfPanel - 1) / kBfPanel) * kBfPanel * pairs, 0u) {
    const int64_t depth = top_rows + bottom_rows;
    for (int64_t p = 0; p * kBfPanel < cols; ++p) {
      uint32_t* panel = data.data() + p * pairs * kBfPanel;
      const int64_t width = std::min(kBfPanel, cols - p * kBfPanel);
      for (int64_t k = 0; k < depth; ++k) {
        const float* row = k < top_rows ? top + k * cols : bottom + (k - top_rows) * cols;
        for (int64_t j = 0; j < width; ++j) {
          panel[(k / 2) * kBfPanel + j] |=
              static_cast<uint32_t>(ToBf16(row[p * kBfPanel + j])) << (16 * (k % 2));
        }
      }
    }
  }
  const uint32_t* panel(int64_t p) const { return data.data() + p * pairs * kBfPanel; }
};

typedef float Vec16 __attribute__((vector_size(kBfLanes * sizeof(float))));
typedef uint32_t Vec16U __attribute__((vector_size(kBfLanes * sizeof(uint32_t))));

inline Vec16 BitsToFloat(Vec16U bits) {
  Vec16 v;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}

// Loads a tile's accumulators from c_in (a zero-padded copy at a narrow right edge) or zeros.
template <int kRows>
void LoadTile(const float* c_in, int64_t ldc_in, int64_t width, float (*acc)[kBfPanel]) {
  for (int r = 0; r < kRows; ++r) {
    std::fill(acc[r], acc[r] + kBfPanel, 0.f);
    if (c_in != nullptr) std::copy(c_in + r * ldc_in, c_in + r * ldc_in + width, acc[r]);
  }
}
template <int kRows>
void StoreTile(float (*acc)[kBfPanel], float* c_out, int64_t ldc, int64_t width) {
  for (int r = 0; r < kRows; ++r) std::copy(acc[r], acc[r] + width, c_out + r * ldc);
}

// The portable micro-kernel: the numbers vdpbf16ps gives, for CPUs without it.
template <int kRows>
void Bf16MicroKernelPortable(int64_t pairs, const uint32_t* a, int64_t lda, const uint32_t* panel,
                             const float* c_in, int64_t ldc_in, float* c_out, int64_t ldc,
                             int64_t width) {
  float tile[kRows][kBfPanel];
  LoadTile<kRows>(c_in, ldc_in, width, tile);
  Vec16 acc[kRows][kBfPanelVecs];
  for (int r = 0; r < kRows; ++r) {
    for (int v = 0; v < kBfPanelVecs; ++v) std::memcpy(&acc[r][v], tile[r] + v * kBfLanes, 64);
  }
  const Vec16U high = Vec16U{} + 0xffff0000u;
  for (int64_t kp = 0; kp < pairs; ++kp) {
    Vec16 b_even[kBfPanelVecs], b_odd[kBfPanelVecs];
    for (int v = 0; v < kBfPanelVecs; ++v) {
      Vec16U bits;
      std::memcpy(&bits, panel + kp * kBfPanel + v * kBfLanes, sizeof(bits));
      b_even[v] = BitsToFloat(bits << 16);
      b_odd[v] = BitsToFloat(bits & high);
    }
    for (int r = 0; r < kRows; ++r) {
      const uint32_t x = a[r * lda + kp], x_even_bits = x << 16, x_odd_bits = x & 0xffff0000u;
      float x_even, x_odd;
      std::memcpy(&x_even, &x_even_bits, 4);
      std::memcpy(&x_odd, &x_odd_bits, 4);
      for (int v = 0; v < kBfPanelVecs; ++v) {
        acc[r][v] += x_odd * b_odd[v];  // exact product, one rounding: vdpbf16ps' odd step
        acc[r][v] += x_even * b_even[v];
      }
    }
  }
  for (int r = 0; r < kRows; ++r) {
    for (int v = 0; v < kBfPanelVecs; ++v) std::memcpy(tile[r] + v * kBfLanes, &acc[r][v], 64);
  }
  StoreTile<kRows>(tile, c_out, ldc, width);
}

#if LSTM_CORE_BF16_INTRINSICS
template <int kRows>
__attribute__((target("avx512f,avx512bf16"))) void Bf16MicroKernelNative(
    int64_t pairs, const uint32_t* a, int64_t lda, const uint32_t* panel, const float* c_in,
    int64_t ldc_in, float* c_out, int64_t ldc, int64_t width) {
  float tile[kRows][kBfPanel];
  LoadTile<kRows>(c_in, ldc_in, width, tile);
  __m512 acc[kRows][kBfPanelVecs];
  for (int r = 0; r < kRows; ++r) {
    for (int v = 0; v < kBfPanelVecs; ++v) acc[r][v] = _mm512_loadu_ps(tile[r] + v * kBfLanes);
  }
  for (int64_t kp = 0; kp < pairs; ++kp) {
    __m512bh b[kBfPanelVecs];
    for (int v = 0; v < kBfPanelVecs; ++v) {
      b[v] = (__m512bh)_mm512_loadu_si512(panel + kp * kBfPanel + v * kBfLanes);
    }
    for (int r = 0; r < kRows; ++r) {
      const __m512bh x = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[r * lda + kp]));
      for (int v = 0; v < kBfPanelVecs; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], x, b[v]);
    }
  }
  for (int r = 0; r < kRows; ++r) {
    for (int v = 0; v < kBfPanelVecs; ++v) _mm512_storeu_ps(tile[r] + v * kBfLanes, acc[r][v]);
  }
  StoreTile<kRows>(tile, c_out, ldc, width);
}

bool CpuHasBf16() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16");
}
#else
bool CpuHasBf16() { return false; }
#endif

// Whether gemm_precision="bfloat16" runs vdpbf16ps here (compiled in and the CPU has it).
bool NativeBf16() {
  static const bool native = CpuHasBf16();
  return native;
}

template <int kRows>
void Bf16MicroKernel(bool native, int64_t pairs, const uint32_t* a, int64_t lda,
                     const uint32_t* panel, const float* c_in, int64_t ldc_in, float* c_out,
                     int64_t ldc, int64_t width) {
#if LSTM_CORE_BF16_INTRINSICS
  if (native) {
    Bf16MicroKernelNative<kRows>(pairs, a, lda, panel, c_in, ldc_in, c_out, ldc, width);
    return;
  }
#endif
  Bf16MicroKernelPortable<kRows>(pairs, a, lda, panel, c_in, ldc_in, c_out, ldc, width);
}

// c_out[rows, B.cols] = (c_in or 0) + a · B, a as bf16 pairs [rows, B.pairs] (row stride lda).
void Bf16Gemm(bool native, int64_t rows, const uint32_t* a, int64_t lda, const PackedBf16Panels& b,
              const float* c_in, int64_t ldc_in, float* c_out, int64_t ldc) {
  for (int64_t p = 0; p * kBfPanel < b.cols; ++p) {
    const int64_t col = p * kBfPanel, width = std::min(kBfPanel, b.cols - col);
    ForEachRowTile(rows, [&](int64_t r, int64_t n) {
      const float* in = c_in ? c_in + r * ldc_in + col : nullptr;
      float* out = c_out + r * ldc + col;
      const uint32_t* ta = a + r * lda;
      const uint32_t* panel = b.panel(p);
      WithRowCount(n, [&](auto count) {
        Bf16MicroKernel<decltype(count)::value>(native, b.pairs, ta, lda, panel, in, ldc_in, out, ldc, width);
      });
    });
  }
}

// ---------------------------------------------------------------------------------- forward
struct ForwardBuffers {
  const float* x;       // [B, T, I]
  const float* bias;    // [4H]
  const float* h0;      // [B, H]
  const float* c0;      // [B, H]
  const float* mask;    // [B, T] or nullptr
  float* outputs;       // [B, T, H] by step
  float* gates;         // [B, T, 4H] activated i, f, g, o, by step (save only)
  float* cells;         // [B, T, H] c after each step (save only)
  float* h_prev;        // [B, T, H] h entering the step that reads input time t, for dU (save only)
  float* h_last;        // [B, H]
  float* c_last;        // [B, H]
};

// The forward's per-step product z = b + [x_t, h]·[W; U]: fp32 panels, or bf16 k-pair panels
// (gemm_precision="bfloat16"; native: vdpbf16ps, else the portable loop).
struct StepProduct {
  const PackedPanels* f32 = nullptr;
  const PackedBf16Panels* bf16 = nullptr;
  bool native = false;
};

// One shard's rows over the whole sequence. The GEMM's left operand is a per-shard [rows, I + H]
// buffer holding [x_t, h] (two of them: the step's and the next step's, whose h part the gate math
// writes directly). save == false (inference): the gates and cells also live in small per-shard
// buffers that stay in cache instead of [B, T, ...] tensors for a backward pass that never comes.
void ForwardShard(const Dims& d, const ForwardBuffers& io, const StepProduct& product,
                  bool zero_output_for_mask, bool save, int64_t row_begin, int64_t row_end) {
  const int64_t rows = row_end - row_begin, H = d.units, G = d.gates(), T = d.steps, I = d.inputs;
  const int64_t width = I + H;  // the left operand's row: [x_t, h]
  std::vector<float> scratch(2 * rows * width + (save ? 0 : rows * (G + 2 * H)));
  float* operand[2] = {scratch.data(), scratch.data() + rows * width};
  float* gate_rows = save ? nullptr : operand[1] + rows * width;  // [rows, 4H]
  float* cell_rows[2] = {nullptr, nullptr};                      // [rows, H], this / last step
  if (!save) {
    cell_rows[0] = gate_rows + rows * G;
    cell_rows[1] = cell_rows[0] + rows * H;
  }
  const int64_t gate_stride = save ? T * G : G;
  const int64_t pairs = (width + 1) / 2;  // bf16 operand row: [x_t, h] rounded, in pairs
  std::vector<uint32_t> operand_bf16(product.bf16 ? rows * pairs : 0);
  auto gates_at = [&](int64_t r, int64_t s) {
    return save ? io.gates + ((row_begin + r) * T + s) * G : gate_rows + r * G;
  };
  auto h_entering = [&](int64_t r, int64_t s) { return operand[s % 2] + r * width + I; };
  auto cell_at = [&](int64_t r, int64_t s) {
    return save ? io.cells + ((row_begin + r) * T + s) * H : cell_rows[s % 2] + r * H;
  };
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(h_entering(r, 0), io.h0 + (row_begin + r) * H, H * sizeof(float));
  }
  for (int64_t s = 0; s < T; ++s) {
    const int64_t ts = d.input_time(s);
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(operand[s % 2] + r * width, io.x + ((row_begin + r) * T + ts) * I, I * sizeof(float));
      if (save) {
        std::memcpy(io.h_prev + ((row_begin + r) * T + ts) * H, h_entering(r, s), H * sizeof(float));
      }
    }
    // z = b + [x_t, h]·[W; U], written straight into this step's gate rows
    if (product.bf16 == nullptr) {
      Gemm(rows, operand[s % 2], width, *product.f32, io.bias, 0, gates_at(0, s), gate_stride);
    } else {
      for (int64_t r = 0; r < rows; ++r) {
        RowToBf16Pairs(operand[s % 2] + r * width, width, operand_bf16.data() + r * pairs);
      }
      Bf16Gemm(product.native, rows, operand_bf16.data(), pairs, *product.bf16, io.bias, 0,
               gates_at(0, s), gate_stride);
    }
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t b = row_begin + r, at = b * T + s;
      float* zr = gates_at(r, s);
      const float* c_old = s ? cell_at(r, s - 1) : io.c0 + b * H;
      float* c_new = cell_at(r, s);
      float* h_new = s + 1 < T ? h_entering(r, s + 1) : io.h_last + b * H;
      ArrayMap out(io.outputs + at * H, H);
      const bool keep = io.mask == nullptr || io.mask[b * T + ts] > 0.5f;
      if (keep) {
        GateRow(H, zr, c_old, c_new, h_new);
        out = ConstArrayMap(h_new, H);
      } else {  // state carried over; the backward pass never reads a masked step's gates
        std::memcpy(c_new, c_old, H * sizeof(float));
        std::memcpy(h_new, h_entering(r, s), H * sizeof(float));
        if (zero_output_for_mask || s == 0) {
          out.setZero();
        } else {
          out = ConstArrayMap(io.outputs + (at - 1) * H, H);
        }
      }
      if (s + 1 == T) std::memcpy(io.c_last + b * H, c_new, H * sizeof(float));
    }
  }
}

class LstmCoreSequenceOp : public OpKernel {
 public:
  explicit LstmCoreSequenceOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("zero_output_for_mask", &zero_output_for_mask_));
    OP_REQUIRES_OK(context, context->GetAttr("go_backwards", &go_backwards_));
    OP_REQUIRES_OK(context, context->GetAttr("save_for_backward", &save_for_backward_));
    OP_REQUIRES_OK(context, context->GetAttr("gemm_precision", &gemm_precision_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& x = context->input(0);
    const Tensor& kernel = context->input(1);
    const Tensor& bias = context->input(2);
    const Tensor& h0 = context->input(3);
    const Tensor& c0 = context->input(4);
    const Tensor& recurrent_kernel = context->input(5);
    const Tensor& mask = context->input(6);
    OP_REQUIRES(context, x.dims() == 3, InvalidArgument("x must be [B, T, I]"));
    OP_REQUIRES(context,
                recurrent_kernel.dims() == 2 &&
                    recurrent_kernel.dim_size(1) == 4 * recurrent_kernel.dim_size(0),
                InvalidArgument("recurrent_kernel must be [H, 4H]"));
    Dims d{x.dim_size(1), x.dim_size(0), recurrent_kernel.dim_size(0), go_backwards_};
    d.inputs = x.dim_size(2);
    const TensorShape kernel_shape({d.inputs, d.gates()});
    OP_REQUIRES(context, kernel.shape() == kernel_shape,
                InvalidArgument("kernel must be [I, 4H] = [", d.inputs, ", ", d.gates(), "]"));
    OP_REQUIRES(context, bias.shape() == TensorShape({d.gates()}),
                InvalidArgument("bias must be [4H] = [", d.gates(), "]"));
    const TensorShape state_shape({d.batch, d.units});
    OP_REQUIRES(context, h0.shape() == state_shape && c0.shape() == state_shape,
                InvalidArgument("h0 and c0 must be [B, H]"));
    const bool has_mask = mask.NumElements() > 0;
    OP_REQUIRES(context, !has_mask || mask.shape() == TensorShape({d.batch, d.steps}),
                InvalidArgument("mask must be [B, T] or empty"));

    const TensorShape seq_shape({d.batch, d.steps, d.units});
    Tensor *outputs, *h_last, *c_last, *gates, *cells, *h_prev;
    OP_REQUIRES_OK(context, context->allocate_output(0, seq_shape, &outputs));
    OP_REQUIRES_OK(context, context->allocate_output(1, state_shape, &h_last));
    OP_REQUIRES_OK(context, context->allocate_output(2, state_shape, &c_last));
    const bool save = save_for_backward_;
    const TensorShape none({0});
    const TensorShape gate_shape({d.batch, d.steps, d.gates()});
    OP_REQUIRES_OK(context, context->allocate_output(3, save ? gate_shape : none, &gates));
    OP_REQUIRES_OK(context, context->allocate_output(4, save ? seq_shape : none, &cells));
    OP_REQUIRES_OK(context, context->allocate_output(5, save ? seq_shape : none, &h_prev));
    if (d.steps == 0) {
      h_last->flat<float>() = h0.flat<float>();
      c_last->flat<float>() = c0.flat<float>();
      return;
    }
    const ForwardBuffers io{x.flat<float>().data(),        bias.flat<float>().data(),
                            h0.flat<float>().data(),       c0.flat<float>().data(),
                            has_mask ? mask.flat<float>().data() : nullptr,
                            outputs->flat<float>().data(), gates->flat<float>().data(),
                            cells->flat<float>().data(),   h_prev->flat<float>().data(),
                            h_last->flat<float>().data(),  c_last->flat<float>().data()};
    const bool zero_output = zero_output_for_mask_;
    const float* w = kernel.flat<float>().data();
    const float* u = recurrent_kernel.flat<float>().data();
    StepProduct product;
    std::unique_ptr<PackedPanels> f32;
    std::unique_ptr<PackedBf16Panels> bf16;
    if (gemm_precision_ == "float32") {
      f32.reset(new PackedPanels(w, d.inputs, u, d.units, d.gates()));
      product.f32 = f32.get();
    } else {
      bf16.reset(new PackedBf16Panels(w, d.inputs, u, d.units, d.gates()));
      product.bf16 = bf16.get();
      product.native = gemm_precision_ == "bfloat16" && NativeBf16();
    }
    ForEachBatchShard(context, d.batch, [&](int64_t begin, int64_t end) {
      ForwardShard(d, io, product, zero_output, save, begin, end);
    });
  }

 private:
  bool zero_output_for_mask_;
  bool go_backwards_;
  bool save_for_backward_;
  std::string gemm_precision_;
};

// --------------------------------------------------------------------------------- backward
struct BackwardBuffers {
  const float* kernel;     // U [H, 4H]
  const float* mask;       // [B, T] or nullptr
  const float* c0;         // [B, H]
  const float* gates;      // [B, T, 4H] from the forward op
  const float* cells;      // [B, T, H] from the forward op
  const float* d_outputs;  // [B, T, H]
  const float* d_h;        // [B, H] gradient of the last h
  const float* d_c;        // [B, H] gradient of the last c
  float* d_xw;             // [B, T, 4H] = dz, at input time
  float* d_h0;             // [B, H]
  float* d_c0;             // [B, H]
};

void BackwardShard(const Dims& d, const BackwardBuffers& io, const PackedPanels& kernel_transposed,
                   bool zero_output_for_mask, int64_t row_begin, int64_t row_end) {
  const int64_t rows = row_end - row_begin, H = d.units, G = d.gates(), T = d.steps;
  // Running gradients w.r.t. the state (h, c) and, with a mask, the carried previous output.
  MatrixMap dh(io.d_h0 + row_begin * H, rows, H);
  MatrixMap dc(io.d_c0 + row_begin * H, rows, H);
  dh = ConstMatrixMap(io.d_h + row_begin * H, rows, H);
  dc = ConstMatrixMap(io.d_c + row_begin * H, rows, H);
  RowMatrix d_carried_output, dh_from_gemm(rows, H);
  if (io.mask != nullptr) d_carried_output = RowMatrix::Zero(rows, H);
  Eigen::ArrayXf d_h_total(H), tanh_c(H), d_c_total(H);
  for (int64_t s = T - 1; s >= 0; --s) {
    const int64_t ts = d.input_time(s);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t b = row_begin + r, at = b * T + s;
      const bool keep = io.mask == nullptr || io.mask[b * T + ts] > 0.5f;
      ConstArrayMap d_out(io.d_outputs + at * H, H);
      ArrayMap dzr(io.d_xw + (b * T + ts) * G, G);
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
      const float* gr = io.gates + at * G;
      ConstArrayMap i(gr, H), f(gr + H, H), g(gr + 2 * H, H), o(gr + 3 * H, H);
      ConstArrayMap c(io.cells + at * H, H);
      ConstArrayMap c_prev(s ? io.cells + (at - 1) * H : io.c0 + b * H, H);
      tanh_c = c.tanh();
      d_c_total = dc_r + d_h_total * o * (1.0f - tanh_c.square());
      dzr.segment(0, H) = d_c_total * g * i * (1.0f - i);
      dzr.segment(H, H) = d_c_total * c_prev * f * (1.0f - f);
      dzr.segment(2 * H, H) = d_c_total * i * (1.0f - g.square());
      dzr.segment(3 * H, H) = d_h_total * tanh_c * o * (1.0f - o);
      dc_r = d_c_total * f;
    }
    // Masked rows have dz = 0, so their GEMM row is 0 and their dh simply carries over.
    Gemm(rows, io.d_xw + (row_begin * T + ts) * G, T * G, kernel_transposed, nullptr, 0,
         dh_from_gemm.data(), H);
    for (int64_t r = 0; r < rows; ++r) {
      if (io.mask == nullptr || io.mask[(row_begin + r) * T + ts] > 0.5f) {
        dh.row(r) = dh_from_gemm.row(r);
      }
    }
  }
}

class LstmCoreSequenceGradOp : public OpKernel {
 public:
  explicit LstmCoreSequenceGradOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("zero_output_for_mask", &zero_output_for_mask_));
    OP_REQUIRES_OK(context, context->GetAttr("go_backwards", &go_backwards_));
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
                InvalidArgument("gates must be [B, T, 4H] and recurrent_kernel [H, 4H]"));
    const Dims d{gates.dim_size(1), gates.dim_size(0), kernel.dim_size(0), go_backwards_};
    const TensorShape seq_shape({d.batch, d.steps, d.units});
    const TensorShape state_shape({d.batch, d.units});
    OP_REQUIRES(context,
                gates.dim_size(2) == d.gates() && kernel.dim_size(1) == d.gates() &&
                    cells.shape() == seq_shape && d_outputs.shape() == seq_shape &&
                    c0.shape() == state_shape && d_h.shape() == state_shape &&
                    d_c.shape() == state_shape,
                InvalidArgument("inconsistent shapes for the LSTM gradient"));
    const bool has_mask = mask.NumElements() > 0;
    OP_REQUIRES(context, !has_mask || mask.shape() == TensorShape({d.batch, d.steps}),
                InvalidArgument("mask must be [B, T] or empty"));
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
    const PackedPanels kernel_transposed(io.kernel, d.gates(), d.units, 1, d.gates());  // Uᵀ
    ForEachBatchShard(context, d.batch, [&](int64_t begin, int64_t end) {
      BackwardShard(d, io, kernel_transposed, zero_output, begin, end);
    });
  }

 private:
  bool zero_output_for_mask_;
  bool go_backwards_;
};

// ------------------------------------------------------------------------------ registration
::tensorflow::Status SequenceShape(InferenceContext* c) {
  ShapeHandle x, kernel;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &x));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(5), 2, &kernel));
  DimensionHandle batch = c->Dim(x, 0), steps = c->Dim(x, 1), units = c->Dim(kernel, 0);
  ShapeHandle sequence = c->MakeShape({batch, steps, units});
  ShapeHandle state = c->MakeShape({batch, units});
  bool save = true;
  TF_RETURN_IF_ERROR(c->GetAttr("save_for_backward", &save));
  c->set_output(0, sequence);
  c->set_output(1, state);
  c->set_output(2, state);
  ShapeHandle none = c->MakeShape({0});
  c->set_output(3, save ? c->MakeShape({batch, steps, c->Dim(kernel, 1)}) : none);
  c->set_output(4, save ? sequence : none);
  c->set_output(5, save ? sequence : none);
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
    .Input("x: float")
    .Input("kernel: float")
    .Input("bias: float")
    .Input("h0: float")
    .Input("c0: float")
    .Input("recurrent_kernel: float")
    .Input("mask: float")
    .Attr("zero_output_for_mask: bool = false")
    .Attr("go_backwards: bool = false")
    .Attr("save_for_backward: bool = true")
    .Attr("gemm_precision: {'float32', 'bfloat16', 'bfloat16_portable'} = 'float32'")
    .Output("outputs: float")
    .Output("h: float")
    .Output("c: float")
    .Output("gates: float")
    .Output("cells: float")
    .Output("h_prev: float")
    .SetShapeFn(SequenceShape)
    .Doc("lstm_core's fused LSTM over x [B, T, I]: per step [x_t, h]·[W; U] + b and the gates.");

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
    .Attr("go_backwards: bool = false")
    .Output("d_xw: float")
    .Output("d_h0: float")
    .Output("d_c0: float")
    .SetShapeFn(SequenceGradShape)
    .Doc("BPTT of LstmCoreSequence: d_xw (= dz), d_h0, d_c0; dU, dW, dx, db from dz outside.");

REGISTER_OP("LstmCoreNativeBf16")
    .Output("available: bool")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->Scalar());
      return ::tensorflow::OkStatus();
    })
    .Doc("Whether gemm_precision='bfloat16' runs vdpbf16ps here (compiled in, CPU has avx512_bf16).");

class LstmCoreNativeBf16Op : public OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(OpKernelContext* context) override {
    Tensor* out;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({}), &out));
    out->scalar<bool>()() = NativeBf16();
  }
};

REGISTER_KERNEL_BUILDER(Name("LstmCoreSequence").Device(DEVICE_CPU), LstmCoreSequenceOp);
REGISTER_KERNEL_BUILDER(Name("LstmCoreNativeBf16").Device(DEVICE_CPU), LstmCoreNativeBf16Op);
REGISTER_KERNEL_BUILDER(Name("LstmCoreSequenceGrad").Device(DEVICE_CPU), LstmCoreSequenceGradOp);

}  // namespace lstm_core
