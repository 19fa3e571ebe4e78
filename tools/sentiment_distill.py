"""Distil a sentiment student from a trained (or partly trained) ensemble, then export and score it.

Study tool for issue 26: iterate on the student against one saved teacher instead of retraining
the ensemble. ``--teacher`` is a model directory (its ``model.keras`` is the teacher) or an
interrupted ``OUT.partial`` (the finished members under ``logs/member*/member.keras`` plus the
n-gram member, fitted here as ``train`` would). The teacher's probabilities are cached in
``--cache`` (one NPZ, keyed by text), so later students cost only their own training.
Writes ``--out`` as a normal model directory (teacher = ``model.keras``, ``student.keras``),
runs ``export`` and ``evaluate`` through the CLI and prints one JSON line with every figure.

Example:

    python tools/sentiment_distill.py --teacher /tmp/ens/seed1 --out /tmp/st/e32 --cache /tmp/st/teacher.npz
    python tools/sentiment_distill.py --teacher /tmp/ens/seed1 --out /tmp/st/e16 --cache /tmp/st/teacher.npz \
        -- --student-embedding-dim 16
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.common import cli  # noqa: E402


def cli_stdout(argv: list[str]) -> str:
    """Run ``lstm-suite ARGV`` in this process; its stdout (a failure stops the tool)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = cli.main(argv)
    if code != 0:
        raise SystemExit(f"lstm-suite {' '.join(argv)} exited {code}")
    return buffer.getvalue()


def run_cli(argv: list[str]) -> dict:
    """The JSON object on the last stdout line (``evaluate``)."""
    return json.loads(cli_stdout(argv).strip().splitlines()[-1])


def cached(function, path: Path):
    """``function(network, tokenizer, texts)`` with the answers kept in ``path`` (NPZ of texts, probabilities)."""
    import numpy as np

    known = {}
    if path.is_file():
        saved = np.load(path, allow_pickle=False)
        known = dict(zip(saved["texts"].tolist(), saved["probabilities"].tolist()))

    def wrapper(network, tokenizer, texts):
        missing = sorted({t for t in texts if t not in known})
        if missing:
            known.update(zip(missing, function(network, tokenizer, missing).tolist()))
            np.savez(path, texts=np.array(list(known)), probabilities=np.array(list(known.values()), np.float32))
        return np.array([known[t] for t in texts], np.float32)

    return wrapper


