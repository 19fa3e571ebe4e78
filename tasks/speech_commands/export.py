"""``lstm-suite speech_commands export``: SavedModel, float/int8 TFLite and a streaming TFLite.

Everything takes raw 16 kHz audio (float in [-1, 1]; the int8 model takes int8 audio with the
input quantisation stored in the .tflite, which LiteRT's runner applies for you):

* ``export/saved_model`` — ``serving_default(audio [B, 16000]) -> {probabilities, label, score}``
* ``export/model_float.tflite`` / ``export/model_int8.tflite`` — ``[1, 16000] -> [1, words]``,
  the LSTM as the builtin ``UNIDIRECTIONAL_SEQUENCE_LSTM``; int8 calibrated on training clips
  (clean and augmented);
* ``export/streaming_float.tflite`` (+ ``streaming_saved_model``) — one 20 ms hop per call with
  explicit state: ``(hop [1, 320], fir_state, frame_state, norm_mean, h, c) -> (probabilities,
  fir_state, frame_state, norm_mean, h, c)``; start from zeros, feed each output state back in;
* ``export/export_report.json`` — sizes and SHA-256 of every file, ops, LiteRT-vs-Keras
  differences, accuracy of every runtime on held-out clips and the streaming-vs-clip check.

The directory is built in ``export.partial/`` and swapped in only when everything passed.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from tasks.common.artifacts import EXPORT_FILES, write_export_report
from tasks.common.config import ExportConfig
from tasks.common.errors import UserError
from tasks.common.verdicts import Limit, record_verdicts, verdict_row
from lstm_core.kernels import portable_graphs
from lstm_core.export import TFLiteModel, export_saved_model, export_tflite_report

from tasks.speech_commands import data as speech_data
from tasks.speech_commands import model as speech_model
from tasks.speech_commands import streaming as speech_streaming
from tasks.speech_commands.artifacts import STREAMING_FILES, SpeechModelDir
from tasks.speech_commands.config import ExportChecks
from tasks.speech_commands.tflm_rewrite import rewrite_for_tflm

log = logging.getLogger(__name__)

INT8_BUDGET_BYTES = 64 * 1024
SUPPORTED_QUANTIZATIONS = ("float", "int8")
MCU_DIR = "mcu"  # model_data.cc/.h and model_ops.h of the int8 model, for TFLM firmware
# Export verdicts: a runtime whose words differ from Keras' on more than 5% of the held-out check
# clips is a WARNING (one line; "verdict" in export_report.json); the streaming model is compared
# with the float clip model it steps through.
EXPORT_LIMITS = {
    "labels": Limit("words equal to Keras", "%", minimum=0.95),
    "streaming": Limit("words equal to the float clip model", "%", minimum=0.95),
}


def _split_examples(directory: SpeechModelDir, data_dir: str | None):
    """(training examples, held-out examples) from ``data_dir`` or the model's recorded split."""
    if data_dir is not None:
        folder = speech_data.split_folder(data_dir, directory.data)
        return folder.splits["training"], folder.splits["testing"] or folder.splits["validation"]
    split = directory.split()
    if not split.get("training"):
        raise UserError(f"{directory.path}: no recorded training split (split.json); pass --data DIR")
    root = Path(split["data"])
    if not root.is_dir():
        raise UserError(f"{root}: the model's training data is not there any more; pass --data DIR")

    def examples(names):
        return [speech_data.Example(root / n, (root / n).parent.name, speech_data.speaker_of(n)) for n in names]

    return examples(split["training"]), examples(split["testing"] or split["validation"])


