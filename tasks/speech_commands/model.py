"""Keyword-spotting model: raw 16 kHz audio -> log-mel (tf.signal, in the model) -> LSTM -> words.

The front end is written so that every op converts to a TFLite *builtin* that also has an int8
kernel (no RFFT/COMPLEX_ABS, which have no int8 kernels):

1. optional decimation to ``feature_rate`` (8 kHz by default): a causal low-pass FIR
   (``scipy.signal.firwin``) as a strided convolution;
2. causal framing with ``tf.signal.frame`` after ``frame - hop`` zeros of left padding, so frame
   ``i`` ends exactly where hop ``i`` ends (a streaming model reproduces it hop by hop);
3. a windowed real DFT as one matmul with a precomputed ``[frame, 2K]`` matrix
   (``tf.signal.hann_window`` folded in; only the K bins up to the mel upper edge);
4. power ``re^2 + im^2``, mel filter bank matmul (``tf.signal.linear_to_mel_weight_matrix``),
   ``log(mel + log_offset)``; the offset is a noise floor that also keeps the int8 model's
   quantisation steps of the power spectrum below the feature's resolution.

Then a fixed per-band standardisation (mean/std from the training set, stored as weights), a
causal running-mean normalisation (streaming CMN, ``feature_norm="causal"``), training-only
SpecAugment, ``lstm_core.LSTM`` over the frames and a softmax over the words.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

import lstm_core
from tasks.common.errors import UserError
from lstm_core.export import FLOAT_ATOL

from tasks.speech_commands.artifacts import SpeechModelDir
from tasks.speech_commands.config import ModelConfig


# An int8-aware front end rounds three spectrum tensors to an int8 grid in the float model too.
# TensorFlow (FakeQuant) and LiteRT (QUANTIZE/DEQUANTIZE) may round a value that sits on a grid
# midpoint in opposite directions; one flipped step moves the probabilities by ~1e-4..1e-3 (seen:
# 1 clip in 40, max |dp| 3.5e-4, every other clip <= 2e-6). A conversion error is far larger.
FAKE_QUANT_ATOL = 2e-3


def float_export_atol(cfg: ModelConfig) -> float:
    """Max |LiteRT - Keras| a float export of this model may show (the exporter's check)."""
    return FAKE_QUANT_ATOL if cfg.int8_aware else FLOAT_ATOL


def frontend_constants(cfg: ModelConfig) -> dict:
    """Numpy constants of the front end (FIR, DFT and mel matrices)."""
    from scipy.signal import firwin

    fr = cfg.feature_rate
    frame = int(round(fr * cfg.frame_ms / 1000))
    hop = int(round(fr * cfg.hop_ms / 1000))
    if cfg.hop_samples % cfg.decimation or cfg.clip_samples % cfg.hop_samples:
        raise ValueError("hop must be a whole number of decimated samples and divide the clip")
    if frame < hop:
        raise ValueError("frame_ms must be >= hop_ms")
    upper = min(cfg.upper_edge_hertz, fr / 2)
    num_bins = int(np.floor(upper / cfg.dft_bin_hz)) + 2  # bins 0..upper (+1 above the edge)
    freqs = np.arange(num_bins) * cfg.dft_bin_hz
    window = tf.signal.hann_window(frame, periodic=True).numpy().astype(np.float64)
    t = np.arange(frame)[:, None] / fr
    dft = np.concatenate(
        [window[:, None] * np.cos(2 * np.pi * freqs * t), -window[:, None] * np.sin(2 * np.pi * freqs * t)],
        axis=1,
    ).astype(np.float32)
    # linear_to_mel_weight_matrix assumes bins spaced (sample_rate/2)/(num_bins-1): give it the
    # rate that makes that spacing equal to dft_bin_hz.
    mel = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=cfg.num_mel_bins,
        num_spectrogram_bins=num_bins,
        sample_rate=2 * cfg.dft_bin_hz * (num_bins - 1),
        lower_edge_hertz=cfg.lower_edge_hertz,
        upper_edge_hertz=upper,
    ).numpy().astype(np.float32)
    empty = np.where(mel.sum(axis=0) <= 0)[0]
    if len(empty):
        raise ValueError(f"mel bands {empty.tolist()} get no DFT bin: lower dft_bin_hz or num_mel_bins")
    fir = None
    if cfg.decimation > 1:
        fir = firwin(cfg.fir_taps, 0.5 * fr * 0.95, fs=cfg.sample_rate).astype(np.float32)
    return {"frame": frame, "hop": hop, "num_bins": num_bins, "dft": dft, "mel": mel, "fir": fir}