def load_teacher(source: Path, sections: dict, tokenizer, pool):
    """The teacher network: ``model.keras``, or the finished members of a partial run plus a new n-gram member."""
    from tasks.common.artifacts import load_keras_model
    from tasks.sentiment.model import average_members
    from tasks.sentiment.train import _ngram_member

    if (source / "model.keras").is_file():
        return load_keras_model(source / "model.keras"), None
    paths = sorted((source / "logs").glob("member*/member.keras"))
    if not paths:
        raise SystemExit(f"{source}: no model.keras and no finished member")
    members = [load_keras_model(p) for p in paths]
    model, train = sections["model"], sections["train"]
    ngram, report = _ngram_member(model, pool, tokenizer, train.seed)
    return average_members(members, ngram), {"members": [str(p) for p in paths], "ngram": report}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--cache", type=Path, help="NPZ of the teacher's probabilities (default: OUT/../teacher.npz)")
    parser.add_argument("--seed", type=int, default=None, help="the student's seed (default: the teacher's)")
    parser.add_argument("--ngram-c", type=float, help="partial teacher: fit its n-gram member with this C only "
                        "(default: train's cross-validated choice)")
    parser.add_argument("--skip-ensemble", action="store_true", help="do not score the ensemble")
    parser.add_argument("student_flags", nargs="*", help="--student-embedding-dim N, --student-units N, "
                        "--distill-copies N, --no-augment (after --)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    if args.ngram_c:
        from tasks.sentiment import ngram

        ngram.C_GRID = (args.ngram_c,)
    from tasks.common.config import settings_from_dict
    from tasks.sentiment import distill
    from tasks.sentiment.artifacts import SentimentModelDir, Tokenizer
    from tasks.sentiment.data import load_config_examples
    from tasks.sentiment.train import _prior

    raw = json.loads((args.teacher / "config.json").read_text())
    sections = {name: settings_from_dict(kind, raw.get(name), source="config.json")
                for name, kind in SentimentModelDir.SECTIONS.items()}
    student = _student_settings(sections["student"], args.student_flags)
    if args.seed is not None:
        import dataclasses

        sections["train"] = dataclasses.replace(sections["train"], seed=args.seed)
    data = sections["data"]
    if "--no-augment" in args.student_flags:
        import dataclasses

        data = dataclasses.replace(data, augment=None)
    tokenizer = Tokenizer(args.teacher / "tokenizer.model", data.max_tokens)
    pool = load_config_examples(data, data.data, default_split="train")
    teacher, partial = load_teacher(args.teacher, sections, tokenizer, pool)
    args.out.mkdir(parents=True, exist_ok=False)
    for name in ("tokenizer.model", "calibration.json"):
        shutil.copy(args.teacher / name, args.out / name)
    raw["student"] = {key: value for key, value in vars(student).items()}
    (args.out / "config.json").write_text(json.dumps(raw, indent=1))
    teacher.save(args.out / "model.keras")
    distill.teacher_probabilities = cached(distill.teacher_probabilities,
                                           args.cache or args.out.parent / "teacher.npz")
    trained = time.monotonic()
    _, summary = distill.train_student(args.out, teacher, tokenizer, pool, data, sections["model"],
                                       sections["objective"], sections["train"], student,
                                       _prior(sections["model"], tokenizer))
    summary["student_seconds"] = round(time.monotonic() - trained, 1)
    result = {"teacher": str(args.teacher), "partial_teacher": partial, "student": vars(student), "train": summary}
    result["export"] = _export_figures(_export(args.out))
    result.update(_scores(args.out, args.skip_ensemble))
    result["seconds"] = round(time.monotonic() - start, 1)
    print(json.dumps(result))
    return 0


def _export(out: Path) -> dict:
    """Run ``export``; its report (``export`` prints a table, not JSON)."""
    cli_stdout(["-q", "sentiment", "export", "--model", str(out)])
    return json.loads((out / "export" / "export_report.json").read_text())


def _scores(out: Path, skip_ensemble: bool) -> dict:
    """dev and negation accuracy of the student (Keras, LiteRT int8, TFLM int8) and of the ensemble."""
    result = {}
    for name, flags in (("student_keras", ["--runtime", "keras", "--student"]),
                        ("student_litert_int8", ["--runtime", "tflite-int8", "--student"]),
                        ("student_tflm_int8", ["--runtime", "tflm"]),
                        *(() if skip_ensemble else (("ensemble_keras", ["--runtime", "keras"]),))):
        scored = run_cli(["-q", "sentiment", "evaluate", "--model", str(out), *flags,
                          "--no-baseline"])
        result[name] = {key: scored.get(key) for key in ("accuracy", "negation_accuracy", "ms_per_example",
                                                          "tfidf_svm_accuracy", "vader_accuracy",
                                                          "negation_tfidf_svm_accuracy", "negation_vader_accuracy")
                        if key in scored}
    return result


def _student_settings(saved, flags: list[str]):
    """The ``student`` section with ``--student-*`` / ``--distill-copies`` flags applied."""
    import dataclasses

    values = {}
    for flag, value in zip(flags, flags[1:]):
        if flag.startswith("--student-") or flag == "--distill-copies":
            values[flag[2:].replace("-", "_")] = int(value)
    return dataclasses.replace(saved, **values)


def _export_figures(report: dict) -> dict:
    int8 = report["mcu"]["int8"]
    return {"models": report.get("models"), "mcu_max_tokens": report["mcu_max_tokens"],
            "mcu_int8_bytes": int8["size_bytes"], "arena_bytes": int8["tflm"]["arena_bytes"],
            "arena_recommended_bytes": int8["tflm"]["arena_recommended_bytes"], "budget": report.get("mcu_budget"),
            "ensemble_int8_bytes": report["tflite-int8"]["size_bytes"],
            "label_agreement_vs_keras": int8["calibration_label_agreement_vs_keras"]}


if __name__ == "__main__":
    raise SystemExit(main())