def calibration_and_check_clips(directory: SpeechModelDir, checks: ExportChecks, calibration: int, seed: int = 0):
    """(calibration clips, check clips, check labels): training clips calibrate, held-out ones check."""
    config = directory.data
    rng = np.random.default_rng(seed)
    words = directory.labels
    if checks.data is None and config.tfds_name:
        train_ds, _ = speech_data.load_tfds("train", config, name=config.tfds_name)
        test_ds, _ = speech_data.load_tfds("test", config, name=config.tfds_name)
        calib = np.stack([x for x, _ in train_ds.take(calibration).as_numpy_iterator()])
        pairs = list(test_ds.take(checks.check_examples).as_numpy_iterator())
        check_x, check_y = np.stack([x for x, _ in pairs]), np.array([y for _, y in pairs], np.int32)
        noise_source = None
    else:
        train, held = _split_examples(directory, checks.data)
        unknown = sorted({e.word for e in train + held} - set(words))
        if unknown:
            raise UserError(f"--data: words {unknown} are not in the model's labels {words}")
        pick = sorted(rng.permutation(len(train))[:calibration])
        calib = speech_data.load_clips([train[i].path for i in pick], config)
        pick = sorted(rng.permutation(len(held))[: checks.check_examples])
        check_x = speech_data.load_clips([held[i].path for i in pick], config)
        check_y = np.array([words.index(held[i].word) for i in pick], np.int32)
        noise_source = checks.data or directory.split().get("data")
    if len(calib) == 0 or len(check_x) == 0:
        raise UserError("--data: not enough clips to calibrate and check the exported models")
    # half of the calibration set augmented (noise, shifts, gains) like the training inputs
    tf.random.set_seed(seed)
    half = len(calib) // 2
    noise = speech_data.background_noise(noise_source, config.sample_rate)
    augmented = speech_data.augment_batch(tf.constant(calib[:half]), config=config, noise=noise).numpy()
    return np.concatenate([augmented, calib[half:]]).astype(np.float32), check_x, check_y


def _stream_probabilities(step_fn, clips, initial_state, hop):
    return np.stack([speech_streaming.stream_clip(step_fn, clip, list(initial_state), hop)[0][-1] for clip in clips])


def _runner_probabilities(runner, clips):
    return np.stack([np.asarray(runner(clip[None])[0])[0] for clip in clips])


def _check_quantizations(quantization) -> None:
    unsupported = sorted(set(quantization) - set(SUPPORTED_QUANTIZATIONS))
    if unsupported:
        raise UserError(f"--quantization: {', '.join(unsupported)} is not available for speech_commands "
                        f"(expected {', '.join(SUPPORTED_QUANTIZATIONS)})")


def _accuracy(probs, labels) -> float:
    return float(np.mean(probs.argmax(-1) == labels))


@portable_graphs()  # serving functions are traced before they are saved
def export(config: ExportConfig, checks: ExportChecks | None = None) -> dict:
    """Write ``MODEL/export/`` (see the module docstring); returns a summary of the report.

    Args:
        config: model directory, quantizations, calibration size, float tolerance.
        checks: where calibration/check clips come from and how many are compared.
    """
    checks = checks or ExportChecks()
    started = time.time()
    _check_quantizations(config.quantization)
    directory = SpeechModelDir.open(config.model)
    model = speech_model.load_trained_model(directory)  # before any data is read
    words = directory.labels
    calib, check_x, check_y = calibration_and_check_clips(directory, checks, config.calibration_examples)
    keras_probs = speech_model.predict_proba(model, check_x)  # Keras first, at its fixed batch size
    report = {"labels": words, "check_examples": int(len(check_x)),
              "check_accuracy": {"keras": _accuracy(keras_probs, check_y)}}
    atol = speech_model.float_export_atol(directory.model) if config.atol is None else config.atol
    summary = {}
    with directory.staged_export() as work:
        _export_serving_model(directory, work)
        probabilities = _export_clip_models(directory, work, config, calib, check_x, atol, report, summary)
        report["check_accuracy"].update({name: _accuracy(p, check_y) for name, p in probabilities.items()})
        report["label_agreement_with_keras"] = {name: _accuracy(p, keras_probs.argmax(-1))
                                                for name, p in probabilities.items()}
        if "tflite" in probabilities and "tflite-int8" in probabilities:
            report["int8_label_agreement_with_float"] = float(
                np.mean(probabilities["tflite-int8"].argmax(-1) == probabilities["tflite"].argmax(-1)))
        if "float" in config.quantization:
            report["streaming"] = export_streaming(model, work, check_x, keras_probs, probabilities["tflite"],
                                                   directory, checks, atol)
            summary["streaming_bytes"] = report["streaming"]["tflite"]["size_bytes"]
            summary["streaming_tflm_arena_bytes"] = report["streaming"]["tflite"]["tflm"].get("arena_bytes")
        (work / "labels.txt").write_text("\n".join(words) + "\n")
        report["seconds"] = round(time.time() - started, 1)
        record_verdicts(report, _verdicts(report, work))
        write_export_report(work, report)
    log.debug("export report: %s", directory.export_dir / "export_report.json")
    return {"export_dir": str(directory.export_dir), **summary, "check_accuracy": report["check_accuracy"],
            "streaming_label_agreement": report.get("streaming", {}).get("label_agreement_with_clip_model"),
            "verdict": report["verdict"], "verdicts": report["verdicts"]}


