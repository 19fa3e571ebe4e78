"""Train one sentiment configuration with several seeds and score each on held-out data.

Every run trains with the CLI's defaults plus the given train flags (early stopping on a
held-out share of the training file unless ``--val`` is among them), then evaluates the Keras
model on ``--eval`` (default: the shipped ``sentiment/dev.tsv``, which the default training never sees).
Prints one JSON line per run and a summary line (mean, standard deviation, min, max).

Example:

    python tools/sentiment_seeds.py --seeds 1,2,3 --root /tmp/seeds/default
    python tools/sentiment_seeds.py --seeds 1,2,3 --root /tmp/seeds/adv -- --adversarial-epsilon 1
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.common import cli  # noqa: E402


def run_cli(argv: list[str], json_line: bool = True) -> dict | None:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = cli.main(argv)
    if code != 0:
        raise SystemExit(f"lstm-suite {' '.join(argv)} exited {code}")
    return json.loads(buffer.getvalue().strip().splitlines()[-1]) if json_line else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default: %(default)s)")
    parser.add_argument("--root", required=True, help="folder for the model directories (one per seed)")
    parser.add_argument("--eval", default="tasks/samples/sentiment/dev.tsv", help="held-out data (default: %(default)s)")
    parser.add_argument("--baseline", action="store_true", help="also score the peers and the negation set")
    parser.add_argument("train_flags", nargs="*", help="flags passed to `lstm-suite sentiment train` (after --)")
    args = parser.parse_args(argv)
    accuracies, negations = [], []
    for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
        out = Path(args.root) / f"seed{seed}"
        start = time.monotonic()
        run_cli(["-q", "sentiment", "train", "--out", str(out), "--seed", str(seed), "--progress", "none",
                 *args.train_flags], json_line=False)
        report = json.loads((out / "train_report.json").read_text())  # train prints a summary, not the JSON
        extra = [] if args.baseline else ["--no-baseline", "--negation", "none"]
        result = run_cli(["-q", "sentiment", "evaluate", "--model", str(out), "--data", args.eval, *extra])
        accuracies.append(result["accuracy"])
        if "negation_accuracy" in result:
            negations.append(result["negation_accuracy"])
        print(json.dumps({"seed": seed, "accuracy": result["accuracy"], "val_accuracy": report["val_accuracy"],
                          "best_epoch": report["best_epoch"], "epochs_run": report["epochs_run"],
                          "train_seconds": report["wall_seconds"], "seconds": round(time.monotonic() - start, 1),
                          **{k: v for k, v in result.items() if k.startswith(("negation_", "tfidf_svm_accuracy",
                                                                               "vader_accuracy"))}}), flush=True)
    summary = {"flags": args.train_flags, "eval": args.eval, "runs": len(accuracies),
               "mean": statistics.mean(accuracies), "min": min(accuracies), "max": max(accuracies),
               "std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0}
    if negations:
        summary["negation_mean"] = statistics.mean(negations)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
