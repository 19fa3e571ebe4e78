"""Benchmark lstm_core.LSTM against keras.layers.LSTM (and torch.nn.LSTM if installed).

One run prints, per shape and per compile mode (plain ``tf.function`` graph, and XLA, which is
what ``Model.fit`` uses by default on TensorFlow): forward and train-step wall time of each
implementation, the ratios keras/ours and torch/ours (>1 means ours is faster), GFLOP/s and the
percentage of this machine's fp32 peak (``tools/machine_peak.py``: cores x vector lanes from the
CPU flags x 2 x FMA issues per cycle x clock, the last two measured at the start of the run);
then LiteRT invoke latency at batch 1 for our fused float/int8 export against the Keras-3 export
of keras.layers.LSTM (a WHILE loop).

lstm_core runs three times: with its native kernel (``LSTM_CORE_KERNEL=native``) with the forward
graph traced inside ``lstm_core.kernels.native_inference()`` (no gradient buffers) and as a plain
``tf.function`` (what a user's own inference graph gets: the kernel, activations kept), and
with the pure-TensorFlow loop (``LSTM_CORE_KERNEL=tf``, what exports and machines without a
compiler get).

Rounds are interleaved (A, B, C, A, B, C, ...) and the median is reported, so load from other
processes hits every implementation alike; the load average is printed with every shape.

Under ``--policy mixed_bfloat16`` the kernel rows use the bf16 GEMM where the CPU has
``avx512_bf16`` (``lstm_core.kernels.gemm_precision_for``) and fp32 elsewhere; the header says
which.

    python tools/benchmark_lstm.py            # full run (a few minutes on 2 cores)
    python tools/benchmark_lstm.py --quick    # smaller shapes, fewer rounds
    python tools/benchmark_lstm.py --no-xla --no-litert --shape 100,64,64,128   # kernel rows only
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from lstm_core import LSTM, kernels  # noqa: E402
from lstm_core.export import TFLiteModel, convert_to_tflite  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine_peak import machine_peak  # noqa: E402


def lstm_flops(T, B, I, H, train: bool) -> float:
    """Multiply-adds x2 of the matmuls (input + recurrent projections); backward ~2x forward."""
    forward = 2.0 * T * B * (I + H) * 4 * H
    return forward * (3.0 if train else 1.0)


def keras_model(layer_cls, T, I, H):
    inp = keras.Input((T, I))
    return keras.Model(inp, layer_cls(H, return_sequences=True)(inp))


def tf_runners(layer_cls, T, B, I, H, jit=False, kernel=None, inference_scope=True, bf16_gemm=None):
    """Forward and train-step callables, traced now (``kernel``: the LSTM_CORE_KERNEL to trace
    lstm_core under; the choice is made at trace time; ``inference_scope``: trace the forward
    inside ``native_inference()`` (no gradient buffers), else as a plain user ``tf.function``;
    ``bf16_gemm``: the LSTM_CORE_BF16_GEMM to trace under)."""
    model = keras_model(layer_cls, T, I, H)
    x = tf.random.normal((B, T, I), seed=1)
    y = tf.random.normal((B, T, H), seed=2)
    opt = keras.optimizers.SGD(1e-3)

    @tf.function(jit_compile=jit)
    def forward():
        return model(x, training=False)

    @tf.function(jit_compile=jit)
    def train_step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(tf.cast(model(x, training=True), tf.float32) - y))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply(grads, model.trainable_variables)
        return loss

    with _environment({kernels.CHOICE_ENV: kernel, kernels.BF16_ENV: bf16_gemm}):
        with kernels.native_inference() if inference_scope else contextlib.nullcontext():
            forward()
        train_step()
    return (lambda: forward().numpy()), (lambda: train_step().numpy())


@contextlib.contextmanager
def _environment(values: dict):
    """Set the variables whose value is not None for the block, then restore them."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update({name: value for name, value in values.items() if value is not None})
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def recurrent_matmul_chain(T, B, H):
    """Forward lower bound for any TF-op LSTM: the T dependent ``h·U`` MatMuls alone (no x·W,
    no gate math). If this alone takes 2/3 of Keras' forward, a 1.5x faster TF-op loop is out of
    reach on this machine and only a fused kernel (as torch has) could get there."""
    U = tf.random.normal((H, 4 * H), stddev=0.05, seed=3)
    h0 = tf.random.normal((B, H), seed=4)

    @tf.function
    def chain():
        body = lambda t, h: (t + 1, tf.matmul(h, U)[:, :H])  # noqa: E731
        return tf.while_loop(lambda t, h: t < T, body, (0, h0), parallel_iterations=32)[1]

    return lambda: chain().numpy()


