"""CPU time per batch-1 call of exported models, LiteRT beside TensorFlow Lite Micro.

    python tools/tflite_latency.py saved_models/forecasting/export/*.tflite [--calls 300]

Inputs are random (shape and type from the model); state is reset per call as the runners do.
Prints one Markdown row per model and runtime (CPU ms, so other jobs on the machine matter less).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def cpu_ms_per_call(runner, inputs, calls: int) -> float:
    runner(*inputs)
    start = time.process_time()
    for _ in range(calls):
        runner(*inputs)
    return 1000 * (time.process_time() - start) / calls


def random_inputs(details) -> list:
    rng = np.random.default_rng(0)
    details = list(details.values()) if isinstance(details, dict) else list(details)
    inputs = []
    for detail in details:
        shape = tuple(int(d) for d in detail["shape"])
        if np.issubdtype(detail["dtype"], np.integer) and detail["dtype"] not in (np.int8, np.int16):
            inputs.append(rng.integers(0, 2, size=shape).astype(detail["dtype"]))  # token ids
        else:
            inputs.append(rng.standard_normal(shape).astype("float32"))
    return inputs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help=".tflite files")
    parser.add_argument("--calls", type=int, default=300, help="timed calls per model and runtime (default: %(default)s)")
    args = parser.parse_args()
    from lstm_core.errors import LstmCoreError
    from lstm_core.export import TFLiteModel
    from lstm_core.tflm import TFLMModel

    print("| model | runtime | CPU ms per call |\n|---|---|---:|")
    for path in args.models:
        for label, runner_class in (("LiteRT", TFLiteModel), ("TFLM", TFLMModel)):
            try:
                runner = runner_class(path)
                inputs = random_inputs(runner.input_details)
                print(f"| {path} | {label} | {cpu_ms_per_call(runner, inputs, args.calls):.3f} |", flush=True)
            except (LstmCoreError, ValueError) as err:
                print(f"| {path} | {label} | not runnable: {str(err)[:80]} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
