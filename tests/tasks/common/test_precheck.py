"""Errors that need no TensorFlow come before it loads (issue 27): one line with the hint, in well under a second."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# Each case runs cli.main in one fresh process; the process reports each exit code, error line and
# time, and whether TensorFlow was imported at all.
RUNNER = textwrap.dedent(
    """
    import contextlib, io, json, sys, time
    from tasks.common import cli
    results = []
    for argv in json.loads(sys.argv[1]):
        err = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stderr(err):
            try:
                code = cli.main(argv)
            except SystemExit as exit:
                code = exit.code
        results.append({"code": code, "err": err.getvalue(), "seconds": time.perf_counter() - start})
    print(json.dumps({"results": results, "tensorflow": "tensorflow" in sys.modules or "keras" in sys.modules}))
    """
)


def test_data_out_model_and_flag_errors_come_before_tensorflow(tmp_path):
    (tmp_path / "reviews.tsv").write_text("review\tstars\ngood\t1\n")
    (tmp_path / "sales.csv").write_text("date,sales\n2020-01-01,3\n")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me\n")
    cases = {
        "missing data": (["sentiment", "train", "--data", "nope.tsv", "--out", "m"],
                         ["--data nope.tsv: no such file or directory", f"(relative to the current directory {tmp_path})"]),
        "column": (["sentiment", "train", "--data", "reviews.tsv", "--out", "m"],
                   ["reviews.tsv: no 'text' column (--text-column)", "review, stars", "pass --text-column NAME"]),
        "target": (["forecasting", "train", "--data", "sales.csv", "--target", "profit", "--out", "m"],
                   ["no 'profit' column (--target)", "date, sales"]),
        "out": (["speech_commands", "train", "--out", "mine"], ["--out mine: already exists and is not a model directory"]),
        "model": (["translation", "evaluate", "--model", "nothing"], ["nothing: no such model directory"]),
        "flag": (["sentiment", "train", "--epoch", "3"], ["--epoch 3 (did you mean --epochs?)"]),
    }
    out = subprocess.run([sys.executable, "-c", RUNNER, json.dumps([argv for argv, _ in cases.values()])],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert not report["tensorflow"], "an error that needs no TensorFlow imported it"
    for (name, (_, expected)), result in zip(cases.items(), report["results"]):
        lines = result["err"].strip().splitlines()
        assert result["code"] == 2 and len(lines) == 1 and lines[0].startswith("lstm-suite: error: "), (name, lines)
        for part in expected:
            assert part in lines[0], (name, part, lines[0])
        assert result["seconds"] < 2.0, (name, result["seconds"])  # ~0.1 s on an idle machine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "reviews.tsv", "sales.csv"]  # nothing written
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me\n"


def test_bad_data_found_under_the_lock_leaves_no_lock_and_no_folders(tmp_path, capsys):
    """A label the loader refuses (after train took its lock and made --out's parents): nothing stays."""
    from helpers import run_cli

    bad = tmp_path / "bad.tsv"
    bad.write_text("text\tlabel\ngood film\tpositive\nbad film\tmaybe\n")
    result = run_cli("sentiment", "train", "--data", bad, "--out", tmp_path / "new" / "deep" / "m", capsys=capsys)
    assert result.returncode == 2 and "unknown label 'maybe'" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tsv"]  # no lock file, no parents, no m.partial