@keras.saving.register_keras_serializable(package="benchmark")
class BlockLSTMReference(keras.layers.Layer):
    """TensorFlow's own fused C++ LSTM kernel (``BlockLSTMV2``, whole sequence in one op, Keras
    gate order): a reference for how fast any TF-kernel LSTM can run here. Not used by the suite
    (no TFLite conversion, no masks)."""

    def __init__(self, units, return_sequences=True, **kwargs):
        super().__init__(**kwargs)
        if not return_sequences:
            raise ValueError("the reference returns sequences only")
        self.units = units

    def build(self, shape):
        self.kernel = self.add_weight(shape=(shape[-1] + self.units, 4 * self.units), initializer="glorot_uniform")
        self.bias = self.add_weight(shape=(4 * self.units,), initializer="zeros")

    def call(self, x):
        x_tm = tf.transpose(x, [1, 0, 2])
        zeros = tf.zeros((tf.shape(x)[0], self.units))
        out = tf.raw_ops.BlockLSTMV2(
            seq_len_max=tf.cast(tf.shape(x)[1], tf.int64), x=x_tm, cs_prev=zeros, h_prev=zeros,
            w=self.kernel, wci=zeros[0], wcf=zeros[0], wco=zeros[0], b=self.bias, cell_clip=0.0,
            use_peephole=False,
        )
        return tf.transpose(out[6], [1, 0, 2])


def torch_runners(T, B, I, H, threads=None):
    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)
    lstm = torch.nn.LSTM(I, H, batch_first=True)
    x = torch.randn(B, T, I)
    y = torch.randn(B, T, H)
    opt = torch.optim.SGD(lstm.parameters(), lr=1e-3)

    def forward():
        with torch.no_grad():
            return lstm(x)[0]

    def train_step():
        opt.zero_grad()
        loss = ((lstm(x)[0] - y) ** 2).mean()
        loss.backward()
        opt.step()
        return loss.item()

    return forward, train_step


CLOCK = time.perf_counter  # --cpu-time: time.process_time (CPU seconds of the whole process)


