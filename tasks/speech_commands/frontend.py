"""The log-mel front end: raw 16 kHz audio -> log-mel features, inside the model (tf.signal).

Every op converts to a TFLite *builtin* that also has an int8 kernel (no RFFT/COMPLEX_ABS, which
have no int8 kernels):

1. optional decimation to ``feature_rate`` (8 kHz by default): a causal low-pass FIR
   (``scipy.signal.firwin``) as a strided convolution;
2. causal framing with ``tf.signal.frame`` after ``frame - hop`` zeros of left padding, so frame
   ``i`` ends exactly where hop ``i`` ends (a streaming model reproduces it hop by hop);
3. a windowed real DFT as one matmul with a precomputed ``[frame, 2K]`` matrix
   (``tf.signal.hann_window`` folded in; only the K bins up to the mel upper edge);
4. the spectrum (:func:`spectrum`: power ``re^2 + im^2`` or magnitude ``|re| + |im|``), mel filter
   bank matmul (``tf.signal.linear_to_mel_weight_matrix``), ``log(mel + log_offset)``; the offset
   is a noise floor that also keeps the int8 model's quantisation steps of the power spectrum
   below the feature's resolution.

The layer (:class:`LogMelFrontend`) exposes ``decimate``/``frames``/``features`` separately so the
streaming model (``streaming.py``) runs exactly the same math hop by hop.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from tasks.speech_commands.config import ModelConfig


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


def spectrum(dft_output, num_bins: int, kind: str):
    """The spectrum of the DFT matmul's output ``[..., 2 * num_bins]`` (real parts, then imaginary).

    ``kind="power"``: ``re^2 + im^2``. ``kind="magnitude"``: ``|re| + |im|``, the L1 magnitude,
    within a factor sqrt(2) of ``|X|`` and free of the squaring that would halve an int8 tensor's
    dynamic range. The one place the formula is written: the layer, its calibration and the
    streaming model all come through here.
    """
    re, im = dft_output[..., :num_bins], dft_output[..., num_bins:]
    if kind == "magnitude":
        return tf.abs(re) + tf.abs(im)
    return re * re + im * im


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

    def _spectra(self, frames, dft, mel_matrix, fake=False):
        """``(DFT output, spectrum, mel)`` of ``frames`` through the given matrices; ``fake``
        rounds each of the three to its int8 grid (int8-aware front end)."""
        z = tf.matmul(frames, dft)
        if fake:
            z = self._fake_int8(z, 0, signed=True)
        spec = spectrum(z, self.num_bins, self.cfg.spectrum)
        if fake:
            # (the no-op relu keeps the TFLite converter from fusing QUANTIZE into the mel
            # FULLY_CONNECTED's input as legacy uint8, which LiteRT then rejects)
            spec = tf.nn.relu(self._fake_int8(spec, 1, signed=False))
        mel = tf.matmul(spec, mel_matrix)
        if fake:
            mel = self._fake_int8(mel, 2, signed=False)
        return z, spec, mel

    def intermediates(self, frames):
        """(DFT output, spectrum, mel) with the gains applied: what int8 quantises."""
        dft, mel_matrix, _ = self._matrices()
        return self._spectra(frames, dft, mel_matrix)

    def _matrices(self):
        g = tf.convert_to_tensor(self.bin_gain)
        h = tf.convert_to_tensor(self.mel_gain)
        dft = self.dft * tf.concat([g, g], axis=0)[None, :]
        g_spec = g if self.cfg.spectrum == "magnitude" else g * g
        mel = self.mel / g_spec[:, None] * h[None, :]
        return dft, mel, self.cfg.log_offset * h

    def spectrum_levels(self, frames):
        """Mean spectrum per bin and mean mel value per band (before gains) of ``frames``."""
        _, spec, mel = self._spectra(frames, self.dft, self.mel)
        axes = list(range(len(spec.shape) - 1))
        return tf.reduce_mean(spec, axes), tf.reduce_mean(mel, axes)

    def frames(self, audio):
        x = self.decimate(audio)
        x = tf.pad(x, [[0, 0], [self.frame_context, 0]])
        return tf.signal.frame(x, self.frame, self.hop, pad_end=False)

    def features(self, frames):
        """Frames ``[..., frame]`` -> log-mel ``[..., num_mel_bins]`` (or MFCCs)."""
        dft, mel_matrix, offset = self._matrices()
        _, _, mel = self._spectra(frames, dft, mel_matrix, fake=self.cfg.int8_aware)
        features = tf.math.log(mel + offset)
        if self.dct is not None:
            features = tf.matmul(features, self.dct)
        return features

    def call(self, audio):
        return self.features(self.frames(audio))

    def compute_output_shape(self, input_shape):
        n = input_shape[1]
        steps = None if n is None else n // self.cfg.hop_samples
        return (input_shape[0], steps, self.cfg.num_features)

    def get_config(self):
        return {**super().get_config(), "config": self.config}


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
