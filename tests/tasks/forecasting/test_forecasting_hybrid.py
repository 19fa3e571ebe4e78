"""The hybrid model's in-graph parts: normalisation, restore, Theta, seasonal naive, the mix, padding."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tasks.forecasting import data as series_data
from tasks.forecasting import hybrid, metrics
from tasks.forecasting.config import ModelConfig
from tasks.forecasting.model import build_models

L, H, M = 36, 18, 12


def _periodic(profile, level, n):
    return np.array([profile[i % len(profile)] for i in range(n)]), level


@pytest.mark.parametrize("kind", ["multiplicative", "additive"])
def test_a_pure_seasonal_window_continues_exactly(kind):
    """Level x season with a zero LSTM output: the forecast is the season continued."""
    rng = np.random.default_rng(0)
    shape = rng.uniform(0.5, 1.5, M)
    t = np.arange(L + H)
    path = 10.0 * shape[t % M] if kind == "multiplicative" else -10.0 + shape[t % M]
    window = path[None, :L, None].astype(np.float32)
    normalised, stats = hybrid.SeasonalNormalize(L, H, M)(tf.constant(window))
    assert normalised.shape == (1, L, 1)
    np.testing.assert_allclose(normalised.numpy()[0, :, 0], 0.0, atol=1e-2)
    delta = hybrid.SeasonalRestore(L, H)(tf.zeros([1, H]), stats).numpy()[0]
    np.testing.assert_allclose(delta + path[L - 1], path[L:], rtol=1e-4, atol=1e-4)


def test_normalised_window_is_scale_free():
    rng = np.random.default_rng(1)
    window = (5 + rng.normal(size=(2, L, 2))).astype(np.float32)
    window[..., 0] = np.abs(window[..., 0]) + 1
    a, _ = hybrid.SeasonalNormalize(L, H, M)(tf.constant(window))
    scaled = window.copy()
    scaled[..., 0] *= 1000.0
    b, _ = hybrid.SeasonalNormalize(L, H, M)(tf.constant(scaled))
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-3)
    np.testing.assert_array_equal(a.numpy()[..., 1], window[..., 1])  # covariates pass through


def _numpy_theta(d, horizon, alphas=hybrid.SES_ALPHAS):
    best = None
    for alpha in alphas:
        level, levels = d[0], [d[0]]
        for value in d[1:]:
            level = alpha * value + (1 - alpha) * level
            levels.append(level)
        sse = np.mean((d[1:] - np.array(levels[:-1])) ** 2)
        if best is None or sse < best[0]:
            best = (sse, alpha, levels[-1])
    _, alpha, level = best
    slope = np.polyfit(np.arange(len(d)), d, 1)[0]
    h = np.arange(1, horizon + 1)
    return level + slope / 2 * (h - 1 + 1 / alpha - (1 - alpha) ** len(d) / alpha)


def test_theta_matches_a_numpy_theta():
    rng = np.random.default_rng(2)
    d = (np.cumsum(rng.normal(size=(3, L)), axis=1) + 0.1 * np.arange(L)).astype(np.float32)
    got = hybrid.theta_forecast(tf.constant(d), L, H).numpy()
    for row, expected in zip(got, (_numpy_theta(x.astype(np.float64), H) for x in d)):
        np.testing.assert_allclose(row, expected, rtol=1e-4, atol=1e-4)


def test_window_seasonal_naive_equals_the_metrics_one():
    rng = np.random.default_rng(3)
    y = rng.uniform(1, 2, 100)
    origin = 80
    window = y[None, origin - L : origin, None].astype(np.float32)
    out = hybrid.WindowBaselines(L, H, M)(tf.constant(window)).numpy()[0]
    expected = metrics.seasonal_naive(y, np.array([origin]), H, M)[0]
    np.testing.assert_allclose(out[1] + y[origin - 1], expected, rtol=1e-6)


def test_combine_mix_and_round_trip(tmp_path):
    cfg = ModelConfig(lookback=L, horizon=H, seasons=(M,), num_features=1, units=4, hidden=8, ensemble=1, hybrid="on")
    model, _ = build_models(cfg)
    rng = np.random.default_rng(4)
    x = rng.uniform(1, 2, size=(4, L, 1)).astype(np.float32)
    baselines = hybrid.WindowBaselines(L, H, M, tested=True)(tf.constant(x)).numpy()
    model.get_layer("combine").set_mix("theta")
    np.testing.assert_allclose(model.predict(x, verbose=0), baselines[:, 0], atol=1e-5)
    model.get_layer("combine").set_mix("mean_theta")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_short_series_windows_are_padded_with_the_first_season():
    rows = np.arange(30, dtype=np.float32)[:, None]
    padded = series_data.pad_rows(rows, 14, 12)
    assert len(padded) == 44
    np.testing.assert_array_equal(padded[:14, 0], [10, 11] + list(range(12)))  # same phase as the rows they copy
    np.testing.assert_array_equal(padded[14:], rows)
    cfg = ModelConfig(lookback=24, horizon=6, seasons=(12,), min_history=12)
    assert series_data.padding(cfg) == 12 and series_data.history(cfg) == 12


def test_the_losing_warning_names_the_fix():
    from tasks.forecasting.validation import losing_warning

    assert losing_warning("test", 0.5, {"seasonal_naive": 0.641, "auto_arima": 0.574}) is None
    worse_than_naive = losing_warning("validation", 0.9, {"seasonal_naive": 0.641, "auto_arima": 0.574})
    assert "validation origins" in worse_than_naive and "auto_arima 0.574" in worse_than_naive
    assert "--combine seasonal_naive" in worse_than_naive
    already_naive = losing_warning("test", 0.641, {"seasonal_naive": 0.641, "auto_arima": 0.574})
    assert "--combine theta or mean" in already_naive
    assert losing_warning("test", float("nan"), {"seasonal_naive": 1.0}) is None


def test_combine_auto_keeps_the_theta_mean_unless_validation_clearly_prefers_another():
    from tasks.forecasting.validation import choose_member

    tied = {"lstm": 0.8882, "theta": 0.93, "seasonal_naive": 1.14, "mean_theta": 0.8883}
    assert choose_member(tied, "auto") == "mean_theta"
    assert choose_member(tied, "best") == "lstm"
    clear = {"lstm": 0.895, "theta": 0.9, "seasonal_naive": 0.64, "mean_theta": 0.85}
    assert choose_member(clear, "auto") == "seasonal_naive" == choose_member(clear, "best")
    assert choose_member(clear, "none") == "lstm" and choose_member(clear, "mean") == "mean_theta"


def _numpy_seasonal_test(y, m):
    centred = y - y.mean()
    r = np.array([np.sum(centred[k:] * centred[:-k]) for k in range(1, m + 1)]) / np.sum(centred ** 2)
    return float(abs(r[-1]) > 1.645 * np.sqrt((1 + 2 * np.sum(r[:-1] ** 2)) / len(y)))


def test_seasonal_test_is_the_theta_methods_autocorrelation_test():
    rng = np.random.default_rng(5)
    n = 6 * M  # at 3 seasons even a clean sine fails the test (its other lags widen the limit)
    t = np.arange(n)
    seasonal = 10 + np.sin(2 * np.pi * t / M) + 0.1 * rng.normal(size=n)
    windows = np.stack([seasonal, 10 + rng.normal(size=n), *(10 + np.cumsum(rng.normal(size=(6, n)), axis=1))])
    got = hybrid.seasonal_test(tf.constant(windows, tf.float32), M, n).numpy()[:, 0]
    assert got[0] == 1.0 and got[1] == 0.0
    np.testing.assert_array_equal(got, [_numpy_seasonal_test(w, M) for w in windows])


def test_tested_normalisation_drops_the_season_only_of_a_window_without_one():
    """The LSTM's normalisation with the seasonality test: a trend + noise window is not deseasonalised
    (its normalised path is the window's own, affinely), a seasonal one is as without the test; config
    round trip."""
    rng = np.random.default_rng(7)
    n = 6 * M
    t = np.arange(n)
    trend = 50 + 0.5 * t + rng.normal(size=n)
    seasonal = 50 + 5 * np.sin(2 * np.pi * t / M) + 0.2 * rng.normal(size=n)
    x = tf.constant(np.stack([trend, seasonal])[:, :, None], tf.float32)
    tested, _ = hybrid.SeasonalNormalize(n, H, M, tested=True)(x)
    untested, _ = hybrid.SeasonalNormalize(n, H, M)(x)
    level = trend[-M:].mean()
    plain = (trend - level) / (trend.std() + 1e-3 * abs(level))  # SeasonalNormalize's spread
    np.testing.assert_allclose(tested[0, :, 0], plain, rtol=1e-3, atol=1e-3)
    assert np.max(np.abs(untested[0, :, 0] - plain)) > 0.02  # without the test the noise's "profile" stays
    np.testing.assert_allclose(tested[1], untested[1], atol=1e-5)
    layer = hybrid.SeasonalNormalize(n, H, M, tested=True)
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer)).tested


def test_tested_theta_drops_the_season_of_a_window_without_one_and_exports_to_litert_and_tflm():
    """A trend + noise window: the tested Theta has no profile (a straight line); a seasonal one keeps it;
    the layer's ops convert to LiteRT, load in TFLM and give Keras' forecast."""
    from lstm_core.export import convert_to_tflite

    rng = np.random.default_rng(6)
    n = 6 * M
    t = np.arange(n)
    trend = (50 + 0.5 * t + rng.normal(size=n)).astype(np.float32)
    seasonal = (50 + 5 * np.sin(2 * np.pi * t / M) + 0.2 * rng.normal(size=n)).astype(np.float32)
    x = np.stack([trend, seasonal])[:, :, None]
    window = keras.Input((n, 1), name="window")
    model = keras.Model(window, hybrid.WindowBaselines(n, H, M, tested=True)(window))
    out = model.predict(x, verbose=0)
    steps = np.diff(out[0, 0])
    np.testing.assert_allclose(steps, steps[0], rtol=1e-3)  # no season on the trend window: a line
    assert np.ptp(np.diff(out[1, 0])) > 1.0  # the seasonal window keeps its season
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model.layers[1])).tested
    from lstm_core.litert import TFLiteModel
    from lstm_core.tflm import TFLMModel

    flatbuffer = convert_to_tflite(model)
    for runtime in (TFLiteModel(flatbuffer), TFLMModel(flatbuffer)):  # TFLM: e.g. CONCATENATION takes <= 10 inputs
        for row, expected in zip(x, out):
            np.testing.assert_allclose(runtime(row[None])[0][0], expected, rtol=1e-4, atol=1e-4)