def interleaved(fns: dict, rounds: int, warmup: int = 2) -> dict:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = CLOCK()
            fn()
            times[name].append(CLOCK() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_shape(T, B, I, H, rounds, with_torch, jit, peak_gflops=None, threads=None):
    impls = {}
    if not jit:  # the kernel is a graph op (XLA cannot compile a custom op)
        impls["lstm_core native kernel"] = tf_runners(LSTM, T, B, I, H, jit, kernel="native")
        impls["lstm_core native kernel, plain tf.function"] = tf_runners(
            LSTM, T, B, I, H, jit, kernel="native", inference_scope=False)
    impls["lstm_core TF loop"] = tf_runners(LSTM, T, B, I, H, jit, kernel="tf")
    impls["keras"] = tf_runners(keras.layers.LSTM, T, B, I, H, jit)
    if T <= 200 and not jit:  # static unroll: for short sequences only (graph grows with T)
        impls["lstm_core TF loop unroll=True"] = tf_runners(
            functools.partial(LSTM, unroll=True), T, B, I, H, jit, kernel="tf")
    if not jit and keras.mixed_precision.global_policy().compute_dtype == "bfloat16" and kernels.native_bf16_available():
        impls["lstm_core native kernel, fp32 GEMM (LSTM_CORE_BF16_GEMM=off)"] = tf_runners(
            LSTM, T, B, I, H, jit, kernel="native", bf16_gemm="off")
    if not jit and keras.mixed_precision.global_policy().name == "float32":  # float32-only op
        impls["tf BlockLSTMV2 (TF's fused C++ kernel, reference)"] = tf_runners(BlockLSTMReference, T, B, I, H)
    if with_torch:
        impls["torch"] = torch_runners(T, B, I, H, threads)
    rows = []
    for phase, idx, train in (("forward", 0, False), ("train step", 1, True)):
        fns = {k: v[idx] for k, v in impls.items()}
        if not train and not jit:
            fns["h·U MatMul chain only (bound)"] = recurrent_matmul_chain(T, B, H)
        med = interleaved(fns, rounds)
        flops = lstm_flops(T, B, I, H, train)
        for name, sec in med.items():
            work = 2.0 * T * B * H * 4 * H if name.startswith("h·U") else flops
            gflops = work / sec / 1e9
            rows.append((f"T={T} B={B} I={I} H={H}", "XLA" if jit else "graph", phase, name,
                         sec * 1e3, gflops, percent_of_peak(gflops, peak_gflops),
                         med["keras"] / sec, f"{med['torch'] / sec:.2f}x" if "torch" in med else ""))
    return rows


def percent_of_peak(gflops: float, peak_gflops: float | None) -> str:
    return "" if not peak_gflops else f"{100.0 * gflops / peak_gflops:.1f}%"


def keras3_tflite(T, I, H) -> bytes:
    """What a Keras-3 user gets for keras.layers.LSTM: export, then convert (WHILE loop)."""
    model = keras_model(keras.layers.LSTM, T, I, H)
    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False,
                     input_signature=[tf.TensorSpec((1, T, I), tf.float32)])
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        return converter.convert()


def bench_litert(T, I, H, rounds):
    ours = keras_model(LSTM, T, I, H)
    rng = np.random.default_rng(0)

    def rep():
        return ([rng.standard_normal((1, T, I)).astype("float32")] for _ in range(32))

    models = {
        "lstm_core fused float": convert_to_tflite(ours),
        "lstm_core fused int8": convert_to_tflite(ours, quantization="int8", representative_dataset=rep),
        "keras.layers.LSTM (Keras 3 export)": keras3_tflite(T, I, H),
    }
    x = rng.standard_normal((1, T, I)).astype("float32")
    rows = []
    runners = {}
    for name, flatbuffer in models.items():
        runner = TFLiteModel(flatbuffer, num_threads=1)
        runner(x)
        runners[name] = runner
    interp_calls = {}
    for name, runner in runners.items():
        interp = runner.interpreter
        interp.set_tensor(runner.input_details[runner.input_names[0]]["index"],
                          _as_input(x, runner.input_details[runner.input_names[0]]))
        interp_calls[name] = interp.invoke
    med = interleaved(interp_calls, rounds)
    base = med["keras.layers.LSTM (Keras 3 export)"]
    for name, sec in med.items():
        ops = sorted(set(runners[name].op_names()))
        rows.append((name, sec * 1e3, base / sec, len(models[name]), ",".join(ops)))
    return rows


