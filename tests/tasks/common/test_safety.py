"""A stranger's model directory and a slip of the keyboard (issue 29): nothing outside is touched,
nothing runs, and every refusal is one line with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tasks.common import cli
from tasks.common.errors import UserError

REPO = Path(__file__).resolve().parents[3]
TINY = ["--epochs", "1", "--vocab-size", "120", "--embedding-dim", "8", "--units", "4", "--members", "1",
        "--no-ngram-member", "--progress", "none"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.tsv"
    lines = (REPO / "data" / "sentiment" / "train.tsv").read_text(encoding="utf-8").splitlines(True)[:161]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def error_line(capsys, *argv) -> str:
    """Run ``lstm-suite ARGV`` in this process; it must fail with exactly one error line, exit 2."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exit:
        code = exit.code
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("lstm-suite: error: "), (code, err[-5:])
    return err[0]


def snapshot(path: Path) -> dict:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def fake_model(path: Path, task: str = "sentiment") -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"task": task}))
    (path / "model.keras").write_bytes(b"PK\x03\x04 the user's good model")
    return path


# -- 1: --overwrite replaces only a model directory of the task ----------------------------------
def test_overwrite_refuses_a_directory_that_is_not_a_model(tmp_path, tiny_data, capsys):
    home = tmp_path / "somedir"
    home.mkdir()
    (home / "thesis.tex").write_text("two years of work")
    before = snapshot(home)
    line = error_line(capsys, "sentiment", "train", "--data", str(tiny_data), "--out", str(home), "--overwrite")
    assert "is not a model directory" in line
    line = error_line(capsys, "sentiment", "train", "--data", str(tiny_data), "--out", str(home))
    assert "is not a model directory" in line and "--overwrite" not in line
    line = error_line(capsys, "sentiment", "train", "--data", str(tiny_data), "--out",
                      str(fake_model(tmp_path / "forecast", "forecasting")), "--overwrite")
    assert "'forecasting' model directory" in line
    assert snapshot(home) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forecast", "somedir"]  # no .partial, no lock files


# -- 4: train --overwrite and export of one model exclude each other ---------------------------
HOLD_TRAIN = textwrap.dedent(
    """
    import sys, time
    from tasks.common.io import DirectoryLock
    with DirectoryLock(sys.argv[1], "train"):  # the lock model_directory takes, without importing TensorFlow
        print("ready", flush=True)
        time.sleep(60)
    """
)


def test_export_and_train_overwrite_of_one_model_exclude_each_other(tmp_path):
    from tasks.sentiment.artifacts import SentimentModelDir

    model = fake_model(tmp_path / "model")
    directory = SentimentModelDir.open(model)
    trainer = subprocess.Popen([sys.executable, "-c", HOLD_TRAIN, str(model)], stdout=subprocess.PIPE, text=True)
    try:
        assert trainer.stdout.readline().strip() == "ready"
        with pytest.raises(UserError, match=rf"another lstm-suite process \(pid {trainer.pid} train\)"):
            with directory.staged_export():
                raise AssertionError("must not start")
    finally:
        trainer.kill()
        trainer.wait()
    assert not (model / "export").exists() and not (model / "export.partial").exists()
    # a model replaced after export opened it (a train --overwrite that finished) is refused
    replacement = tmp_path / "model.keras.new"
    replacement.write_bytes(b"PK\x03\x04 a newer model")
    os.replace(replacement, model / "model.keras")
    with pytest.raises(UserError, match="replaced while export read it"):
        with directory.staged_export():
            raise AssertionError("must not start")
    # and while export holds the model, train is refused at once
    from tasks.common.training import model_directory

    directory = SentimentModelDir.open(model)
    with directory.staged_export() as work:
        (work / "model_float.tflite").write_bytes(b"tflite")
        with pytest.raises(UserError, match=r"another lstm-suite process \(pid \d+ export\)"):
            with model_directory(model, overwrite=True, task="sentiment"):
                raise AssertionError("must not start")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_exported_file_without_a_recorded_sha256_is_refused(tmp_path):
    from tasks.sentiment.artifacts import SentimentModelDir

    model = fake_model(tmp_path / "model")
    (model / "export").mkdir()
    (model / "export" / "model_float.tflite").write_bytes(b"planted")
    directory = SentimentModelDir.open(model)
    with pytest.raises(UserError, match="no export_report.json beside it"):
        directory.export_file("tflite")
    (model / "export" / "export_report.json").write_text(json.dumps({"sizes": {"model_float.tflite": 7}}))
    with pytest.raises(UserError, match="no SHA-256 recorded for it"):
        directory.export_file("tflite")


