"""Tiny end to end through the CLI: train → evaluate → export → LiteRT/SavedModel agree with Keras."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tasks.common.cli import main
from tasks.common.config import EVALUATE_KEYS
from helpers import last_json, quiet_cli

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "tasks" / "samples" / "sentiment"


def head(src: Path, dst: Path, n: int) -> Path:
    lines = src.read_text(encoding="utf-8").splitlines(True)[: n + 1]
    dst.write_text("".join(lines), encoding="utf-8")
    return dst


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sentiment")
    train = head(DATA / "train.tsv", tmp / "train.tsv", 240)
    dev = head(DATA / "dev.tsv", tmp / "dev.tsv", 40)
    out = tmp / "model"
    # default verbosity, descriptors captured: no TensorFlow/absl/LiteRT line (issue 27), a short summary
    result = quiet_cli(
        "sentiment", "train", "--data", str(train), "--out", str(out), "--epochs", "2", "--vocab-size", "200",
        "--embedding-dim", "16", "--units", "8", "--batch-size", "16", "--adversarial-epsilon", "0.5", "--members", "2",
    )
    assert f"model written to {out} (full report: train_report.json)" in result.stdout
    assert "{" not in result.stdout  # the JSON is in train_report.json only
    return out, dev


def test_train_writes_model_directory(trained):
    out, _ = trained
    for name in ("model.keras", "tokenizer.model", "config.json", "calibration.json", "train_report.json"):
        assert (out / name).is_file(), name
    assert list((out / "logs").rglob("events.out.tfevents.*")), "no TensorBoard events"
    report = json.loads((out / "train_report.json").read_text())
    # two members, each stopping early on its own tenth of the 240 texts (cross-validation bagging)
    assert report["epochs_run"] == 4 and report["train_examples"] == 240
    assert [m["epochs_run"] for m in report["members"]] == [2, 2] and set(report["best_epoch"]) <= {1, 2}
    assert all(abs(m["val_examples"] - 24) <= 1 for m in report["members"])
    assert report["val_examples"] == sum(m["val_examples"] for m in report["members"])
    assert all(0 <= m["val_accuracy"] <= 1 for m in report["members"])
    assert "(a held-out fold per member)" in report["val_data"] and report["val_scope"] == "members, out of fold"
    assert not list(out.rglob("member.keras")) and not list(out.rglob("backup"))  # only the averaged model stays
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["rating_head"] is True and config["objective"]["adversarial_epsilon"] == 0.5
    assert config["model"]["pooling"] == ["last", "last+max"]  # the default: member 1 max-pools
    # the --augment rows (on by default) are the LSTMs'; the n-gram member is fitted on the texts as they are
    assert config["data"]["augment"] == ["negation", "contrast", "balance"] and config["data"]["whole_negators"] is True
    assert report["ngram_member"]["C"] > 0 and report["ngram_member"]["examples"] == 240
    assert report["ngram_member"]["negation_scope"] is True  # the default: NOT_ features in the n-gram member
    assert (out / "student.keras").is_file() and report["student"]["epochs_run"] == 2  # distilled (the default)
    assert config["model"]["ngram_member"] is True
    assert not out.with_name("model.partial").exists()


def test_evaluate_defaults_read_the_shipped_data_from_any_directory(trained, tmp_path, monkeypatch, capsys):
    """Default --data (dev.tsv) and --negation come from the installed package, not the current directory."""
    from tasks.sentiment.config import DEV_FILE, NEGATION_FILE

    out, _ = trained
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "sentiment", "evaluate", "--model", str(out), "--limit", "50"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["data"] == DEV_FILE and result["examples"] == 50
    assert result["negation_data"] == NEGATION_FILE and result["negation_examples"] >= 100
    assert list(tmp_path.iterdir()) == []  # files went to MODEL/eval


TEXTS = [
    "A gorgeous, witty, seductive movie.",
    "The plot is nothing but boilerplate clichés from start to finish.",
    "ok",
    "It's not a bad film, but it's not a good one either, and it goes on far too long.",
]


@pytest.fixture(scope="module")
def exported(trained):
    """``(model dir, dev set, the export's JSON line)`` after ``sentiment export`` through the CLI."""
    out, dev = trained
    result = quiet_cli("sentiment", "export", "--model", str(out), "--calibration-examples", "40")
    return out, dev, json.loads((out / "export" / "export_report.json").read_text()), result.stdout


@pytest.fixture(scope="module")
def probabilities(exported):
    """Probabilities of :data:`TEXTS` from Keras, float LiteRT and int8 LiteRT."""
    from tasks.sentiment.artifacts import SentimentModelDir
    from tasks.sentiment.evaluate import load_predictor

    directory = SentimentModelDir.open(exported[0])
    return {runtime: load_predictor(directory, runtime).predict_proba(TEXTS)
            for runtime in ("keras", "tflite", "tflite-int8")}


def test_export_writes_float_and_int8_models(exported):
    out, _, report, printed = exported
    # a short summary on stdout: per file its size, its labels vs Keras and the verdict (issue 27)
    files = ["model_float.tflite", "model_int8.tflite", "model_mcu_float.tflite", "model_mcu_int8.tflite"]
    assert [row["file"] for row in report["verdicts"]][:2] == files[:2] and report["verdict"] in ("ok", "WARNING")
    for row in report["verdicts"]:
        line = next(line for line in printed.splitlines() if line.strip().startswith(row["file"] + " "))
        assert " KB " in line and row["verdict"] in line and "labels equal to" in line and "%" in line
        agreement = row["checks"][0]["value"]
        assert row["verdict"] == ("ok" if agreement >= 0.99 else "WARNING")
    assert "{" not in printed and len(printed.splitlines()) <= 8
    export = out / "export"
    for name in ("model_float.tflite", "model_int8.tflite", "tokenizer.model", "labels.txt", "export_report.json"):
        assert (export / name).is_file(), name
    for runtime in ("tflite", "tflite-int8"):
        assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in report[runtime]["ops"]
        assert "WHILE" not in report[runtime]["ops"]
        assert "REDUCE_MAX" in report[runtime]["ops"]  # member 1's max pooling
    assert report["tflite-int8"]["size_bytes"] < report["tflite"]["size_bytes"]
    assert not (out / "export.partial").exists()


def test_exported_runtimes_agree_with_keras(exported, probabilities):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    keras_p, float_p, int8_p = (probabilities[runtime] for runtime in ("keras", "tflite", "tflite-int8"))
    np.testing.assert_allclose(float_p, keras_p, atol=1e-4)
    # the tiny model's n-gram member is fitted on 240 texts (large weights, one int8 scale per table);
    # the default model on train.tsv measured max |int8 - keras| 2.6e-3 at export
    np.testing.assert_allclose(int8_p, keras_p, atol=0.2)
    assert ((int8_p > 0.5) == (keras_p > 0.5)).mean() >= 0.75

    served = tf.saved_model.load(str(exported[0] / "export" / "saved_model")).signatures["serving_default"](
        text=tf.constant(TEXTS + ["   "])
    )
    np.testing.assert_allclose(served["probability"].numpy()[:4], keras_p, atol=1e-5)
    labels = [label.decode() for label in served["label"].numpy()]
    assert labels[:4] == ["positive" if p >= 0.5 else "negative" for p in keras_p]


def test_predict_cli_gives_keras_labels(exported, probabilities, capsys):
    """A header, then one line per text: label + P(positive), same as Keras."""
    out = exported[0]
    lines = quiet_cli("sentiment", "predict", "--model", str(out), "--runtime", "tflite", *TEXTS[:2]).stdout.splitlines()
    assert lines[0] == "label\tp_positive\ttext" and len(lines) == 3  # labelled: P(positive), as in evaluate's TSVs
    for line, p in zip(lines[1:], probabilities["keras"][:2]):
        label, prob, _ = line.split("\t")
        assert label == ("positive" if p >= 0.5 else "negative")
        assert float(prob) == pytest.approx(p, abs=1e-3)


def test_evaluate_json_has_the_shared_keys_peers_and_negation_set(exported, capsys):
    out, dev, *_ = exported
    result = last_json(quiet_cli("sentiment", "evaluate", "--model", str(out), "--data", str(dev), "--runtime",
                                 "tflite").stdout)
    assert list(result)[: len(EVALUATE_KEYS)] == list(EVALUATE_KEYS)  # the shared keys first, in README order
    assert result["examples"] == 40 and result["runtime"] == "tflite" and result["task"] == "sentiment"
    for key in ("accuracy", "precision", "recall", "f1", "tfidf_svm_accuracy", "vader_accuracy",
                "negation_accuracy", "negation_tfidf_svm_accuracy", "negation_vader_accuracy"):
        assert 0.0 <= result[key] <= 1.0, key
    assert result["negation_examples"] >= 100
    assert sum(map(sum, result["confusion_matrix"])) == 40
    assert Path(result["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "baseline_svm.npz").is_file()
    rows = Path(result["negation_predictions"]).read_text().splitlines()
    assert rows[0].split("\t") == ["text", "label", "p_positive", "tfidf_svm", "vader"]


def test_mcu_export_runs_on_tflm(exported, probabilities, capsys):
    """The fixed-length MCU export (the distilled student) runs on TensorFlow Lite Micro (checked at
    export) and in evaluate, fits the flash and arena budget its report claims, and matches Keras."""
    from tasks.sentiment.artifacts import SentimentModelDir
    from tasks.sentiment.evaluate import load_predictor

    out, dev, report, _ = exported
    assert report["models"]["model_mcu_int8.tflite"].startswith("student.keras")
    assert report["models"]["model_int8.tflite"].startswith("model.keras")
    budget = report["mcu_budget"]
    assert budget["fits"] and (budget["flash_limit_bytes"], budget["arena_limit_bytes"]) == (512 * 1024, 64 * 1024)
    assert budget["flash_bytes"] == (out / "export" / "model_mcu_int8.tflite").stat().st_size <= 512 * 1024
    assert budget["arena_bytes"] >= report["mcu"]["int8"]["tflm"]["arena_bytes"] and budget["arena_bytes"] <= 64 * 1024
    config = json.loads((out / "config.json").read_text())
    assert report["mcu_max_tokens"] == min(config["text_tokens"]["max"], config["data"]["max_tokens"])
    for quantization in ("float", "int8"):
        section = report["mcu"][quantization]["tflm"]
        # (labels of this barely trained model sit at 0.5, where one LSB may flip them: compare values)
        assert section["loads"] and section["arena_bytes"] > 0 and section["max_abs_diff_vs_litert"] < 0.02
    assert report["mcu"]["int8"]["tflm"]["max_lsb_diff"] <= 4
    assert (out / "export" / "mcu" / "model_data.cc").is_file() and (out / "export" / "mcu" / "model_ops.h").is_file()
    micro = last_json(quiet_cli("sentiment", "evaluate", "--model", str(out), "--data", str(dev), "--runtime", "tflm",
                                "--no-baseline", "--negation", "none").stdout)
    assert micro["runtime"] == "tflm" and micro["examples"] == 40 and "tfidf_svm_accuracy" not in micro
    directory = SentimentModelDir.open(out)
    mcu_probs = load_predictor(directory, "tflm").predict_proba(TEXTS)
    np.testing.assert_allclose(mcu_probs, load_predictor(directory, "keras", student=True).predict_proba(TEXTS),
                               atol=0.05)
    np.testing.assert_allclose(mcu_probs, load_predictor(directory, "tflite-int8", student=True).predict_proba(TEXTS),
                               atol=0.02)  # TFLM and LiteRT run the same int8 file


def test_damaged_export_is_refused_with_one_line(exported, tmp_path, capsys):
    """A damaged export is refused with one line, never run (on a copy: the other tests keep theirs)."""
    out = tmp_path / "model"
    shutil.copytree(exported[0], out)
    path = out / "export" / "model_int8.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    path.write_bytes(bytes(data))
    code = main(["-q", "sentiment", "predict", "--model", str(out), "--runtime", "tflite-int8", "fine"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "file changed since export (sha256 mismatch)" in err[0] and "model_int8.tflite" in err[0]


def test_predict_stdin_splits_at_newline_only_escapes_tabs_and_streams(trained, capsys, monkeypatch):
    import sys
    import types

    out, _ = trained
    chunks = [b"good film\xe2\x80\xa8really\n", b"bad\x0cmovie\ntab\there\n\n", b"last\\one\r\n"]
    printed_before_read = []

    class Stdin:
        def read1(self, size):
            printed_before_read.append(capsys.readouterr().out)
            return chunks.pop(0) if chunks else b""

    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=Stdin()))
    assert main(["-q", "sentiment", "predict", "--model", str(out), "-", "x\ty"]) == 0
    printed = "".join(printed_before_read) + capsys.readouterr().out
    header, *rows = [line.split("\t") for line in printed.split("\n")[:-1]]
    assert header == ["label", "p_positive", "text"]
    assert [row[2] for row in rows] == ["good film\u2028really", "bad\x0cmovie", "tab\\there", "last\\\\one", "x\\ty"]
    assert all(len(row) == 3 and row[0] in ("negative", "positive") for row in rows)
    # streamed: each read's lines were answered before the next read (the header with the first answer)
    assert [len(text.split("\n")) - 1 for text in printed_before_read] == [0, 2, 2, 1]