def _as_input(x, detail):
    if detail["dtype"] == np.int8:
        scale, zero = detail["quantization"]
        return np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    return x.astype(detail["dtype"])


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-xla", action="store_true", help="skip the XLA rows (slow train steps)")
    parser.add_argument("--no-litert", action="store_true", help="skip the LiteRT latency table")
    parser.add_argument("--shape", action="append", default=None, metavar="T,B,I,H",
                        help="shape to run (repeatable); default: the three README shapes")
    parser.add_argument("--policy", default="float32", choices=("float32", "mixed_bfloat16", "mixed_float16"),
                        help="Keras dtype policy for lstm_core and keras.layers.LSTM (torch stays float32; "
                             "default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for TensorFlow (intra- and inter-op) and torch alike; default: all "
                             "(1 gives per-core ratios that survive load from other processes: torch's "
                             "spinning OpenMP workers and the kernel's shards both suffer when the cores "
                             "are oversubscribed)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time calls by the process's CPU seconds instead of wall time: with --threads 1 "
                             "a call's figure then ignores the time slices other processes took (idle "
                             "threads that spin count, so ratios are conservative for the side that spins)")
    return parser.parse_args()


def print_header(args, with_torch):
    """The run's settings, the machine's peak and the kernel's GEMM precision; returns the peak
    (GFLOP/s) the % column divides by: all cores, or ``--threads`` of them."""
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPU threads"
          + (", torch " + __import__("torch").__version__ if with_torch else ", torch not installed")
          + f", Keras policy {args.policy}, threads {args.threads or 'all'}"
          + (", CPU time per call" if args.cpu_time else ", wall time per call")
          + ", load average %.2f %.2f %.2f" % os.getloadavg())
    peak = machine_peak()
    print(peak.describe())
    peak_here = peak.gflops
    if args.threads and peak.gflops:
        peak_here = peak.gflops * min(args.threads, peak.cores) / peak.cores
        print(f"% of peak below: of {min(args.threads, peak.cores)} core(s), {peak_here:.0f} GFLOP/s")
    if kernels.native_kernel_enabled():
        precision = kernels.gemm_precision_for(keras.mixed_precision.global_policy().compute_dtype)
        native = "available" if kernels.native_bf16_available() else "not available on this CPU"
        print(f"kernel GEMM under this policy: {precision} (vdpbf16ps {native})")
    return peak_here


def main():
    args = parse_args()
    global CLOCK
    CLOCK = time.process_time if args.cpu_time else time.perf_counter
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.mixed_precision.set_global_policy(args.policy)
    rounds = args.rounds or (5 if args.quick else 15)
    try:
        import torch  # noqa: F401

        with_torch = not args.no_torch
    except ImportError:
        with_torch = False
    # the shape, a long sequence, a small edge-size model
    shapes = [(100, 64, 64, 128), (1000, 8, 32, 64), (50, 32, 16, 32)]
    if args.quick:
        shapes = [(50, 16, 16, 32)]
    if args.shape:
        shapes = [tuple(int(v) for v in text.split(",")) for text in args.shape]
    peak = print_header(args, with_torch)
    print("| shape | compile | phase | implementation | ms | GFLOP/s | % of fp32 peak | vs keras.layers.LSTM | vs torch |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for shape in shapes:
        for jit in (False,) if args.no_xla else (False, True):
            print("| load average %.2f %.2f %.2f | | | | | | | | |" % os.getloadavg(), flush=True)
            for row in bench_shape(*shape, rounds, with_torch and not jit, jit, peak, args.threads):
                print("| {} | {} | {} | {} | {:.2f} | {:.2f} | {} | {:.2f}x | {} |".format(*row), flush=True)
    print("load average at the end: %.2f %.2f %.2f" % os.getloadavg())
    if args.no_litert:
        return
    T, I, H = (100, 64, 128) if not args.quick else (50, 16, 32)
    print(f"\nLiteRT invoke latency, batch 1, T={T} I={I} H={H}, 1 thread")
    print("| model | ms | speed-up vs Keras-3 export | bytes | ops |")
    print("|---|---:|---:|---:|---|")
    for row in bench_litert(T, I, H, rounds * 4):
        print("| {} | {:.3f} | {:.2f}x | {} | {} |".format(*row))


if __name__ == "__main__":
    main()