# -- 5: a diverged training fails and never replaces a good model ------------------------------
def test_diverged_training_fails_and_keeps_the_good_model(tmp_path, tiny_data, capsys):
    good = fake_model(tmp_path / "good")
    before = snapshot(good)
    line = error_line(capsys, "-q", "sentiment", "train", "--data", str(tiny_data), "--out", str(good), "--overwrite",
                      *TINY, "--learning-rate", "1e30")
    assert "training diverged" in line and "--learning-rate" in line
    assert snapshot(good) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good"]


def test_non_finite_data_fails_the_training(tmp_path):
    import keras
    import numpy as np
    import tensorflow as tf

    from tasks.common.guards import TrainingDiverged
    from tasks.common.training import TrainConfig, fit, model_directory

    good = fake_model(tmp_path / "good")
    before = snapshot(good)
    x = np.ones((16, 3, 2), np.float64)
    x[5, 1, 0] = 1e308  # inf once cast to float32
    y = np.ones((16,), np.float32)
    model = keras.Sequential([keras.Input((3, 2)), keras.layers.Flatten(), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    with np.errstate(over="ignore"):
        data = tf.data.Dataset.from_tensor_slices((x.astype(np.float32), y)).batch(4)
    with pytest.raises(TrainingDiverged, match="training diverged: the loss became"):
        with model_directory(good, overwrite=True, task="sentiment") as work:
            fit(model, data, data, workdir=work, config=TrainConfig(epochs=2, progress="none"))
    assert snapshot(good) == before and sorted(p.name for p in tmp_path.iterdir()) == ["good"]


# -- 8: one line instead of a traceback ---------------------------------------------------------
def test_absurd_flags_and_paths_are_one_line(tmp_path, tiny_data, capsys):
    train = ["sentiment", "train", "--data", str(tiny_data)]
    assert "--seed: expected an integer >= 0 and <= 2147483647" in error_line(
        capsys, *train, "--out", str(tmp_path / "m"), "--seed", str(2**66))
    assert "--learning-rate: expected a number > 0, got inf (not a finite number)" in error_line(
        capsys, *train, "--out", str(tmp_path / "m"), "--learning-rate", "inf")
    assert "/proc/x" in error_line(capsys, *train, "--out", "/proc/x")
    line = error_line(capsys, "-q", *train, "--out", str(tmp_path / "m"), *TINY, "--units", "100000")
    assert "out of memory" in line and "--units" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_config_nested_too_deeply_is_one_line(tmp_path, capsys):
    model = fake_model(tmp_path / "model")
    (model / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    assert "nested too deeply" in error_line(capsys, "sentiment", "evaluate", "--model", str(model))


def test_eval_symlinked_out_of_the_model_directory_is_not_followed(tmp_path, caplog):
    from tasks.sentiment.artifacts import SentimentModelDir

    model = fake_model(tmp_path / "model")
    outside = tmp_path / "outside"
    outside.mkdir()
    (model / "eval").symlink_to(outside, target_is_directory=True)
    assert SentimentModelDir.open(model).evaluation_dir(None) is None
    assert "symbolic link out of the model directory" in caplog.text
    assert not any(outside.iterdir())
    (model / "eval").unlink()
    (model / "plots").mkdir()
    (model / "eval").symlink_to(model / "plots", target_is_directory=True)  # inside: fine
    assert SentimentModelDir.open(model).evaluation_dir(None) == model / "eval"
