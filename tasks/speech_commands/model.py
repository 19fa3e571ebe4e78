"""Keyword-spotting model: raw 16 kHz audio -> log-mel (tf.signal, in the model) -> LSTM -> words.

One module a concern: ``frontend.py`` (audio -> log-mel, int8-aware), ``feature_layers.py``
(causal running-mean normalisation, training-only SpecAugment) and ``streaming.py`` (the
hop-by-hop model). This module puts the clip model together: the front end, a fixed per-band
standardisation (Keras ``Normalization``, mean/std from the training set, stored as weights), a
causal running-mean normalisation (streaming CMN, ``feature_norm="causal"``), training-only
SpecAugment, ``lstm_core.LSTM`` over the frames and a softmax over the words; it also loads a
trained model and runs it in any runtime (:class:`Classifier`).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

import lstm_core
from lstm_core.export import FLOAT_ATOL
from tasks.common.errors import UserError

from tasks.speech_commands.artifacts import SpeechModelDir
from tasks.speech_commands.config import ModelConfig
from tasks.speech_commands.feature_layers import CausalMeanNormalization, SpecAugment
from tasks.speech_commands.frontend import LogMelFrontend, calibrate_frontend, feature_statistics


# An int8-aware front end rounds three spectrum tensors to an int8 grid in the float model too.
# TensorFlow (FakeQuant) and LiteRT (QUANTIZE/DEQUANTIZE) may round a value that sits on a grid
# midpoint in opposite directions; one flipped step moves the probabilities by ~1e-4..1e-3 (seen:
# 1 clip in 40, max |dp| 3.5e-4, every other clip <= 2e-6). A conversion error is far larger.
FAKE_QUANT_ATOL = 2e-3


def float_export_atol(cfg: ModelConfig) -> float:
    """Max |LiteRT - Keras| a float export of this model may show (the exporter's check)."""
    return FAKE_QUANT_ATOL if cfg.int8_aware else FLOAT_ATOL


def build_calibrated_model(cfg: ModelConfig, num_classes: int, clips) -> keras.Model:
    """:func:`build_model` with the front-end gains and feature standardisation set from ``clips``."""
    frontend = LogMelFrontend(dataclasses.asdict(cfg))
    calibrate_frontend(frontend, clips)
    stats = feature_statistics(cfg, clips, frontend=frontend)
    model = build_model(cfg, num_classes, stats)
    layer = model.get_layer("log_mel")
    layer.set_gains_from(frontend)
    return model


def build_model(cfg: ModelConfig, num_classes: int, feature_stats=None) -> keras.Model:
    """``[B, clip_samples]`` float audio -> ``[B, num_classes]`` probabilities.

    ``feature_stats``: ``(mean, variance)`` per mel band for the standardisation layer
    (computed from training clips by :func:`feature_statistics`); default 0/1.
    """
    audio = keras.Input((cfg.clip_samples,), name="audio")
    x = LogMelFrontend(dataclasses.asdict(cfg), name="log_mel")(audio)
    if feature_stats is None:
        feature_stats = (np.zeros(cfg.num_features), np.ones(cfg.num_features))
    mean, var = feature_stats
    x = keras.layers.Normalization(axis=-1, mean=mean, variance=var, name="standardize")(x)
    if cfg.feature_norm == "causal":
        x = CausalMeanNormalization(cfg.norm_decay, name="causal_mean_norm")(x)
    elif cfg.feature_norm != "global":
        raise ValueError(f"feature_norm must be 'global' or 'causal', got {cfg.feature_norm!r}")
    if cfg.spec_augment:
        x = SpecAugment(cfg.freq_masks, cfg.freq_mask_width, cfg.time_masks, cfg.time_mask_width,
                        time_stretch=cfg.time_stretch, name="spec_augment")(x)
    x = lstm_core.LSTM(cfg.units, name="lstm")(x)
    if cfg.dropout:
        x = keras.layers.Dropout(cfg.dropout, name="dropout")(x)
    probs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(audio, probs, name="speech_commands")


CUSTOM_OBJECTS = {
    "LogMelFrontend": LogMelFrontend,
    "SpecAugment": SpecAugment,
    "CausalMeanNormalization": CausalMeanNormalization,
}


def load_trained_model(model_dir: SpeechModelDir) -> keras.Model:
    """``model.keras`` of ``model_dir`` (safe mode; a damaged file is one error line)."""
    return model_dir.keras_model(custom_objects=CUSTOM_OBJECTS)


def predict_proba(model: keras.Model, clips: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Keras probabilities for ``clips`` ``[N, samples]`` in fixed-size batches (the last batch
    is zero-padded, so the model is only ever traced at one batch size)."""
    clips = np.asarray(clips, np.float32)
    n = len(clips)
    out = []
    for i in range(0, n, batch_size):
        batch = clips[i : i + batch_size]
        real = len(batch)
        if real < batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - real,) + batch.shape[1:], np.float32)])
        out.append(np.asarray(model(batch, training=False))[:real])
    return np.concatenate(out) if out else np.zeros((0, model.outputs[0].shape[-1]), np.float32)


class Classifier:
    """``clips [N, samples] -> probabilities [N, words]`` in one runtime.

    ``keras``: ``model.keras``; ``tflite`` / ``tflite-int8``: the exported clip models under
    LiteRT; ``tflm``: the int8 export in TensorFlow Lite Micro. Exported files are checked
    against the SHA-256 that export recorded.

    Example:

    ```python
    probabilities = Classifier(SpeechModelDir.open(path), "tflite-int8")(clips)
    ```
    """

    def __init__(self, model_dir: SpeechModelDir, runtime: str = "keras"):
        self.runtime = runtime
        self.model = self.runner = None
        if runtime == "keras":
            self.model = load_trained_model(model_dir)
            return
        path = model_dir.export_file(runtime)
        if runtime == "tflm":
            from lstm_core.tflm import TFLMModel

            self.runner = TFLMModel(path)
        else:
            from lstm_core.export import TFLiteModel

            try:
                self.runner = TFLiteModel(path)
            except Exception as err:  # noqa: BLE001 - any interpreter failure is a bad file here
                first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                raise UserError(f"{path}: cannot load the TFLite model ({first[:200]})") from None

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        if self.model is not None:
            return predict_proba(self.model, clips)
        out = [np.asarray(self.runner(clip[None].astype(np.float32))[0])[0] for clip in clips]
        return np.stack(out) if out else np.zeros((0, 0), np.float32)