def _verdicts(report: dict, work: Path) -> list[dict]:
    """Per exported runtime: its words vs Keras' on the check clips (streaming: vs the float clip model)."""
    agreement = report["label_agreement_with_keras"]
    rows = []
    for runtime, name in (("tflite", EXPORT_FILES["tflite"]), ("tflite-int8", EXPORT_FILES["tflite-int8"]),
                          ("tflm", f"{EXPORT_FILES['tflm']} (TFLM)")):
        if runtime in agreement:
            size = (work / EXPORT_FILES[runtime]).stat().st_size
            rows.append(verdict_row(name, size, [EXPORT_LIMITS["labels"].check(agreement[runtime])]))
    streaming = report.get("streaming")
    if streaming:
        rows.append(verdict_row(STREAMING_FILES["float"], streaming["tflite"]["size_bytes"],
                                [EXPORT_LIMITS["streaming"].check(streaming["label_agreement_with_clip_model"])]))
    return rows


def _export_serving_model(directory: SpeechModelDir, work: Path) -> None:
    """``saved_model``: raw audio in, probabilities + label out.

    A fresh copy of the model per export: each copy's LSTM has its own fusable function, so no
    graph holds two traces of one ``api_implements`` function (grappler may swap in the wrong one).
    """
    serving_model = speech_model.load_trained_model(directory)
    label_names = tf.constant(directory.labels)
    spec = tf.TensorSpec([None, directory.model.clip_samples], tf.float32, name="audio")

    @tf.function(input_signature=[spec], autograph=False)
    def serve(audio):
        probs = serving_model(audio, training=False)
        best = tf.argmax(probs, axis=-1)
        return {"probabilities": probs, "label": tf.gather(label_names, best), "score": tf.reduce_max(probs, -1)}

    export_saved_model(serving_model, work / "saved_model", signatures={"serving_default": serve.get_concrete_function()})


def _export_clip_models(directory, work: Path, config: ExportConfig, calib, check_x, atol, report, summary) -> dict:
    """The float and/or int8 clip models (their sections go into ``report``, sizes into
    ``summary``); returns each exported runtime's probabilities on ``check_x``."""
    lite_model = speech_model.load_trained_model(directory)
    samples = [[clip[None]] for clip in check_x[:8]]
    probabilities = {}
    if "float" in config.quantization:
        float_report = export_tflite_report(lite_model, work / EXPORT_FILES["tflite"], sample_inputs=samples,
                                            atol=atol)
        report["float_check_atol"] = atol
        report["tflite_float"] = rewrite_for_tflm(work / EXPORT_FILES["tflite"], float_report.as_dict(), samples)
        probabilities["tflite"] = _runner_probabilities(TFLiteModel(work / EXPORT_FILES["tflite"]), check_x)
        summary["float_bytes"] = float_report.size_bytes
    if "int8" in config.quantization:
        probabilities.update(_export_int8(lite_model, work, calib, samples, check_x, report, summary))
    return probabilities


