"""Wall time of each task's default ``train`` with the native kernel and with the TF loop.

Why: issue 15 asks what the fused kernel buys where users feel it, in the tasks' own training
runs, not only in ``tools/benchmark_lstm.py``'s micro-benchmark. Every run is a fresh
``lstm-suite <task> train`` subprocess with the task README's command (its shipped sample data,
default settings), with only
``--epochs`` lowered (early stopping would otherwise make the two runs train different numbers
of epochs) and ``LSTM_CORE_KERNEL`` set to ``native`` or ``tf``; the two choices alternate
task by task so that a change in the machine's load hits both.

    python tools/task_training_time.py --epochs 2                     # all four tasks
    python tools/task_training_time.py --tasks sentiment --epochs 3 -- --members 1

Prints a Markdown table (one row per task) and, last, one JSON object. The figures include what
does not depend on the kernel (start-up, tokenizer training, data pipelines, checkpoints), so
the ratio is what a user sees, not the kernel's speed-up alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASKS = ("sentiment", "translation", "speech_commands", "forecasting")
# each task's README command (its shipped sample data); the rest are the task's defaults
README_FLAGS = {
    "sentiment": [],
    "translation": [],  # the sample's eng-fra.dev.tsv is the --test file (auto); validation is held out by source
    "speech_commands": [],
    "forecasting": ["--data", "tasks/samples/forecasting/PJME_hourly_2018.csv", "--country", "US"],
}
ROOT = Path(__file__).resolve().parents[1]


def train_seconds(task: str, kernel: str, epochs: int, extra: list[str], workdir: Path) -> float:
    """Seconds of one ``lstm-suite TASK train`` run with ``LSTM_CORE_KERNEL=kernel``."""
    out = workdir / f"{task}-{kernel}"
    command = [sys.executable, "-m", "tasks", "-q", task, "train", "--out", str(out), "--overwrite",
               "--epochs", str(epochs), "--progress", "none", *README_FLAGS[task], *extra]
    env = {**os.environ, "LSTM_CORE_KERNEL": kernel, "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (default: %(default)s)")
    parser.add_argument("train_flags", nargs="*", help="more flags for every `train` (after --)")
    args = parser.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        parser.error(f"--tasks: unknown {', '.join(unknown)} (choose from {', '.join(TASKS)})")
    rows = []
    with tempfile.TemporaryDirectory(prefix="lstm-suite-train-time-") as tmp:
        for index, task in enumerate(tasks):
            order = ("native", "tf") if index % 2 == 0 else ("tf", "native")
            seconds = {kernel: train_seconds(task, kernel, args.epochs, args.train_flags, Path(tmp))
                       for kernel in order}
            rows.append({"task": task, "epochs": args.epochs, "native_s": round(seconds["native"], 1),
                         "tf_loop_s": round(seconds["tf"], 1),
                         "speed_up": round(seconds["tf"] / seconds["native"], 2)})
            print(f"{task}: native {seconds['native']:.1f} s, TF loop {seconds['tf']:.1f} s", file=sys.stderr,
                  flush=True)
    print("| task | epochs | native kernel | TF loop | TF loop / native |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['task']} | {row['epochs']} | {row['native_s']} s | {row['tf_loop_s']} s | "
              f"{row['speed_up']}x |")
    print(json.dumps({"load_average": os.getloadavg(), "runs": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
