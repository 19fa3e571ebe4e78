"""Quiet by default (issue 27): C++ lines of TensorFlow/absl/LiteRT filtered at descriptor 2; export verdicts."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

from tasks.common.verdicts import Limit, export_summary_lines, record_verdicts, train_summary_lines, verdict_row

ROOT = Path(__file__).resolve().parents[3]

WRITER = textwrap.dedent(
    r"""
    import os, sys
    from tasks.common.quiet import filtered_stderr
    with filtered_stderr():
        os.write(2, b"E0000 00:00:1764752000.123456    1234 mkl_util.cc:123] oneDNN supports DT_INT64/DT_BOOL only\n")
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"a C++ line of our own\nF1203 10:11:12.123456  123 foo.cc:1] a fatal line\nunfinished")
        print("\rprogress", end="", file=sys.stderr)  # Python's own writes bypass the filter, \r included
        print(" 100%", file=sys.stderr)
        if sys.argv[1] == "fail":
            raise RuntimeError("boom")
    os.write(2, b"after\n")
    """
)


def _run(mode: str, verbose: str = "") -> str:
    env = {"PYTHONPATH": str(ROOT), "LSTM_SUITE_VERBOSE": verbose, "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", WRITER, mode], capture_output=True, cwd=ROOT, env=env, timeout=60)
    return result.stderr.decode()  # bytes: text mode would turn the \r into a line break


def test_filtered_stderr_drops_tensorflow_lines_and_passes_the_rest():
    lines = _run("ok").split("\n")[:-1]
    assert lines[0] == "\rprogress 100%"
    assert set(lines[1:]) == {"a C++ line of our own", "F1203 10:11:12.123456  123 foo.cc:1] a fatal line",
                              "unfinished", "after"}
    assert not any("oneDNN" in line or "XNNPACK" in line or "absl" in line for line in lines)


def test_filtered_lines_come_back_with_a_traceback_and_with_verbose():
    failed = _run("fail")
    assert "oneDNN" in failed and "XNNPACK" in failed and "RuntimeError: boom" in failed  # nothing hidden on a crash
    assert "oneDNN" in _run("ok", verbose="1") and "XNNPACK" in _run("ok", verbose="1")


def test_verdict_rows_warn_once_per_file_past_its_limit(caplog):
    labels = Limit("labels equal to Keras", "%", minimum=0.99)
    bleu = Limit("BLEU below Keras", "BLEU", maximum=1.0)
    rows = [verdict_row("model_float.tflite", 2048, [labels.check(1.0)]),
            verdict_row("tflm/encoder_int8.tflite", 512, [labels.check(0.4, "20 of 50"), bleu.check(2.42)]),
            verdict_row("model_mcu.tflite", None, [labels.check(None)])]
    report = {}
    with caplog.at_level(logging.WARNING):
        record_verdicts(report, rows)
    assert [row["verdict"] for row in report["verdicts"]] == ["ok", "WARNING", "ok"] and report["verdict"] == "WARNING"
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith(
        "tflm/encoder_int8.tflite disagrees with Keras: labels equal to Keras 40.0% (20 of 50); BLEU below Keras 2.42 BLEU")
    lines = export_summary_lines(report, "m/export")
    assert lines[0] == "exported to m/export (full report: export_report.json)"
    assert "2.0 KB" in lines[1] and " ok " in lines[1] and "100.0%" in lines[1]
    assert "WARNING" in lines[2] and "40.0% (20 of 50)" in lines[2] and "not measured" in lines[3]


def test_train_summary_is_short():
    report = {"epochs_run": 4, "best_epoch": [1, 2], "wall_seconds": 12.3, "val_accuracy": 0.5, "members": [{}] * 9,
              "val_examples": 48, "train_examples": 240}
    assert train_summary_lines(report, "m") == [
        "model written to m (full report: train_report.json)", "  4 epochs (best [1, 2]), 12 s",
        "  val_accuracy 0.5, val_examples 48"]