def _export_int8(lite_model, work: Path, calib, samples, check_x, report, summary) -> dict:
    """``model_int8.tflite`` calibrated on ``calib`` and, where TFLM runs it, the ``mcu/`` sources."""
    int8_report = export_tflite_report(
        lite_model, work / EXPORT_FILES["tflite-int8"], quantization="int8",
        representative_dataset=lambda: ([clip[None]] for clip in calib), sample_inputs=samples,
    )
    int8_path = work / EXPORT_FILES["tflite-int8"]
    report["tflite_int8"] = int8 = rewrite_for_tflm(int8_path, int8_report.as_dict(), samples)
    probabilities = {"tflite-int8": _runner_probabilities(TFLiteModel(int8_path), check_x)}
    summary["int8_bytes"] = int8["size_bytes"]
    if int8["size_bytes"] > INT8_BUDGET_BYTES:
        log.warning("int8 model is %d bytes (> %d budget)", int8["size_bytes"], INT8_BUDGET_BYTES)
    if int8["tflm"]["loads"]:
        from lstm_core.tflm import TFLMModel, write_c_array

        probabilities["tflm"] = _runner_probabilities(TFLMModel(int8_path), check_x)
        written = write_c_array(int8_path, work / MCU_DIR, name="g_speech_commands_model",
                                arena_bytes=int8["tflm"]["arena_recommended_bytes"])
        report["mcu"] = {"files": [f"{MCU_DIR}/{name}" for name in written if name.endswith((".cc", ".h"))],
                         "op_resolver": written["op_resolver"]}
        summary["int8_tflm_arena_bytes"] = int8["tflm"]["arena_bytes"]
    return probabilities


def export_streaming(model, work: Path, check_x, keras_probs, float_probs, directory, checks, atol) -> dict:
    """``streaming_float.tflite`` (+ SavedModel), checked hop by hop against the clip model."""
    stream = speech_streaming.build_streaming_model(model)
    initial = speech_streaming.initial_streaming_state(model)
    hop = directory.model.hop_samples
    keras_step = lambda *xs: stream(list(xs), training=False)  # noqa: E731
    count = min(checks.stream_check_examples, len(check_x))
    stream_keras = _stream_probabilities(keras_step, check_x[:count], initial, hop)
    # the exporter's LiteRT check runs on real states: the start of a clip and mid-clip
    middle = directory.model.num_frames // 2
    _, mid_state = speech_streaming.stream_clip(keras_step, check_x[0][: hop * middle], list(initial), hop)
    samples = [[check_x[0][None, hop * middle : hop * (middle + 1)], *mid_state], [check_x[0][None, :hop], *initial]]
    path = work / STREAMING_FILES["float"]
    stream_report = export_tflite_report(stream, path, sample_inputs=samples, atol=atol, require_fused=False)
    stream_report = rewrite_for_tflm(path, stream_report.as_dict(), samples)
    export_saved_model(stream, work / "streaming_saved_model")
    stream_tflite = _stream_probabilities(TFLiteModel(path), check_x[:count], initial, hop)
    tflm_check = {}
    if stream_report["tflm"]["loads"]:
        from lstm_core.tflm import TFLMModel

        stream_tflm = _stream_probabilities(TFLMModel(path), check_x[:count], initial, hop)
        tflm_check = {
            "tflm_label_agreement_with_clip_model": float(
                np.mean(stream_tflm.argmax(-1) == float_probs[:count].argmax(-1))),
            "tflm_max_abs_diff_vs_litert_streaming": float(np.max(np.abs(stream_tflm - stream_tflite))),
        }
    return {
        "tflite": stream_report,
        **tflm_check,
        "hop_samples": hop,
        "state": {k: [1, n] for k, n in speech_streaming.streaming_state_shapes(model).items()},
        "clips": int(count),
        "label_agreement_with_clip_model": float(np.mean(stream_tflite.argmax(-1) == float_probs[:count].argmax(-1))),
        "max_abs_diff_vs_clip_model": float(np.max(np.abs(stream_tflite - float_probs[:count]))),
        "keras_streaming_max_abs_diff_vs_keras_clip": float(np.max(np.abs(stream_keras - keras_probs[:count]))),
    }
