"""The interruption chain every task's resume test runs (issue 27): ``run_chain(task, kill, ...)``.

One chain per task on tiny data: an uninterrupted reference run, then the same command into
another ``--out`` stopped mid-epoch, rerun and stopped between members or epochs, rerun and
stopped during the final save, and rerun to the end; SIGINT and SIGTERM (in this process) and
SIGKILL (a subprocess, a TensorFlow import). The default suite runs the sentiment and forecasting
chains with SIGKILL at the final save; every other chain (translation, speech_commands, and the
variants with SIGINT/SIGTERM at the final save) is ``slow``. The interruptions are deterministic
(``LSTM_SUITE_INTERRUPT_AT``, :mod:`tasks.common.resume`).
Checked: what was finished is kept and not redone (file hashes and mtimes, "reusing" lines),
the model directory has the reference's files, config and report fields, epochs are counted and
times summed over the segments, and the progress line names the member, the epoch and an ETA.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


from tasks.common import cli
from tasks.common.resume import INTERRUPT_VARIABLE

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tasks" / "samples"


def _head(src: Path, dst: Path, lines: int) -> Path:
    dst.write_text("".join(src.read_text(encoding="utf-8").splitlines(True)[: lines + 1]), encoding="utf-8")
    return dst


def task_argv(task: str, tmp: Path) -> list[str]:
    """Tiny training flags (2 epochs over a few batches; 2 members where the task has them)."""
    if task == "sentiment":
        return ["--data", str(_head(SAMPLES / "sentiment" / "train.tsv", tmp / "train.tsv", 160)), "--epochs", "2",
                "--vocab-size", "120", "--embedding-dim", "8", "--units", "4", "--batch-size", "32",
                "--members", "2", "--no-ngram-member"]
    if task == "translation":
        sys.path.insert(0, str(ROOT / "tests" / "tasks" / "translation"))
        from translation_toy import tiny_tsv

        train, dev = tiny_tsv(tmp)
        return ["--data", str(train), "--val", str(dev), "--vocab-size", "40", "--embedding-dim", "8", "--units",
                "8", "--decoder-units", "8", "--epochs", "2", "--batch-size", "32", "--warmup-steps", "1",
                "--bleu-every", "0", "--bleu-sentences", "4"]
    if task == "speech_commands":
        sys.path.insert(0, str(ROOT / "tests" / "tasks" / "speech_commands"))
        from speech_toy import make_dataset

        return ["--data", str(make_dataset(tmp / "speech", per_speaker=2)), "--test-speakers", "dave", "--epochs",
                "2", "--units", "4", "--num-mel-bins", "8", "--batch-size", "8", "--synthetic-voices", "0"]
    sys.path.insert(0, str(ROOT / "tests" / "tasks" / "forecasting"))
    from forecast_toy import write_monthly_csv

    return ["--data", str(write_monthly_csv(tmp / "sales.csv", n=120)), "--target", "sales", "--horizon", "3",
            "--lookback", "12", "--units", "4", "--hidden", "0", "--ensemble", "2", "--epochs", "2",
            "--batch-size", "16", "--hybrid", "off"]


# where each task is stopped, in order: (point, signal); `kill` variants SIGKILL the final save instead
CHAINS = {
    "sentiment": [("mid_epoch:2", "SIGINT"), ("after_member:1", "SIGTERM"), ("final_save", "SIGINT")],
    "translation": [("mid_epoch:2", "SIGINT"), ("epoch:2", "SIGTERM"), ("final_save", "SIGINT")],
    "speech_commands": [("mid_epoch:2", "SIGTERM"), ("epoch:2", "SIGINT"), ("final_save", "SIGTERM")],
    "forecasting": [("mid_epoch:2", "SIGTERM"), ("epoch:2", "SIGINT"), ("final_save", "SIGINT")],
}
EXIT = {"SIGINT": 130, "SIGTERM": 143, "SIGKILL": -9}


def train(task: str, argv: list[str], out: Path, capsys, monkeypatch, stop: tuple[str, str] | None = None,
          progress: str = "epoch"):
    """One ``train`` (in this process, or a subprocess for SIGKILL): (exit code, stderr, seconds)."""
    command = [task, "train", *argv, "--out", str(out), "--progress", progress]
    started = time.monotonic()
    if stop is not None and stop[1] == "SIGKILL":
        env = {**os.environ, INTERRUPT_VARIABLE: "=".join(stop), "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-m", "tasks.common.cli", *command], env=env, capture_output=True,
                              text=True, timeout=600)
        return done.returncode, done.stderr, time.monotonic() - started
    if stop is None:
        monkeypatch.delenv(INTERRUPT_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(INTERRUPT_VARIABLE, "=".join(stop))
    capsys.readouterr()
    # A pytest-xdist worker may have SIGINT ignored or handled by an earlier test; a user's shell
    # gives Python's default handler (KeyboardInterrupt), which the SIGINT points rely on.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = cli.main(command)
    finally:
        signal.signal(signal.SIGINT, previous)
    return code, capsys.readouterr().err, time.monotonic() - started


def digests(directory: Path, name: str) -> dict:
    """``{relative path: (sha256, mtime_ns)}`` of every file called ``name`` under ``directory``."""
    return {p.relative_to(directory).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in directory.rglob(name)}


def layout(directory: Path) -> set[str]:
    """Files of a model directory, TensorBoard event files by folder only (their names hold times)."""
    return {p.parent.relative_to(directory).as_posix() + "/<events>" if ".tfevents." in p.name
            else p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}


def comparable_config(directory: Path) -> dict:
    return json.loads((directory / "config.json").read_text())


def run_chain(task: str, kill: bool, tmp_path: Path, capsys, monkeypatch) -> None:
    """Reference run, three interrupted runs of the same command (``CHAINS[task]``; ``kill``: SIGKILL
    the final save), the run that finishes; asserts what the module docstring says."""
    argv = task_argv(task, tmp_path)
    reference = tmp_path / "reference"
    code, err, _ = train(task, argv, reference, capsys, monkeypatch)
    assert code == 0, err[-3000:]
    out = tmp_path / "model"
    work = tmp_path / "model.partial"
    kept: dict = {}
    for point, signame in CHAINS[task]:
        signame = "SIGKILL" if kill and point == "final_save" else signame
        code, err, seconds = train(task, argv, out, capsys, monkeypatch, stop=(point, signame))
        assert code == EXIT[signame], f"{point} {signame}: exit code {code}\n" + err[-3000:]
        assert work.is_dir() and not out.exists(), f"{task} {point} {signame}: the work directory was not kept"
        for name, digest in kept.items():  # finished work is neither redone nor rewritten
            assert digests(work, name) | digest == digests(work, name), f"{name} changed at {point}"
        kept = {"member.keras": digests(work, "member.keras"), "fitted.weights.h5": digests(work, "fitted.weights.h5")}
        if point == "after_member:1":
            assert list(kept["member.keras"]) == ["logs/member0/member.keras"]
        if signame == "SIGTERM":
            assert err.strip().splitlines()[-1] == "lstm-suite: terminated (SIGTERM)"
        if point.startswith("mid_epoch:2"):  # the progress line of a resumed or second epoch has an ETA
            stage = "member 1/2, epoch 2/2" if task == "sentiment" else "epoch 2/2"
            assert f"{stage}: about " in err and " left (at most" in err, err[-3000:]
    code, err, last_seconds = train(task, argv, out, capsys, monkeypatch)
    assert code == 0, err[-3000:]
    assert not work.exists()
    assert "reusing the finished" in err and "epoch 1/2" not in err  # nothing trained again
    assert layout(out) == layout(reference)
    assert comparable_config(out) == comparable_config(reference)
    report, expected = (json.loads((d / "train_report.json").read_text()) for d in (out, reference))
    assert set(report) == set(expected)
    assert report["epochs_run"] == expected["epochs_run"]
    assert report["training_runs"] == 4 and expected["training_runs"] == 1
    assert report["wall_seconds"] > last_seconds  # the earlier segments are counted
    assert sorted(json.loads((out / "history.json").read_text())) == sorted(
        json.loads((reference / "history.json").read_text()))
