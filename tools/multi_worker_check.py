"""Measure ``--distribute multi-worker`` on this machine: 1 vs 2 local workers for each task's default model.

For each task, trains the default model for ``--steps`` steps through the CLI on 1 and on 2
loopback workers (tools/local_cluster.py, one CPU thread each) and reads the chief's
``multi-worker:`` line (median train step, trainable parameters, bytes all-reduced per step);
then times a 2-worker all-reduce of that many float32 values on its own. Prints a Markdown table
(the README's) and the JSON rows.

    python tools/multi_worker_check.py --steps 20 [--tasks forecasting sentiment]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_cluster import start_workers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TASKS = {  # the default model of each task (sentiment: one member; the others train the same way, in turn)
    "sentiment": ["--data", "tasks/samples/sentiment/train.tsv", "--members", "1", "--no-ngram-member"],
    "translation": ["--data", "tasks/samples/translation/eng-fra.train.tsv", "--bleu-every", "0"],
    "speech_commands": ["--data", "tasks/samples/speech_commands/digits", "--synthetic-voices", "0"],
    "forecasting": ["--data", "tasks/samples/forecasting/PJME_hourly_2018.csv"],
}
LINE = re.compile(r"multi-worker: (\d+) workers, (\d+) trainable parameters = (\d+) bytes all-reduced per step; "
                  r"median train step ([\d.]+) ms over (\d+) steps")

ALL_REDUCE = r"""
import json, sys, time
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
strategy = tf.distribute.MultiWorkerMirroredStrategy()
values = tf.ones([int(sys.argv[1])])

@tf.function
def all_reduce():
    return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce("SUM", values))

all_reduce()
times = []
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    strategy.experimental_local_results(all_reduce())[0].numpy()
    times.append(time.perf_counter() - started)
print("ALLREDUCE " + json.dumps(1000 * float(np.median(times))))
"""


def train_once(task: str, workers: int, steps: int, out: Path) -> dict:
    """The chief's step line of a ``steps``-step training on ``workers`` local workers."""
    command = [sys.executable, "-m", "tasks.common.cli", task, "train", *TASKS[task], "--epochs", "1",
               "--steps-per-epoch", str(steps), "--progress", "none", "--distribute", "multi-worker",
               "--cluster-timeout", "600", "--out", str(out)]
    procs = start_workers(command, workers, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outputs = [p.communicate()[0] for p in procs]
    match = LINE.search(outputs[0])
    if any(p.returncode for p in procs) or not match:
        raise SystemExit(f"{task} on {workers} workers failed:\n{outputs[0][-3000:]}")
    return {"params": int(match[2]), "bytes": int(match[3]), "step_ms": float(match[4])}


def all_reduce_ms(values: int, repeats: int = 20) -> float:
    procs = start_workers([sys.executable, "-c", ALL_REDUCE, str(values), str(repeats)], 2, cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outputs = [p.communicate()[0] for p in procs]
    found = re.search(r"ALLREDUCE ([\d.]+)", outputs[0])
    if not found:
        raise SystemExit(f"all-reduce benchmark failed:\n{outputs[0][-3000:]}")
    return float(found[1])


HOP_LATENCY_S = 50e-6  # per ring hop on a datacenter Ethernet (order of magnitude)


def ring_all_reduce_ms(size_bytes: int, machines: int, gbit_per_s: float) -> float:
    """Bandwidth-optimal ring all-reduce: 2(N-1)/N of the bytes through each link, 2(N-1) hops."""
    bandwidth = gbit_per_s * 1e9 / 8
    return 1000 * (2 * (machines - 1) / machines * size_bytes / bandwidth + 2 * (machines - 1) * HOP_LATENCY_S)


def print_estimate(rows: list[dict]) -> None:
    """Weak scaling on paper: each machine keeps the default batch (and the measured 1-worker step time)."""
    print("\n| task | step compute | 8 x 10 Gb/s | 8 x 100 Gb/s | 64 x 10 Gb/s | 64 x 100 Gb/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        cells = []
        for machines, speed in ((8, 10), (8, 100), (64, 10), (64, 100)):
            comm = ring_all_reduce_ms(r["bytes"], machines, speed)
            cells.append(f"{comm:.2f} ms ({100 * r['step_ms_1'] / (r['step_ms_1'] + comm):.0f}%)")
        print(f"| {r['task']} | {r['step_ms_1']:.1f} ms | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--steps", type=int, default=20, help="train steps per run (default 20)")
    parser.add_argument("--estimate", metavar="ROWS.jsonl", help="only the on-paper table, from saved JSON rows")
    args = parser.parse_args(argv)
    if args.estimate:
        print_estimate([json.loads(line) for line in Path(args.estimate).read_text().splitlines() if line.strip()])
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            one = train_once(task, 1, args.steps, Path(tmp) / f"{task}1")
            two = train_once(task, 2, args.steps, Path(tmp) / f"{task}2")
            rows.append({"task": task, "params": one["params"], "bytes": one["bytes"], "step_ms_1": one["step_ms"],
                         "step_ms_2": two["step_ms"], "all_reduce_ms_2": all_reduce_ms(one["params"])})
            print(json.dumps(rows[-1]), flush=True)
    print("| task | trainable parameters | bytes all-reduced / step | step, 1 worker | step, 2 workers "
          "| all-reduce alone, 2 workers |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['task']} | {r['params']:,} | {r['bytes'] / 1e6:.2f} MB | {r['step_ms_1']:.1f} ms "
              f"| {r['step_ms_2']:.1f} ms | {r['all_reduce_ms_2']:.1f} ms |")
    print_estimate(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
