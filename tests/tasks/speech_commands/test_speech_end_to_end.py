"""Tiny end-to-end run on generated tone/chirp WAVs: train -> export -> LiteRT evaluate/predict."""

import json

import numpy as np
import pytest

from lstm_core.cli import main
from lstm_core.export import TFLiteModel
from tasks.speech_commands import data as D
from tasks.speech_commands import model as M
from tasks.speech_commands.artifacts import open_model_dir


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("sc") / "model"
    argv = ["-q", "speech_commands", "train", "--data", str(tiny_data), "--out", str(out),
            "--test-speaker", "dave", "--epochs", "2", "--lstm-units", "8", "--num-mel-bins", "16",
            "--batch-size", "8", "--synthetic-voices", "2"]
    assert main(argv) == 0
    return out


def test_train_writes_the_model_directory(trained):
    for name in ("model.keras", "config.json", "labels.txt", "metrics.json", "confusion_testing.png"):
        assert (trained / name).exists(), name
    assert not trained.with_name("model.partial").exists()
    mdir = open_model_dir(trained)
    assert mdir.labels == ["down", "flat", "up"] and mdir.data.test_speakers == ["dave"]
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["synthetic_training_examples"] == 2 * 3  # 2 espeak-ng voices x 3 words
    # TensorBoard: scalars and the confusion-matrix image
    events = list((trained / "logs").rglob("events.out.tfevents*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for sub in ("validation", "evaluation"):
        acc = EventAccumulator(str(trained / "logs" / sub), size_guidance={"tensors": 0})
        acc.Reload()
        tags |= set(acc.Tags().get("tensors", []))
    assert any(t.startswith("confusion_matrix/") for t in tags), tags


def test_export_then_litert_agrees_with_keras(trained, tiny_data, capsys):
    assert main(["-q", "speech_commands", "export", "--model", str(trained), "--check-clips", "6",
                 "--stream-check-clips", "2", "--calibration-clips", "16"]) == 0
    summary = _last_json(capsys.readouterr().out)
    export = trained / "export"
    for name in ("model_float.tflite", "model_int8.tflite", "streaming_float.tflite", "export_report.json", "saved_model"):
        assert (export / name).exists(), name
    report = json.loads((export / "export_report.json").read_text())
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in report["tflite_float"]["ops"]
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in report["tflite_int8"]["ops"]
    assert not {"WHILE", "RFFT2D", "FlexRFFT"} & set(report["tflite_int8"]["ops"])
    assert summary["int8_bytes"] <= 64 * 1024
    assert report["streaming"]["label_agreement_with_clip_model"] == 1.0

    # raw 16 kHz audio in: LiteRT float == Keras; int8 takes the same raw audio
    mdir = open_model_dir(trained)
    model = mdir.keras_model()
    clips = D.load_clips(sorted((tiny_data / "up").glob("*.wav"))[:3], mdir.data)
    keras_probs = M.predict_proba(model, clips)
    runner = TFLiteModel(export / "model_float.tflite")
    lite = np.stack([runner(c[None])[0][0] for c in clips])
    # (the front end's int8 grid may round a midpoint value differently in LiteRT: see model.py)
    assert report["float_check_atol"] == M.float_export_atol(mdir.model) == M.FAKE_QUANT_ATOL
    np.testing.assert_allclose(lite, keras_probs, atol=M.FAKE_QUANT_ATOL)
    assert (lite.argmax(-1) == keras_probs.argmax(-1)).all()
    int8 = TFLiteModel(export / "model_int8.tflite")
    assert int8.input_details[int8.input_names[0]]["dtype"] == np.int8
    q = np.stack([int8(c[None])[0][0] for c in clips])
    assert q.shape == keras_probs.shape and np.allclose(q.sum(-1), 1.0, atol=0.05)

    # the streaming TFLite model, hop by hop, ends on the clip model's probabilities
    stream = TFLiteModel(export / "streaming_float.tflite")
    probs, _ = M.stream_clip(stream, clips[0], M.initial_streaming_state(model), mdir.model.hop_samples)
    np.testing.assert_allclose(probs[-1], keras_probs[0], atol=M.FAKE_QUANT_ATOL)
    assert probs[-1].argmax() == keras_probs[0].argmax()

    # SavedModel: raw audio in, probabilities + label out
    import tensorflow as tf

    sm = tf.saved_model.load(str(export / "saved_model"))
    out = sm.signatures["serving_default"](audio=tf.constant(clips))
    np.testing.assert_allclose(out["probabilities"].numpy(), keras_probs, atol=1e-5)
    assert [l.decode() for l in out["label"].numpy()] == [mdir.labels[i] for i in keras_probs.argmax(-1)]


@pytest.mark.parametrize("runtime", ["keras", "tflite", "tflite-int8"])
def test_evaluate_every_wav_with_each_runtime(trained, tiny_data, tmp_path, capsys, runtime):
    if runtime != "keras" and not (trained / "export" / "model_int8.tflite").exists():
        pytest.skip("export test did not run")
    out = tmp_path / runtime
    assert main(["-q", "speech_commands", "evaluate", "--model", str(trained), "--data", str(tiny_data),
                 "--runtime", runtime, "--out", str(out)]) == 0
    res = _last_json(capsys.readouterr().out)
    assert res["examples"] == 36 and res["runtime"] == runtime
    assert 0.0 <= res["accuracy"] <= 1.0
    assert np.sum(res["confusion_matrix"]) == 36
    assert (out / f"confusion_{runtime}.png").read_bytes()[:4] == b"\x89PNG"
    assert set(res["per_speaker_accuracy"]) == {"alice", "bob", "carol", "dave"}


def test_predict_prints_top3(trained, tiny_data, capsys):
    files = [str(tiny_data / "up" / "alice_nohash_0.wav"), str(tiny_data / "down" / "bob_nohash_1.wav")]
    assert main(["-q", "speech_commands", "predict", "--model", str(trained), *files]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for path, line in zip(files, lines):
        name, rest = line.split("\t")
        assert name == path
        parts = rest.split()
        assert len(parts) == 6 and set(parts[::2]) <= {"up", "down", "flat"}
        probs = [float(p) for p in parts[1::2]]
        assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 0.01


def test_bad_inputs_at_inference(trained, tmp_path, capsys):
    corrupt = tmp_path / "broken.wav"
    corrupt.write_bytes(b"RIFF....WAVEfmt garbage")
    assert main(["speech_commands", "predict", "--model", str(trained), str(corrupt)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.wav" in err[0]
    unknown = tmp_path / "words"
    (unknown / "sideways").mkdir(parents=True)
    (unknown / "sideways" / "a_nohash_0.wav").write_bytes(corrupt.read_bytes())
    assert main(["speech_commands", "evaluate", "--model", str(trained), "--data", str(unknown)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sideways" in err[0]
    no_export = tmp_path / "m2"
    import shutil

    shutil.copytree(trained, no_export, ignore=shutil.ignore_patterns("export"))
    assert main(["speech_commands", "evaluate", "--model", str(no_export), "--data", str(unknown.parent),
                 "--runtime", "tflite"]) == 2
    err = capsys.readouterr().err.strip()
    assert "export --model" in err