@keras.saving.register_keras_serializable(package="speech_commands")
class LogMelFrontend(keras.layers.Layer):
    """Raw audio ``[B, N]`` at ``sample_rate`` -> log-mel ``[B, N / hop, num_mel_bins]``.

    All constants are rebuilt from the config (nothing to save). ``decimate``/``frames``/
    ``features`` are exposed separately so the streaming model runs exactly the same math.
    """

    def __init__(self, config: dict, **kwargs):
        super().__init__(**kwargs)
        self.config = dict(config)
        known = {field.name for field in dataclasses.fields(ModelConfig)}
        self.cfg = ModelConfig(**{k: v for k, v in self.config.items() if k in known})
        c = frontend_constants(self.cfg)
        self.frame, self.hop, self.num_bins = c["frame"], c["hop"], c["num_bins"]
        self.dft = tf.constant(c["dft"])
        self.mel = tf.constant(c["mel"])
        self.fir = None if c["fir"] is None else tf.constant(c["fir"][:, None, None])
        self.dct = None
        if self.cfg.num_mfcc:
            # MFCCs: the DCT-II of tf.signal.mfccs_from_log_mel_spectrograms as a matrix
            eye = tf.eye(self.cfg.num_mel_bins)
            self.dct = tf.signal.mfccs_from_log_mel_spectrograms(eye)[:, : self.cfg.num_mfcc]

    @property
    def fir_context(self) -> int:
        """Raw samples of history the decimation filter needs (streaming state size)."""
        return 0 if self.fir is None else self.cfg.fir_taps - 1

    @property
    def frame_context(self) -> int:
        """Feature-rate samples of history one frame needs beyond its hop (streaming state)."""
        return self.frame - self.hop

    def decimate(self, audio, history=None):
        """Causal FIR + downsample. ``history``: the previous ``fir_context`` raw samples."""
        if self.fir is None:
            return audio
        if history is None:
            audio = tf.pad(audio, [[0, 0], [self.fir_context, 0]])
        else:
            audio = tf.concat([history, audio], axis=1)
        y = tf.nn.conv1d(audio[:, :, None], self.fir, stride=self.cfg.decimation, padding="VALID")
        return y[:, :, 0]

    def build(self, input_shape=None):
        # Per-bin / per-band gains folded into the DFT and mel matrices (see set_gains). With
        # g > 0 they cancel exactly in float; in int8 they equalise the typical level of the
        # intermediate spectrum tensors so quiet bands keep their resolution.
        self.bin_gain = self.add_weight(shape=(self.num_bins,), initializer="ones", trainable=False, name="bin_gain")
        self.mel_gain = self.add_weight(
            shape=(self.cfg.num_mel_bins,), initializer="ones", trainable=False, name="mel_gain"
        )
        # ranges of the int8 intermediates (DFT output, spectrum, mel), for int8-aware training
        self.ranges = self.add_weight(shape=(3,), initializer="zeros", trainable=False, name="int8_ranges")

    def set_gains(self, bin_level, mel_level):
        """Whiten the int8 intermediates: ``bin_level``/``mel_level`` = typical spectrum/mel values."""
        def gain(level):
            level = np.maximum(np.asarray(level, np.float64), 1e-3 * np.max(level) + 1e-12)
            return (np.mean(level) / level).astype(np.float32)

        self.bin_gain.assign(gain(bin_level))
        self.mel_gain.assign(gain(mel_level))

    def set_gains_from(self, other: "LogMelFrontend") -> None:
        self.bin_gain.assign(other.bin_gain)
        self.mel_gain.assign(other.mel_gain)
        self.ranges.assign(other.ranges)

    def _fake_int8(self, x, index, signed):
        """Round ``x`` to an int8 grid over its calibrated range (FakeQuant, straight-through
        gradient). In float (Keras, SavedModel, float TFLite: QUANTIZE+DEQUANTIZE) this is the
        resolution the int8 model has, and the int8 converter takes these ranges as-is, so the
        float and int8 models compute the same front end. Inactive until calibrated."""
        top = self.ranges[index]
        lo = -top if signed else tf.zeros_like(top)
        q = tf.quantization.fake_quant_with_min_max_vars(x, lo, top, num_bits=8)
        return tf.cond(top > 0, lambda: q, lambda: x)

    def intermediates(self, frames):
        """(DFT output, spectrum, mel) with the gains applied: what int8 quantises."""
        dft, mel_matrix, _ = self._matrices()
        z = tf.matmul(frames, dft)
        re, im = z[..., : self.num_bins], z[..., self.num_bins :]
        spec = tf.abs(re) + tf.abs(im) if self.cfg.spectrum == "magnitude" else re * re + im * im
        return z, spec, tf.matmul(spec, mel_matrix)

    def _matrices(self):
        g = tf.convert_to_tensor(self.bin_gain)
        h = tf.convert_to_tensor(self.mel_gain)
        dft = self.dft * tf.concat([g, g], axis=0)[None, :]
        g_spec = g if self.cfg.spectrum == "magnitude" else g * g
        mel = self.mel / g_spec[:, None] * h[None, :]
        return dft, mel, self.cfg.log_offset * h

    def spectrum_levels(self, frames):
        """Mean spectrum per bin and mean mel value per band (before gains) of ``frames``."""
        z = tf.matmul(frames, self.dft)
        re, im = z[..., : self.num_bins], z[..., self.num_bins :]
        spec = tf.abs(re) + tf.abs(im) if self.cfg.spectrum == "magnitude" else re * re + im * im
        mel = tf.matmul(spec, self.mel)
        axes = list(range(len(spec.shape) - 1))
        return tf.reduce_mean(spec, axes), tf.reduce_mean(mel, axes)

    def frames(self, audio):
        x = self.decimate(audio)
        x = tf.pad(x, [[0, 0], [self.frame_context, 0]])
        return tf.signal.frame(x, self.frame, self.hop, pad_end=False)

    def features(self, frames, training=False):
        """Frames ``[..., frame]`` -> log-mel ``[..., num_mel_bins]`` (or MFCCs)."""
        dft, mel_matrix, offset = self._matrices()
        fake = self.cfg.int8_aware
        z = tf.matmul(frames, dft)
        if fake:
            z = self._fake_int8(z, 0, signed=True)
        re, im = z[..., : self.num_bins], z[..., self.num_bins :]
        if self.cfg.spectrum == "magnitude":
            # |re| + |im|: the L1 magnitude, within a factor sqrt(2) of |X| and free of the
            # squaring that would halve an int8 tensor's dynamic range
            spectrum = tf.abs(re) + tf.abs(im)
        else:
            spectrum = re * re + im * im
        if fake:
            # (the no-op relu keeps the TFLite converter from fusing QUANTIZE into the mel
            # FULLY_CONNECTED's input as legacy uint8, which LiteRT then rejects)
            spectrum = tf.nn.relu(self._fake_int8(spectrum, 1, signed=False))
        mel = tf.matmul(spectrum, mel_matrix)
        if fake:
            mel = self._fake_int8(mel, 2, signed=False)
        features = tf.math.log(mel + offset)
        if self.dct is not None:
            features = tf.matmul(features, self.dct)
        return features

    def call(self, audio, training=False):
        return self.features(self.frames(audio), training=training)

    def compute_output_shape(self, input_shape):
        n = input_shape[1]
        steps = None if n is None else n // self.cfg.hop_samples
        return (input_shape[0], steps, self.cfg.num_features)

    def get_config(self):
        return {**super().get_config(), "config": self.config}


