"""Speaker-disjoint accuracy: train on all speakers but one, test on that one, each in turn.

    python -m tasks.speech_commands.crossval --data ../shared/data/speech_digits \\
        --out saved_models/speech_commands_xval [-- extra train flags]

For every speaker S it runs the ordinary CLI: ``train --test-speakers S``, ``export``, then
``evaluate`` (default data: the held-out test split, i.e. S) with every runtime, and writes
``OUT/crossval.json`` plus a Markdown table (``OUT/crossval.md``). Finished steps are skipped on
a rerun, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

from tasks.common.io import write_bytes_atomic, write_json_atomic

from tasks.speech_commands.data import scan_folder

log = logging.getLogger("speech_commands.crossval")
RUNTIMES = ("keras", "tflite", "tflite-int8", "tflm")


def _run(argv: list[str]) -> dict | None:
    cmd = [sys.executable, "-m", "tasks.speech_commands", *argv]
    log.info("$ %s", " ".join(cmd[1:]))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode:
        raise SystemExit(f"crossval: command failed ({proc.returncode}): {' '.join(argv)}")
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def crossval(data: str, out: Path, speakers: list[str], train_args: list[str], runtimes=RUNTIMES) -> dict:
    results = {}
    for spk in speakers:
        model_dir = out / spk
        row = {}
        t0 = time.time()
        if not (model_dir / "model.keras").exists():
            _run(["train", "--data", data, "--out", str(model_dir), "--test-speakers", spk, *train_args])
            row["train_seconds"] = round(time.time() - t0, 1)
        if not (model_dir / "export" / "export_report.json").exists():
            _run(["export", "--model", str(model_dir)])
        report = json.loads((model_dir / "export" / "export_report.json").read_text())
        for runtime in runtimes:
            done = model_dir / "eval" / f"evaluate_{runtime}.json"
            res = json.loads(done.read_text()) if done.exists() else {}
            if set(res.get("per_speaker_accuracy", {})) != {spk}:
                res = _run(["evaluate", "--model", str(model_dir), "--runtime", runtime])
            row[runtime] = res["accuracy"]
        row["examples"] = res["examples"]
        row["int8_bytes"] = report["sizes"]["model_int8.tflite"]
        row["float_bytes"] = report["sizes"]["model_float.tflite"]
        row["streaming_label_agreement"] = report["streaming"]["label_agreement_with_clip_model"]
        metrics = json.loads((model_dir / "train_report.json").read_text())
        row["train_seconds"] = row.get("train_seconds", metrics.get("wall_seconds"))
        row["epochs_run"] = metrics.get("epochs_run")
        results[spk] = row
        log.info("%s: %s", spk, row)
    mean = {r: sum(v[r] for v in results.values()) / len(results) for r in runtimes}
    summary = {"speakers": results, "mean": mean, "train_args": train_args}
    write_json_atomic(out / "crossval.json", summary)
    lines = ["| test speaker | clips | " + " | ".join(runtimes) + " | int8 bytes | train s |",
             "|---|---|" + "---|" * len(runtimes) + "---|---|"]
    for spk, r in results.items():
        lines.append(f"| {spk} | {r['examples']} | " + " | ".join(f"{r[k]:.3f}" for k in runtimes)
                     + f" | {r['int8_bytes']} | {r['train_seconds']} |")
    lines.append("| **mean** | | " + " | ".join(f"**{mean[k]:.3f}**" for k in runtimes) + " | | |")
    write_bytes_atomic(out / "crossval.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tasks.speech_commands.crossval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--out", default="saved_models/speech_commands_xval")
    p.add_argument("--speaker", action="append", default=[], help="only these test speakers (default: all)")
    p.add_argument("--runtimes", default=",".join(RUNTIMES), help="evaluate runtimes, comma-separated")
    p.add_argument("train_args", nargs=argparse.REMAINDER, help="after --: extra flags for train")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    speakers = args.speaker or sorted({e.speaker for e in scan_folder(args.data)})
    extra = [a for a in args.train_args if a != "--"]
    crossval(args.data, Path(args.out), speakers, extra, tuple(args.runtimes.split(",")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
