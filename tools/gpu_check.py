"""GPU check of lstm_core.LSTM (run it on a machine with an NVIDIA GPU; prints Markdown tables).

1. cuDNN parity: lstm_core.LSTM on its cuDNN path vs the same layer with ``use_cudnn=False``
   (TF loop) and vs ``keras.layers.LSTM`` (cuDNN), same weights: outputs and gradients.
2. Speed: forward and train step vs ``keras.layers.LSTM`` (cuDNN) and ``torch.nn.LSTM`` (cuDNN,
   if torch with CUDA is installed) at T=100 B=64 I=64 H=128 and T=500 B=256 I=128 H=512.
3. One task's default training on the GPU (sentiment, shipped data), wall time.

    python tools/gpu_check.py [--skip-task] [--rounds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def parity_rows():
    import keras
    import tensorflow as tf

    from lstm_core import LSTM

    rng = np.random.default_rng(0)
    rows = []
    cases = {
        "last output": dict(),
        "sequences + state": dict(return_sequences=True, return_state=True),
        "go_backwards": dict(go_backwards=True, return_sequences=True),
        "right-padded mask": dict(return_sequences=False, mask=True),
        "Bidirectional": dict(bidirectional=True),
    }
    for name, case in cases.items():
        case = dict(case)
        use_mask, bidirectional = case.pop("mask", False), case.pop("bidirectional", False)
        x = rng.standard_normal((8, 20, 6)).astype("float32")
        mask = None
        if use_mask:
            lengths = rng.integers(5, 21, size=8)
            mask = np.arange(20)[None, :] < lengths[:, None]

        def build(kind, use_cudnn="auto"):
            if kind == "keras":
                layer = keras.layers.LSTM(16, **case)
            else:
                layer = LSTM(16, use_cudnn=use_cudnn, **case)
            return keras.layers.Bidirectional(layer) if bidirectional else layer

        layers = {"cudnn": build("core"), "tf loop": build("core", use_cudnn=False), "keras": build("keras")}
        for layer in layers.values():
            layer(x, mask=mask)
        weights = layers["keras"].get_weights()
        for layer in layers.values():
            layer.set_weights(weights)
        results = {}
        for key, layer in layers.items():
            with tf.GradientTape() as tape:
                xt = tf.constant(x)
                tape.watch(xt)
                out = layer(xt, mask=mask, training=True)
                flat = tf.nest.flatten(out)
                loss = sum(tf.reduce_sum(o * o) for o in flat)
            grads = tape.gradient(loss, [xt, *layer.trainable_weights])
            results[key] = ([o.numpy() for o in flat], [g.numpy() for g in grads])

        def diff(a, b, part):
            return max(float(np.max(np.abs(u - v))) for u, v in zip(results[a][part], results[b][part]))

        rows.append((name, diff("cudnn", "tf loop", 0), diff("cudnn", "tf loop", 1),
                     diff("cudnn", "keras", 0), diff("cudnn", "keras", 1)))
    return rows


def time_call(fn, rounds):
    fn()
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def speed_rows(shape, rounds):
    import keras
    import tensorflow as tf

    from lstm_core import LSTM

    steps, batch, features, units = shape
    x = tf.constant(np.random.default_rng(0).standard_normal((batch, steps, features)).astype("float32"))
    y = tf.constant(np.zeros((batch, units), "float32"))
    rows = {}
    for name, make in {"lstm_core": lambda: LSTM(units), "keras": lambda: keras.layers.LSTM(units)}.items():
        layer = make()
        layer(x)
        optimizer = keras.optimizers.SGD(1e-3)

        @tf.function
        def forward(layer=layer):
            return layer(x)

        @tf.function
        def train_step(layer=layer, optimizer=optimizer):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((layer(x, training=True) - y) ** 2)
            optimizer.apply_gradients(zip(tape.gradient(loss, layer.trainable_weights), layer.trainable_weights))
            return loss

        rows[name] = (time_call(lambda: forward().numpy(), rounds), time_call(lambda: train_step().numpy(), rounds))
    try:
        import torch

        if torch.cuda.is_available():
            lstm = torch.nn.LSTM(features, units, batch_first=True).cuda()
            tx = torch.randn(batch, steps, features, device="cuda")
            optimizer = torch.optim.SGD(lstm.parameters(), lr=1e-3)

            def torch_forward():
                with torch.no_grad():
                    lstm(tx)
                torch.cuda.synchronize()

            def torch_train():
                optimizer.zero_grad()
                out, _ = lstm(tx)
                out[:, -1].pow(2).mean().backward()
                optimizer.step()
                torch.cuda.synchronize()

            rows["torch"] = (time_call(torch_forward, rounds), time_call(torch_train, rounds))
    except ImportError:
        pass
    return rows


def task_training(seconds_limit=1800):
    out = tempfile.mkdtemp(prefix="gpu-sentiment-")
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "tasks.common.cli", "sentiment", "train", "--out", os.path.join(out, "model"),
         "--progress", "epoch"],
        capture_output=True, text=True, timeout=seconds_limit,
    )
    return result.returncode, time.perf_counter() - start, result.stdout.strip().splitlines()[-1:] or result.stderr[-500:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="timed repetitions (default: %(default)s)")
    parser.add_argument("--skip-task", action="store_true", help="skip the task training (default: off)")
    args = parser.parse_args()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    print("devices:", [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus])
    if not gpus:
        print("no GPU visible: nothing to check")
        return 1
    print("\n| case | cuDNN vs TF loop: out | grad | cuDNN vs keras.layers.LSTM: out | grad |\n|---|---|---|---|---|")
    for name, *diffs in parity_rows():
        print(f"| {name} | " + " | ".join(f"{d:.1e}" for d in diffs) + " |")
    for shape in ((100, 64, 64, 128), (500, 256, 128, 512)):
        rows = speed_rows(shape, args.rounds)
        keras_fwd, keras_train = rows["keras"]
        print(f"\nT={shape[0]} B={shape[1]} I={shape[2]} H={shape[3]} (median ms; ratio = keras time / this)")
        print("| layer | forward ms | ratio | train step ms | ratio |\n|---|---|---|---|---|")
        for name, (fwd, train) in rows.items():
            print(f"| {name} | {fwd:.2f} | {keras_fwd / fwd:.2f}x | {train:.2f} | {keras_train / train:.2f}x |")
    if not args.skip_task:
        code, seconds, tail = task_training()
        print(f"\nsentiment default train on the GPU: exit {code}, {seconds:.0f} s, {json.dumps(tail)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
