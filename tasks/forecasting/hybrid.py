"""The hybrid (ES-RNN-style) part of the forecaster: per-window normalisation, in-graph baselines.

Everything here is plain TensorFlow over the lookback window (reshape, reductions, constant
gathers and matmuls, arithmetic), so the LiteRT/TFLM exports carry it:

* :class:`SeasonalNormalize`: the window's level path ``v [B, L]`` (column 0 of the window, the
  transformed target over its scale) -> a seasonal profile of period ``m`` averaged over the
  window's last ``L // m`` full seasons (multiplicative — ratios to each season's mean — when
  the window is positive, else additive), the deseasonalised path ``d``, its level (mean of the
  last season) and spread (standard deviation); the LSTM sees ``(d - level) / spread``.
* :class:`SeasonalRestore`: the LSTM's normalised path -> ``level + spread * out``, reseasonalised
  with the profile continued over the horizon, returned as the change from the last observed
  value (the convention of every forecaster output in this task).
* :class:`WindowBaselines`: in-graph baselines over the same window, in the same convention:
  seasonal naive, and Theta (SES with half the linear-trend drift, Assimakopoulos & Nikolopoulos
  2000) on the deseasonalised path, with the SES weight picked per window from a small grid by
  the in-sample one-step error. SES levels are fixed linear combinations of the window, so they
  are one constant matmul.
* :class:`Combine`: ``a * lstm + b * theta + c * seasonal naive`` with ``(a, b, c)`` set at train
  time from the validation origins (``--combine``); stored as non-trainable weights.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tasks.forecasting.seasons import hybrid_season  # noqa: F401 - re-exported for the model

EPS = 1e-6
SES_ALPHAS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
MIXES = {"lstm": (1.0, 0.0, 0.0), "theta": (0.0, 1.0, 0.0), "seasonal_naive": (0.0, 0.0, 1.0),
         "mean_theta": (0.5, 0.5, 0.0), "mean_all": (1 / 3, 1 / 3, 1 / 3)}


def profile_indices(lookback: int, horizon: int, season: int) -> np.ndarray:
    """Phase of every window position and forecast step, counted from the first full season."""
    start = lookback - (lookback // season) * season
    return ((np.arange(lookback + horizon) - start) % season).astype(np.int32)  # TFLM GATHER: int32


def _shrunk_profile(per_season, neutral: float):
    """Mean over seasons ``[B, k, m] -> [B, m]``, shrunk towards ``neutral`` by how much of its spread
    the season-to-season noise explains (0: none of it, a clear season; 1: all, no season): the
    profile of a series without a season is noise that would be added to every forecast."""
    k = per_season.shape[1]
    profile = tf.reduce_mean(per_season, axis=1)
    profile = profile - tf.reduce_mean(profile, axis=1, keepdims=True) + neutral
    if k < 2:
        return profile
    noise = tf.reduce_mean(tf.square(per_season - profile[:, None, :]), axis=[1, 2], keepdims=False) / (k - 1)
    signal = tf.reduce_mean(tf.square(profile - neutral), axis=1)
    keep = tf.nn.relu(1.0 - noise / (signal + EPS))[:, None]
    return neutral + keep * (profile - neutral)


def seasonal_profiles(v, lookback: int, season: int, shrink: bool = True):
    """``(multiplicative [B, m], additive [B, m])`` profiles from the last full seasons of ``v``."""
    k = lookback // season
    seg = tf.reshape(v[:, lookback - k * season :], [-1, k, season])
    seg_mean = tf.reduce_mean(seg, axis=2, keepdims=True)
    ratios, offsets = seg / tf.maximum(seg_mean, EPS), seg - seg_mean
    if shrink:
        return _shrunk_profile(ratios, 1.0), _shrunk_profile(offsets, 0.0)
    mult = tf.reduce_mean(ratios, axis=1)
    mult = mult / tf.maximum(tf.reduce_mean(mult, axis=1, keepdims=True), EPS)
    add = tf.reduce_mean(offsets, axis=1)
    return mult, add - tf.reduce_mean(add, axis=1, keepdims=True)


def seasonal_test(v, season: int, length: int):
    """``[B, 1]``: 1 where the window's autocorrelation at the season's lag is significant (90 %,
    one-sided: ``|r_m| > 1.645 sqrt((1 + 2 sum_{k<m} r_k^2) / n)``, the test of the Theta method
    (Assimakopoulos & Nikolopoulos 2000; statsforecast's ``Theta``) before it deseasonalises), else 0.
    ``length``: the window's ``n`` (static; the traced shape may not be)."""
    centred = v - tf.reduce_mean(v, axis=1, keepdims=True)
    denominator = tf.reduce_sum(tf.square(centred), axis=1, keepdims=True) + EPS
    acf = [tf.reduce_sum(centred[:, k:] * centred[:, :-k], axis=1, keepdims=True) / denominator
           for k in range(1, season + 1)]
    spread = tf.ones_like(acf[0])
    for r in acf[:-1]:  # a chain of ADDs: TFLM's CONCATENATION takes at most 10 inputs
        spread = spread + 2.0 * tf.square(r)
    limit = 1.645 * tf.sqrt(spread / float(length))
    return tf.cast(tf.abs(acf[-1]) > limit, v.dtype)


def deseasonalise(v, lookback: int, horizon: int, season: int, seasonality: str, tested: bool = False):
    """``(d [B, L], profile stats)``: the deseasonalised path and what restores the season later.

    The stats are ``(is_mult [B, 1], mult [B, L+H], add [B, L+H])`` (the profile at every window
    position and forecast step). ``tested``: windows failing :func:`seasonal_test` keep no profile
    (when the window holds 3 seasons or more)."""
    batch = tf.shape(v)[0]
    if season <= 1 or seasonality == "none":
        ones = tf.ones([batch, lookback + horizon], v.dtype)
        return v, (tf.ones([batch, 1], v.dtype), ones, ones * 0.0)
    mult, add = seasonal_profiles(v, lookback, season)
    if tested and 3 * season <= lookback:  # a shorter window: too few lags for the test, the profile stays
        keep = seasonal_test(v, season, lookback)
        mult, add = keep * mult + (1.0 - keep), keep * add
    idx = profile_indices(lookback, horizon, season)
    mult_all, add_all = tf.gather(mult, idx, axis=1), tf.gather(add, idx, axis=1)
    positive = tf.cast(tf.reduce_min(v, axis=1, keepdims=True) > 0, v.dtype)
    is_mult = {"auto": positive, "multiplicative": positive, "additive": positive * 0.0}[seasonality]
    mult_all = tf.maximum(mult_all, EPS)
    d = is_mult * (v / mult_all[:, :lookback]) + (1.0 - is_mult) * (v - add_all[:, :lookback])
    return d, (is_mult, mult_all, add_all)


def reseasonalise(path, stats, lookback: int):
    """Deseasonalised forecast ``[B, H(, Q)]`` -> forecast with the season (the inverse of the above)."""
    is_mult, mult_all, add_all = stats
    mult, add = mult_all[:, lookback:], add_all[:, lookback:]
    if len(path.shape) == 3:
        is_mult, mult, add = is_mult[:, :, None], mult[:, :, None], add[:, :, None]
    return is_mult * path * mult + (1.0 - is_mult) * (path + add)


@keras.saving.register_keras_serializable(package="forecasting")
class SeasonalNormalize(keras.layers.Layer):
    """``window [B, L, F]`` -> ``(normalised window [B, L, F], stats [B, 3 + 2(L+H)])``.

    Column 0 of the window must be the level path; the other columns pass through.

    Args:
        lookback, horizon: the window and forecast lengths.
        season: the profile's period (1: none).
        seasonality: ``auto`` (multiplicative for positive windows, else additive), ``additive``,
            ``multiplicative`` (still additive for windows that are not positive) or ``none``.
        tested: windows that fail the Theta method's seasonality test (:func:`seasonal_test`) keep no
            profile, as in :class:`WindowBaselines` (the new models' default: M3 monthly test MASE
            0.873 / 0.873 -> 0.861 / 0.839 on seeds 0 / 1; ``False``: the models saved before it).
    """

    def __init__(self, lookback, horizon, season, seasonality="auto", tested=False, **kwargs):
        super().__init__(**kwargs)
        self.lookback, self.horizon, self.season, self.seasonality = int(lookback), int(horizon), int(season), seasonality
        self.tested = bool(tested)

    def call(self, window):
        v = window[:, :, 0]
        d, (is_mult, mult_all, add_all) = deseasonalise(v, self.lookback, self.horizon, self.season, self.seasonality,
                                                        self.tested)
        tail = max(self.season, 1)
        level = tf.reduce_mean(d[:, self.lookback - tail :], axis=1, keepdims=True)
        spread = tf.sqrt(tf.reduce_mean(tf.square(d - tf.reduce_mean(d, axis=1, keepdims=True)), axis=1,
                                        keepdims=True) + EPS) + 1e-3 * tf.abs(level)
        x0 = (d - level) / spread
        normalised = tf.concat([x0[:, :, None], window[:, :, 1:]], axis=-1)
        stats = tf.concat([level, spread, is_mult, mult_all, add_all, v[:, -1:]], axis=1)
        return normalised, stats

    def compute_output_shape(self, shape):
        return shape, (shape[0], 4 + 2 * (self.lookback + self.horizon))

    def get_config(self):
        return {**super().get_config(), "lookback": self.lookback, "horizon": self.horizon, "season": self.season,
                "seasonality": self.seasonality, "tested": self.tested}


@keras.saving.register_keras_serializable(package="forecasting")
class LastSteps(keras.layers.Layer):
    """``[B, L, F] -> [B, N, F]``: the last ``N`` rows (the LSTM reads fewer rows than the statistics)."""

    def __init__(self, steps, **kwargs):
        super().__init__(**kwargs)
        self.steps = int(steps)

    def call(self, x):
        return x[:, -self.steps :, :]

    def compute_output_shape(self, shape):
        return (shape[0], self.steps, shape[2])

    def get_config(self):
        return {**super().get_config(), "steps": self.steps}


def unpack_stats(stats, lookback: int, horizon: int):
    span = lookback + horizon
    level, spread, is_mult = stats[:, 0:1], stats[:, 1:2], stats[:, 2:3]
    mult_all, add_all = stats[:, 3 : 3 + span], stats[:, 3 + span : 3 + 2 * span]
    return level, spread, (is_mult, mult_all, add_all), stats[:, 3 + 2 * span :]


@keras.saving.register_keras_serializable(package="forecasting")
class SeasonalRestore(keras.layers.Layer):
    """``(normalised path [B, H(, Q)], stats)`` -> change from the last observed level ``[B, H(, Q)]``."""

    def __init__(self, lookback, horizon, **kwargs):
        super().__init__(**kwargs)
        self.lookback, self.horizon = int(lookback), int(horizon)

    def call(self, out, stats):
        level, spread, season_stats, last = unpack_stats(stats, self.lookback, self.horizon)
        if len(out.shape) == 3:
            level, spread, last = level[:, :, None], spread[:, :, None], last[:, :, None]
        path = level + spread * out
        return reseasonalise(path, season_stats, self.lookback) - last

    def compute_output_shape(self, out_shape, stats_shape):
        return out_shape

    def get_config(self):
        return {**super().get_config(), "lookback": self.lookback, "horizon": self.horizon}


def ses_matrices(lookback: int, alphas=SES_ALPHAS) -> np.ndarray:
    """``[A, L, L]``: column ``t`` of matrix ``a`` gives the SES level after ``d[0..t]`` (level 0 = d[0])."""
    out = np.zeros((len(alphas), lookback, lookback), np.float32)
    for a, alpha in enumerate(alphas):
        for t in range(lookback):
            weights = alpha * (1 - alpha) ** (t - np.arange(t + 1))
            weights[0] = (1 - alpha) ** t
            out[a, : t + 1, t] = weights
    return out


def theta_forecast(d, lookback: int, horizon: int, alphas=SES_ALPHAS):
    """Theta method on the deseasonalised window ``d [B, L]`` -> ``[B, H]``: SES (weight chosen per
    window by the in-sample one-step squared error) plus half the OLS slope as drift."""
    mats = ses_matrices(lookback, alphas)
    levels = tf.stack([tf.matmul(d, tf.constant(m)) for m in mats], axis=1)  # [B, A, L]
    errors = tf.reduce_mean(tf.square(d[:, None, 1:] - levels[:, :, :-1]), axis=2)  # [B, A]
    # the weight with the least error, as a mask (EQUAL, not ONE_HOT: TFLM has no ONE_HOT kernel)
    pick = tf.cast(tf.equal(errors, tf.reduce_min(errors, axis=1, keepdims=True)), d.dtype)  # [B, A]
    pick = pick / tf.reduce_sum(pick, axis=1, keepdims=True)
    last_level = tf.reduce_sum(pick * levels[:, :, -1], axis=1, keepdims=True)
    t = np.arange(lookback, dtype=np.float64)
    slope_weights = ((t - t.mean()) / np.sum((t - t.mean()) ** 2)).astype(np.float32)
    slope = tf.reduce_sum(d * tf.constant(slope_weights), axis=1, keepdims=True)
    a = np.asarray(alphas, np.float64)
    decays = ((1.0 - (1.0 - a) ** lookback) / a).astype(np.float32)  # per grid weight: no POW in the graph
    decay = tf.reduce_sum(pick * tf.constant(decays), axis=1, keepdims=True)
    h = tf.constant(np.arange(horizon, dtype=np.float32)[None])  # steps 1..H -> h - 1 = 0..H-1
    return last_level + 0.5 * slope * (h + decay)


def seasonal_naive_indices(lookback: int, horizon: int, season: int) -> np.ndarray:
    h = np.arange(horizon)
    return (lookback - season * (h // season + 1) + h).astype(np.int32)


@keras.saving.register_keras_serializable(package="forecasting")
class WindowBaselines(keras.layers.Layer):
    """``window [B, L, F]`` -> ``[B, 2, H]``: Theta and seasonal naive, as changes from the last value.

    Args:
        lookback, horizon, season, seasonality: as :class:`SeasonalNormalize`.
        tested: Theta deseasonalises only windows that pass :func:`seasonal_test` (the new models'
            default; ``False``, the models saved before it, keeps every window's shrunk profile).
    """

    def __init__(self, lookback, horizon, season, seasonality="auto", tested=False, **kwargs):
        super().__init__(**kwargs)
        self.lookback, self.horizon, self.season, self.seasonality = int(lookback), int(horizon), int(season), seasonality
        self.tested = bool(tested)

    def call(self, window):
        v = window[:, :, 0]
        d, stats = deseasonalise(v, self.lookback, self.horizon, max(self.season, 1), self.seasonality, self.tested)
        theta = reseasonalise(theta_forecast(d, self.lookback, self.horizon), stats, self.lookback)
        snaive = tf.gather(v, seasonal_naive_indices(self.lookback, self.horizon, max(self.season, 1)), axis=1)
        last = v[:, -1:]
        return tf.stack([theta - last, snaive - last], axis=1)

    def compute_output_shape(self, shape):
        return (shape[0], 2, self.horizon)

    def get_config(self):
        return {**super().get_config(), "lookback": self.lookback, "horizon": self.horizon, "season": self.season,
                "seasonality": self.seasonality, "tested": self.tested}


@keras.saving.register_keras_serializable(package="forecasting")
class Combine(keras.layers.Layer):
    """``(lstm [B, H(, Q)], baselines [B, 2, H])`` -> ``a*lstm + b*theta + c*snaive`` (weights set after training)."""

    def build(self, lstm_shape, baselines_shape):
        self.mix = self.add_weight(name="mix", shape=(3,), initializer=keras.initializers.Constant([1.0, 0.0, 0.0]),
                                   trainable=False)

    def call(self, lstm, baselines):
        theta, snaive = baselines[:, 0], baselines[:, 1]
        if len(lstm.shape) == 3:
            theta, snaive = theta[:, :, None], snaive[:, :, None]
        return self.mix[0] * lstm + self.mix[1] * theta + self.mix[2] * snaive

    def compute_output_shape(self, lstm_shape, baselines_shape):
        return lstm_shape

    def set_mix(self, name: str) -> None:
        self.mix.assign(np.asarray(MIXES[name], np.float32))

