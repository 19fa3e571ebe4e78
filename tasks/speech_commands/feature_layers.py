"""What the model does to the log-mel features before the LSTM: causal mean normalisation
(streamable, with a one-frame ``step``) and training-only SpecAugment."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


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
