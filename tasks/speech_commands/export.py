"""``lstm-suite speech_commands export``: SavedModel, float/int8 TFLite and a streaming TFLite.

Everything takes raw 16 kHz audio (float in [-1, 1]; the int8 model takes int8 audio with the
input quantisation stored in the .tflite, which LiteRT's runner applies for you):

* ``export/saved_model`` — ``serving_default(audio [B, 16000]) -> {probabilities, label, score}``
* ``export/model_float.tflite`` / ``export/model_int8.tflite`` — ``[1, 16000] -> [1, words]``,
  the LSTM as the builtin ``UNIDIRECTIONAL_SEQUENCE_LSTM``; int8 calibrated on training clips
  (clean and augmented);
* ``export/streaming_float.tflite`` (+ ``streaming_saved_model``) — one 20 ms hop per call with
  explicit state: ``(hop [1, 320], fir_state, frame_state, h, c) -> (probabilities, fir_state,
  frame_state, h, c)``; start from zeros, feed each output state back in;
* ``export/export_report.json`` — sizes, ops, LiteRT-vs-Keras differences, accuracy of every
  runtime on held-out clips and the streaming-vs-clip check.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import tensorflow as tf

from lstm_core.errors import UserError
from lstm_core.export import TFLiteModel, export_saved_model, export_tflite_report
from lstm_core.io import write_bytes_atomic, write_json_atomic

from tasks.speech_commands import data as D
from tasks.speech_commands import model as M
from tasks.speech_commands.artifacts import EXPORT_FILES, open_model_dir

log = logging.getLogger(__name__)

INT8_BUDGET_BYTES = 64 * 1024


def _clips(mdir, data_dir, calibration: int, check: int, seed: int = 0):
    """(calibration clips, check clips, check labels) from the training data source."""
    dcfg = mdir.data
    rng = np.random.default_rng(seed)
    if data_dir is None and "data" in mdir.source:
        data_dir = mdir.source["data"]
    if data_dir is not None:
        folder = D.split_folder(data_dir, dcfg)
        unknown = sorted(set(folder.labels) - set(mdir.labels))
        if unknown:
            raise UserError(f"{data_dir}: words {unknown} are not in the model's labels {mdir.labels}")
        train = folder.splits["training"]
        pick = sorted(rng.permutation(len(train))[:calibration])
        calib = D.load_clips([train[i].path for i in pick], dcfg)
        held = folder.splits["testing"] or folder.splits["validation"]
        pick = sorted(rng.permutation(len(held))[:check])
        check_x = D.load_clips([held[i].path for i in pick], dcfg)
        check_y = np.array([mdir.labels.index(held[i].word) for i in pick], np.int32)
        noise = D.background_noise(data_dir, dcfg.sample_rate)
    elif "tfds" in mdir.source:
        train_ds, _ = D.load_tfds("train", dcfg, data_dir=mdir.source.get("tfds_data_dir"))
        test_ds, _ = D.load_tfds("test", dcfg, data_dir=mdir.source.get("tfds_data_dir"))
        calib = np.stack([x for x, _ in train_ds.take(calibration).as_numpy_iterator()])
        pairs = list(test_ds.take(check).as_numpy_iterator())
        check_x = np.stack([x for x, _ in pairs])
        check_y = np.array([y for _, y in pairs], np.int32)
        noise = D.background_noise(None, dcfg.sample_rate)
    else:
        raise UserError("export needs --data DIR (training clips calibrate the int8 model)")
    if len(calib) == 0 or len(check_x) == 0:
        raise UserError(f"{data_dir}: not enough clips to calibrate/check the exported models")
    # half of the calibration set augmented (noise, shifts, gains) like the training inputs
    tf.random.set_seed(seed)
    half = len(calib) // 2
    augmented = D.augment_batch(tf.constant(calib[:half]), config=dcfg, noise=noise).numpy()
    calib = np.concatenate([augmented, calib[half:]]).astype(np.float32)
    return calib, check_x, check_y


def _stream_probs(step_fn, clips, state0, hop):
    return np.stack([M.stream_clip(step_fn, clip, list(state0), hop)[0][-1] for clip in clips])


def export(args) -> dict:
    started = time.time()
    mdir = open_model_dir(args.model)
    model = mdir.keras_model()
    out = mdir.export_dir
    calib, check_x, check_y = _clips(mdir, args.data, args.calibration_clips, args.check_clips)
    # Keras predictions first (fixed batch size), before the exporters trace at batch 1
    keras_probs = M.predict_proba(model, check_x)
    report = {"labels": mdir.labels, "check_clips": int(len(check_x))}

    # SavedModel: raw audio in, probabilities + label out
    labels = tf.constant(mdir.labels)
    spec = tf.TensorSpec([None, mdir.model.clip_samples], tf.float32, name="audio")

    # A fresh copy of the model per export: each copy's LSTM has its own fusable function, so no
    # graph holds two traces (batch 64 / None / 1) of one ``api_implements`` function (lstm_core
    # issue: grappler may swap in the wrong trace).
    serving_model = mdir.keras_model()

    @tf.function(input_signature=[spec], autograph=False)
    def serve(audio):
        probs = serving_model(audio, training=False)
        best = tf.argmax(probs, axis=-1)
        return {"probabilities": probs, "label": tf.gather(labels, best), "score": tf.reduce_max(probs, -1)}

    export_saved_model(serving_model, out / "saved_model", signatures={"serving_default": serve.get_concrete_function()})
    log.info("SavedModel written to %s", out / "saved_model")

    atol = M.float_export_atol(mdir.model) if args.atol is None else args.atol
    samples = [[c[None]] for c in check_x[:8]]
    rep = lambda: ([c[None]] for c in calib)
    lite_model = mdir.keras_model()
    float_report = export_tflite_report(lite_model, out / EXPORT_FILES["tflite"], sample_inputs=samples, atol=atol)
    int8_report = export_tflite_report(
        lite_model, out / EXPORT_FILES["tflite-int8"], quantization="int8", representative_dataset=rep,
        sample_inputs=samples,
    )
    report["float_check_atol"] = atol
    report["tflite_float"] = float_report.as_dict()
    report["tflite_int8"] = int8_report.as_dict()
    if int8_report.size_bytes > INT8_BUDGET_BYTES:
        log.warning("int8 model is %d bytes (> %d budget)", int8_report.size_bytes, INT8_BUDGET_BYTES)

    # accuracy of every runtime on the held-out check clips
    float_runner = TFLiteModel(out / EXPORT_FILES["tflite"])
    int8_runner = TFLiteModel(out / EXPORT_FILES["tflite-int8"])
    float_probs = np.stack([float_runner(c[None])[0][0] for c in check_x])
    int8_probs = np.stack([int8_runner(c[None])[0][0] for c in check_x])
    acc = lambda p: float(np.mean(p.argmax(-1) == check_y))
    report["check_accuracy"] = {"keras": acc(keras_probs), "tflite": acc(float_probs), "tflite-int8": acc(int8_probs)}
    report["int8_label_agreement_with_float"] = float(np.mean(int8_probs.argmax(-1) == float_probs.argmax(-1)))

    # streaming model: one hop per call, explicit state
    stream = M.build_streaming_model(model)
    state0 = M.initial_streaming_state(model)
    hop = mdir.model.hop_samples
    keras_step = lambda *xs: stream(list(xs), training=False)
    n_stream = min(args.stream_check_clips, len(check_x))
    stream_keras = _stream_probs(keras_step, check_x[:n_stream], state0, hop)
    # sample inputs for the exporter's LiteRT check: real mid-clip states
    _, mid_state = M.stream_clip(keras_step, check_x[0][: hop * 25], list(state0), hop)
    stream_samples = [[check_x[0][None, hop * 25 : hop * 26], *mid_state], [check_x[0][None, :hop], *state0]]
    stream_report = export_tflite_report(
        stream, out / EXPORT_FILES["streaming"], sample_inputs=stream_samples, atol=atol, require_fused=False
    )
    export_saved_model(stream, out / "streaming_saved_model")
    stream_runner = TFLiteModel(out / EXPORT_FILES["streaming"])
    stream_tflite = _stream_probs(stream_runner, check_x[:n_stream], state0, hop)
    report["streaming_tflite"] = stream_report.as_dict()
    report["streaming"] = {
        "hop_samples": hop,
        "state": {k: [1, n] for k, n in M.streaming_state_shapes(model).items()},
        "clips": int(n_stream),
        "label_agreement_with_clip_model": float(np.mean(stream_tflite.argmax(-1) == float_probs[:n_stream].argmax(-1))),
        "max_abs_diff_vs_clip_model": float(np.max(np.abs(stream_tflite - float_probs[:n_stream]))),
        "keras_streaming_max_abs_diff_vs_keras_clip": float(np.max(np.abs(stream_keras - keras_probs[:n_stream]))),
    }
    write_bytes_atomic(out / "labels.txt", ("\n".join(mdir.labels) + "\n").encode())
    report["seconds"] = round(time.time() - started, 1)
    write_json_atomic(out / "export_report.json", report)
    summary = {
        "export_dir": str(out),
        "float_bytes": float_report.size_bytes,
        "int8_bytes": int8_report.size_bytes,
        "streaming_bytes": stream_report.size_bytes,
        "check_accuracy": report["check_accuracy"],
        "streaming_label_agreement": report["streaming"]["label_agreement_with_clip_model"],
    }
    log.info("export report: %s", out / "export_report.json")
    return summary
