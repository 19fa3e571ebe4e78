"""Tiny end-to-end run: train -> evaluate -> export -> LiteRT and SavedModel translate like Keras."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tasks.common.cli import main
from tasks.common.config import EVALUATE_KEYS
from lstm_core.export import FUSED_LSTM_OP, TFLiteModel
from tasks.translation import data
from tasks.translation.artifacts import TranslationModelDir
from tasks.translation.decode import BeamConfig, KerasBackend, LiteRTBackend, beam_decode, beam_search, greedy_decode
from tasks.translation.model import load_seq2seq
from translation_toy import tiny_tsv
from helpers import assert_quiet, last_json, load_tool, quiet_cli, run_cli

TINY = [
    "--vocab-size", "40", "--embedding-dim", "16", "--units", "16", "--decoder-units", "32",
    "--epochs", "6", "--batch-size", "16", "--learning-rate", "0.02", "--warmup-steps", "1",
    "--bleu-every", "0", "--dropout", "0", "--word-dropout", "0", "--progress", "none",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("translation")
    train, dev = tiny_tsv(tmp)
    out = tmp / "model"
    # validation pairs held out of --data by source sentence; dev is the test file (dropped from training)
    # default verbosity, descriptors captured: no TensorFlow/absl/LiteRT line in any verb (issue 27)
    trained = quiet_cli("translation", "train", "--data", train, "--test", dev, "--out", out, *TINY)
    assert f"model written to {out}" in trained.stdout and "{" not in trained.stdout
    exported = quiet_cli("translation", "export", "--model", out, "--check-sentences", "12")
    return out, dev, exported


def _loaded(out):
    directory = TranslationModelDir.open(out)
    return directory, load_seq2seq(directory), *directory.tokenizers()


def test_model_directory_layout(trained):
    out, *_ = trained
    for name in ("model.keras", "config.json", "train_report.json", "source.spm.model", "target.spm.model"):
        assert (out / name).is_file(), name
    assert any((out / "logs").rglob("events.out.tfevents.*"))
    assert not (out / "backup").exists() and not out.with_name("model.partial").exists()
    train_report = json.loads((out / "train_report.json").read_text())
    assert train_report["epochs_run"] == 6 and 1 <= train_report["best_epoch"] <= 6
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "translation" and config["model"]["units"] == 16
    assert 4 < config["model"]["tgt_vocab_size"] <= 40
    split = train_report["split"]
    assert split["test"] == str(out.parent / "dev.tsv") and split["val_sources_in_training"] == 0
    assert split["train_pairs"] + split["val_pairs"] + split["train_pairs_dropped_for_test"] == 80
    export = out / "export"
    report = json.loads((export / "export_report.json").read_text())
    # export checks and calibrates on the validation pairs (never on the test file)
    assert report["greedy_check"]["sentences"] == min(12, split["val_pairs"])
    assert set(report["parts"]) == {"float", "int8"}  # int8 is on by default
    assert FUSED_LSTM_OP in TFLiteModel(export / "encoder_float.tflite").op_names()
    assert report["parts"]["float"]["encoder"]["ops"].count(FUSED_LSTM_OP) == 1  # listed once, used twice (BiLSTM)
    assert not {"WHILE", "CUSTOM"} & set(report["parts"]["int8"]["decoder_step"]["ops"])
    assert set(report["sha256"]) >= {"encoder_float.tflite", "decoder_step_int8.tflite"}
    assert not out.joinpath("export.partial").exists()


def test_litert_greedy_matches_keras_token_for_token(trained):
    out, dev, _ = trained
    directory, seq2seq, src_tok, _ = _loaded(out)
    pairs = data.read_pairs(dev)
    src = data.source_ids(src_tok, [p[0] for p in pairs])
    keras_ids = greedy_decode(KerasBackend(seq2seq), src)
    lite = LiteRTBackend(*directory.export_parts("tflite"))
    assert greedy_decode(lite, src) == keras_ids
    assert len({tuple(x) for x in keras_ids}) > 1  # the check is not on a degenerate constant output



def test_litert_beam_search_is_the_keras_beam_search(trained):
    """The LiteRT loop over the exported decoder step ranks the same hypotheses with the same scores."""
    out, dev, _ = trained
    directory, seq2seq, src_tok, _ = _loaded(out)
    src = data.source_ids(src_tok, [p[0] for p in data.read_pairs(dev)])
    beam = BeamConfig(width=4, length_penalty=0.6)
    lite = beam_search(LiteRTBackend(*directory.export_parts("tflite")), src, beam)
    keras_ranked = beam_search(KerasBackend(seq2seq), src, beam)
    assert [[ids for _, ids in hyps] for hyps in lite] == [[ids for _, ids in hyps] for hyps in keras_ranked]
    assert np.allclose([s for hyps in lite for s, _ in hyps], [s for hyps in keras_ranked for s, _ in hyps], atol=1e-4)
    assert beam_decode(KerasBackend(seq2seq), src, beam) == [hyps[0][1] for hyps in keras_ranked]


def test_saved_model_translate_signature_matches_keras(trained):
    out, dev, _ = trained
    _, seq2seq, src_tok, tgt_tok = _loaded(out)
    sentences = [p[0] for p in data.read_pairs(dev)][:6]
    expected = tgt_tok.decode(greedy_decode(KerasBackend(seq2seq), data.source_ids(src_tok, sentences)))
    loaded = tf.saved_model.load(str(out / "export" / "saved_model"))
    assert {"translate", "serving_default"} <= set(loaded.signatures)
    got = loaded.signatures["translate"](sentences=tf.constant(sentences))["translations"].numpy()
    assert [g.decode("utf-8") for g in got] == expected


def test_evaluate_every_litert_runtime(trained, capsys, tmp_path):
    out, dev, _ = trained
    results = {}
    for runtime in ("keras", "tflite", "tflite-int8"):  # one --out: each runtime's file is its own
        results[runtime] = last_json(quiet_cli("translation", "evaluate", "--model", out, "--data", dev, "--runtime",
                                               runtime, "--out", tmp_path).stdout)
    for runtime, result in results.items():
        assert list(result)[: len(EVALUATE_KEYS)] == list(EVALUATE_KEYS) and {"bleu", "chrf"} <= set(result)
        assert result["examples"] == 12 and result["runtime"] == runtime and result["plot"] is None
        assert 0 <= result["bleu"] <= 100
        assert result["translations"] == str(tmp_path / f"translations_{runtime}.txt")
        lines = Path(result["translations"]).read_text(encoding="utf-8").splitlines()
        assert len(lines) == 12
        # greedy and the default beam 4 side by side; bleu/chrf are the beam's
        assert result["beam"] == 4 and (result["bleu"], result["chrf"]) == (result["beam_bleu"], result["beam_chrf"])
        assert 0 <= result["greedy_bleu"] <= 100
    for key in ("greedy_bleu", "beam_bleu", "beam_chrf"):
        assert results["tflite"][key] == results["keras"][key]
    # without --data: the model's test file (dev here); --beam 1 is greedy alone
    assert main(["translation", "evaluate", "--model", str(out), "--beam", "1", "--limit", "5"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["beam"] == 1 and result["examples"] == 5 and result["data"] == str(dev)
    assert result["bleu"] == result["greedy_bleu"] and "beam_bleu" not in result


def test_predict(trained):
    """In a fresh process (TensorFlow's start-up and LiteRT's first-interpreter lines come once per process):
    two translations on stdout, nothing else on either stream."""
    out, *_ = trained
    result = assert_quiet(run_cli("translation", "predict", "--model", out, "Red cat.", "Two dogs.", "--runtime",
                                  "tflite"))
    assert result.returncode == 0 and len(result.stdout.strip().splitlines()) == 2 and result.stderr == ""


def test_predict_reads_stdin_and_prints_nbest(trained, capsys, monkeypatch):
    out, *_ = trained
    assert main(["translation", "predict", "--model", str(out), "Red cat.", "Two dogs.", "--runtime", "tflite"]) == 0
    single = capsys.readouterr().out.splitlines()
    assert len(single) == 2
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"Two dogs.\r\n\nBlue cat.\n")))
    assert main(["translation", "predict", "--model", str(out), "Red cat.", "-", "--runtime", "tflite"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == single and len(lines) == 3  # the blank stdin line is skipped
    assert main(["translation", "predict", "--model", str(out), "Red cat.", "Two dogs.", "--nbest", "3"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [int(r[0]) for r in rows] == [1, 1, 1, 2, 2, 2]
    assert [r[2] for r in rows if r[0] == "1"][0] == single[0]  # the best of the n-best is the translation
    for number in ("1", "2"):
        scores = [float(r[1]) for r in rows if r[0] == number]
        assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)


@pytest.mark.slow  # the peer is a measurement tool (tools/); ~30 s
def test_transformer_peer_prints_evaluate_json(trained, capsys):
    out, dev, _ = trained
    peer = load_tool("translation_peer")
    assert peer.main(["--like", str(out), "--epochs", "1", "--steps-per-epoch", "2", "--d-model", "16", "--heads",
                      "2", "--ff-dim", "32", "--encoder-layers", "1", "--decoder-layers", "1", "--limit", "4"]) == 0
    result = last_json(capsys.readouterr().out)
    evaluate_keys = {"task", "model", "runtime", "data", "examples", "plot", "bleu", "chrf", "greedy_bleu",
                     "greedy_chrf", "beam_bleu", "beam_chrf", "beam", "length_penalty", "decode_seconds"}
    assert evaluate_keys <= set(result) and result["peer"] == "transformer"
    assert result["data"] == str(dev) and result["examples"] == 4 and result["params"] > 0


def test_damaged_export_is_refused_with_the_sha256_line(trained, capsys, tmp_path):
    out, dev, _ = trained
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(out, copy)
    step = copy / "export" / "decoder_step_int8.tflite"
    blob = bytearray(step.read_bytes())
    blob[len(blob) // 2: len(blob) // 2 + 200] = bytes(200)
    step.write_bytes(bytes(blob))
    code = main(["translation", "evaluate", "--model", str(copy), "--data", str(dev), "--runtime", "tflite-int8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "decoder_step_int8.tflite: file changed since export (sha256 mismatch)" in err[0] and "export" in err[0]
    (copy / "export" / "encoder_float.tflite").unlink()
    code = main(["translation", "evaluate", "--model", str(copy), "--data", str(dev), "--runtime", "tflite"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "encoder_float.tflite does not exist: run" in err[0]


def test_export_prints_a_verdict_per_runtime(trained):
    """Each runtime's sentences equal to Keras and BLEU vs Keras, with a verdict from the task's limits (issue 27)."""
    from tasks.translation.export import EXPORT_LIMITS

    out, _, exported = trained
    report = json.loads((out / "export" / "export_report.json").read_text())
    check = report["greedy_check"]
    rows = {row["file"]: row for row in report["verdicts"]}
    assert list(rows) == ["encoder_float.tflite + decoder_step_float.tflite",
                          "encoder_int8.tflite + decoder_step_int8.tflite",
                          "tflm/encoder_int8.tflite + tflm/decoder_step_int8.tflite"]
    for (name, row), key in zip(rows.items(), ("tflite", "tflite_int8", "tflm")):
        equal, drop = (c["value"] for c in row["checks"])
        assert equal == check[f"identical_{key}"] / check["sentences"] and drop == pytest.approx(check["bleu_keras"] - check[f"bleu_{key}"])
        held = equal >= EXPORT_LIMITS["sentences"].minimum and drop <= EXPORT_LIMITS["bleu"].maximum
        assert row["verdict"] == ("ok" if held else "WARNING")
        line = next(line for line in exported.stdout.splitlines() if line.strip().startswith(name))
        assert row["verdict"] in line and " KB " in line and f"{check[f'identical_{key}']} of {check['sentences']}" in line
        warned = [line for line in exported.stderr.splitlines() if "WARNING" in line and name in line]
        assert len(warned) == (0 if held else 1)
    assert report["verdict"] == ("ok" if all(r["verdict"] == "ok" for r in rows.values()) else "WARNING")


def test_tflm_export_report_and_firmware_sources(trained):
    out, *_ = trained
    report = json.loads((out / "export" / "export_report.json").read_text())
    tflm = report["tflm"]
    assert tflm["source_length"] == 40 and tflm["arena_bytes"] > 0
    for part in ("encoder", "decoder_step"):
        details = tflm["parts"][part]
        assert details["tflm"]["loads"] and details["tflm"]["arena_bytes"] > 0
        assert "AddUnidirectionalSequenceLSTM" in details["tflm"]["op_resolver"] or part == "decoder_step"
        assert "SELECT_V2" not in details["tflm"]["ops"] and "REVERSE_V2" not in details["tflm"]["ops"]
        for name in details["c_sources"]:
            assert (out / "export" / name).is_file() and name in report["sha256"]
        source = (out / "export" / "tflm" / part / "model_data.cc").read_text()
        assert f"alignas(16) const unsigned char g_{part}[]" in source
    # the decoder step is the same int8 arithmetic in both interpreters
    assert tflm["parts"]["decoder_step"]["tflm"]["max_lsb_diff"] <= 2
    # the LiteRT parts (dynamic source length) say why they are not for TFLM
    assert report["parts"]["int8"]["encoder"]["tflm"]["loads"] is False
    assert report["greedy_check"]["identical_tflm_vs_tflite_int8"] >= 0


def test_evaluate_and_predict_on_tflm(trained, capsys):
    out, dev, _ = trained
    result = last_json(quiet_cli("translation", "evaluate", "--model", out, "--data", dev, "--runtime", "tflm").stdout)
    assert set(EVALUATE_KEYS) <= set(result) and result["runtime"] == "tflm" and result["examples"] == 12
    printed = quiet_cli("translation", "predict", "--model", out, "--runtime", "tflm", "Red cat.", "Two dogs.").stdout
    assert len(printed.strip().splitlines()) == 2