@keras.saving.register_keras_serializable(package="speech_commands")
class CausalMeanNormalization(keras.layers.Layer):
    """Subtract each feature's exponential running mean over the frames so far.

    ``m_t = d·m_{t-1} + (1-d)·x_t`` from ``m_{-1} = 0`` (the standardised features' training
    mean); output ``x_t - m_t``. Removing the utterance's own mean (CMN) takes away much of the
    speaker's and microphone's colouring of the spectrum; the causal form keeps streaming exact
    (its state is ``m``). The clip model applies it as one matmul with a fixed ``[T, T]`` matrix,
    so TFLite gets a FULLY_CONNECTED/BATCH_MATMUL (int8 kernels) instead of a loop.
    """

    def __init__(self, decay=0.8, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = float(decay)

    def running_mean_matrix(self, steps: int) -> np.ndarray:
        """``A[s, t] = (1-d) d^(t-s)`` for ``s <= t``: ``m[:, t] = x[:, :] @ A[:, t]``."""
        lag = np.arange(steps)[None, :] - np.arange(steps)[:, None]
        weights = (1.0 - self.decay) * np.power(self.decay, np.maximum(lag, 0))
        return np.where(lag >= 0, weights, 0.0).astype(np.float32)

    def call(self, x):
        steps = x.shape[1]
        if steps is None:
            raise ValueError("CausalMeanNormalization needs a static number of frames")
        by_band = tf.transpose(x, [0, 2, 1])  # [B, F, T]
        mean = tf.matmul(by_band, tf.constant(self.running_mean_matrix(steps)))
        return tf.transpose(by_band - mean, [0, 2, 1])

    def step(self, x_t, mean):
        """One frame: ``(x_t [B, F], m_{t-1}) -> (x_t - m_t, m_t)``."""
        mean = self.decay * mean + (1.0 - self.decay) * x_t
        return x_t - mean, mean

    def get_config(self):
        return {**super().get_config(), "decay": self.decay}


@keras.saving.register_keras_serializable(package="speech_commands")
class SpecAugment(keras.layers.Layer):
    """SpecAugment (Park et al. 2019) frequency and time masking; identity at inference."""

    def __init__(self, freq_masks=2, freq_mask_width=4, time_masks=2, time_mask_width=5, seed=None,
                 time_stretch=0.0, **kwargs):
        super().__init__(**kwargs)
        self.time_stretch = time_stretch
        self.freq_masks, self.freq_mask_width = freq_masks, freq_mask_width
        self.time_masks, self.time_mask_width = time_masks, time_mask_width
        self.seed = seed

    def _masks(self, batch, size, count, width):
        keep = tf.ones([batch, size])
        pos = tf.range(size)[None, :]
        for _ in range(count):
            w = tf.random.uniform([batch, 1], 0, width + 1, dtype=tf.int32)
            room = tf.cast(size - w + 1, tf.float32)
            start = tf.cast(tf.floor(tf.random.uniform([batch, 1]) * room), tf.int32)
            keep *= 1.0 - tf.cast((pos >= start) & (pos < start + w), tf.float32)
        return keep

    def call(self, x, training=False):
        if not training:
            return x
        shape = tf.shape(x)
        batch, steps, bins = shape[0], shape[1], shape[2]
        if self.time_stretch:
            # tempo change without pitch change: resample the frame axis around the centre by a
            # log-uniform factor in [1/(1+s), 1+s] (speakers differ ~2x in speaking rate)
            limit = float(np.log1p(self.time_stretch))
            rate = tf.exp(tf.random.uniform([batch, 1], -limit, limit))
            centre = tf.cast(steps - 1, tf.float32) / 2.0
            pos = centre + (tf.range(steps, dtype=tf.float32)[None, :] - centre) * rate
            pos = tf.clip_by_value(pos, 0.0, tf.cast(steps - 1, tf.float32))
            lo = tf.floor(pos)
            frac = (pos - lo)[:, :, None]
            lo = tf.cast(lo, tf.int32)
            hi = tf.minimum(lo + 1, steps - 1)
            x = tf.gather(x, lo, batch_dims=1) * (1 - frac) + tf.gather(x, hi, batch_dims=1) * frac
        f = self._masks(batch, bins, self.freq_masks, self.freq_mask_width)[:, None, :]
        t = self._masks(batch, steps, self.time_masks, self.time_mask_width)[:, :, None]
        # masked cells take 0 = the (standardised) mean
        return x * f * t

    def get_config(self):
        return {
            **super().get_config(),
            "freq_masks": self.freq_masks,
            "freq_mask_width": self.freq_mask_width,
            "time_masks": self.time_masks,
            "time_mask_width": self.time_mask_width,
            "seed": self.seed,
            "time_stretch": self.time_stretch,
        }


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


def calibrate_frontend(frontend: LogMelFrontend, clips, batch_size: int = 64) -> None:
    """Set the front end's int8 conditioning gains from the typical levels in ``clips``."""
    if not frontend.built:
        frontend.build((None, clips.shape[1]))
    spec, mel, n = 0.0, 0.0, 0
    for i in range(0, len(clips), batch_size):
        frames = frontend.frames(tf.constant(clips[i : i + batch_size]))
        s, m = frontend.spectrum_levels(frames)
        k = min(batch_size, len(clips) - i)
        spec, mel, n = spec + s.numpy() * k, mel + m.numpy() * k, n + k
    frontend.set_gains(spec / n, mel / n)
    peaks = np.zeros(3, np.float32)
    for i in range(0, len(clips), batch_size):
        parts = frontend.intermediates(frontend.frames(tf.constant(clips[i : i + batch_size])))
        peaks = np.maximum(peaks, [float(tf.reduce_max(tf.abs(p))) for p in parts])
    frontend.ranges.assign(peaks * 1.1)  # augmented calibration clips run a little hotter


def feature_statistics(cfg: ModelConfig, clips, batch_size: int = 64, frontend=None):
    """Per-feature mean and variance of the front end's output on ``clips`` ``[N, samples]``."""
    if frontend is None:
        frontend = LogMelFrontend(dataclasses.asdict(cfg))
        calibrate_frontend(frontend, clips, batch_size)
    total, total_sq, count = 0.0, 0.0, 0
    for i in range(0, len(clips), batch_size):
        f = frontend(tf.constant(clips[i : i + batch_size])).numpy().reshape(-1, cfg.num_features)
        total = total + f.sum(0, dtype=np.float64)
        total_sq = total_sq + (f.astype(np.float64) ** 2).sum(0)
        count += f.shape[0]
    mean = total / count
    var = np.maximum(total_sq / count - mean**2, 1e-6)
    return mean.astype(np.float32), var.astype(np.float32)


CUSTOM_OBJECTS = {
    "LogMelFrontend": LogMelFrontend,
    "SpecAugment": SpecAugment,
    "CausalMeanNormalization": CausalMeanNormalization,
}


def load_trained_model(model_dir: SpeechModelDir) -> keras.Model:
    """``model.keras`` of ``model_dir`` (safe mode; a damaged file is one error line)."""
    return model_dir.keras_model(custom_objects=CUSTOM_OBJECTS)


# ----------------------------------------------------------------------------- streaming
@keras.saving.register_keras_serializable(package="speech_commands")
class StreamingStep(keras.layers.Layer):
    """One hop of the clip model with explicit state (kws_streaming style, external state).

    Inputs: ``hop [B, hop_samples]``, then the states of :func:`streaming_state_shapes`:
    ``fir_state [B, fir_context]`` (only with decimation), ``frame_state [B, frame_context]``,
    ``norm_mean [B, features]`` (only with causal mean normalisation), ``h [B, units]``,
    ``c [B, units]``. Outputs: the probabilities after this hop and the next states, in the
    same order. It shares (does not copy) the clip model's layers; the LSTM runs one step with
    ``layer.step``.
    """

    def __init__(self, clip_model: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.frontend = clip_model.get_layer("log_mel")
        self.standardize = clip_model.get_layer("standardize")
        self.lstm = clip_model.get_layer("lstm")
        self.head = clip_model.get_layer("probabilities")
        self.state_names = list(streaming_state_shapes(clip_model))
        self.mean_norm = clip_model.get_layer("causal_mean_norm") if "norm_mean" in self.state_names else None

    def call(self, inputs):
        fe = self.frontend
        hop, state = inputs[0], dict(zip(self.state_names, inputs[1:]))
        new = {}
        x = hop
        if fe.fir_context:
            x = fe.decimate(hop, history=state["fir_state"])
            new["fir_state"] = tf.concat([state["fir_state"], hop], axis=1)[:, -fe.fir_context :]
        frame = tf.concat([state["frame_state"], x], axis=1)
        new["frame_state"] = frame[:, -fe.frame_context :]
        feats = self.standardize(fe.features(frame[:, None, :]))[:, 0, :]  # a 1-frame sequence
        if self.mean_norm is not None:
            feats, new["norm_mean"] = self.mean_norm.step(feats, state["norm_mean"])
        out, (new["h"], new["c"]) = self.lstm.step(feats, [state["h"], state["c"]])
        return [self.head(out), *(new[k] for k in self.state_names)]


def streaming_state_shapes(clip_model: keras.Model) -> dict:
    fe = clip_model.get_layer("log_mel")
    units = clip_model.get_layer("lstm").units
    shapes = {}
    if fe.fir_context:
        shapes["fir_state"] = fe.fir_context
    shapes["frame_state"] = fe.frame_context
    if "causal_mean_norm" in {layer.name for layer in clip_model.layers}:
        shapes["norm_mean"] = fe.cfg.num_features
    shapes["h"] = units
    shapes["c"] = units
    return shapes


def build_streaming_model(clip_model: keras.Model) -> keras.Model:
    """Functional model ``(hop, *states) -> (probabilities, *next_states)`` (batch 1)."""
    fe = clip_model.get_layer("log_mel")
    if fe.frame_context == 0:
        raise ValueError("streaming needs frame_ms > hop_ms")
    hop = keras.Input((fe.cfg.hop_samples,), batch_size=1, name="hop")
    states = [keras.Input((n,), batch_size=1, name=k) for k, n in streaming_state_shapes(clip_model).items()]
    outputs = StreamingStep(clip_model, name="streaming_step")([hop, *states])
    return keras.Model([hop, *states], outputs, name="speech_commands_streaming")


def initial_streaming_state(clip_model: keras.Model) -> list[np.ndarray]:
    return [np.zeros((1, n), np.float32) for n in streaming_state_shapes(clip_model).values()]


def stream_clip(step_fn, clip: np.ndarray, state: list[np.ndarray], hop_samples: int):
    """Feed ``clip`` hop by hop through ``step_fn(hop, *state) -> [probs, *state]``.

    Returns ``(probabilities per hop [T, C], final state)``.
    """
    probs = []
    for start in range(0, len(clip) - hop_samples + 1, hop_samples):
        out = step_fn(clip[None, start : start + hop_samples].astype(np.float32), *state)
        probs.append(np.asarray(out[0])[0])
        state = [np.asarray(s) for s in out[1:]]
    return np.stack(probs), state


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
