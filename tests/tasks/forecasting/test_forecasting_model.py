"""Model, loss, streaming model, baselines and metrics."""

from __future__ import annotations


import keras
import numpy as np
import pytest

from tasks.common.config import TrainConfig
from tasks.common.errors import UserError
from tasks.forecasting import metrics
from tasks.forecasting.artifacts import ForecastingModelDir, Scaler
from tasks.forecasting.config import DataConfig, ModelConfig
from tasks.forecasting.model import (
    ForecastLoss,
    build_models,
    build_streaming_model,
    point_forecast,
    stream_window,
    with_median,
)


def _randomise(model, seed=0):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])


# ----------------------------------------------------------------------------- loss
def test_loss_is_mae_and_pinball():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(4, 3)).astype(np.float32)
    p = rng.normal(size=(4, 3)).astype(np.float32)
    assert float(ForecastLoss()(y, p)) == pytest.approx(np.mean(np.abs(y - p)), rel=1e-5)
    qs = [0.1, 0.5, 0.9]
    pq = rng.normal(size=(4, 3, 3)).astype(np.float32)
    e = y[..., None] - pq
    q = np.array(qs)
    expected = np.mean(np.maximum(q * e, (q - 1) * e))
    assert float(ForecastLoss(qs)(y, pq)) == pytest.approx(expected, rel=1e-5)
    members = rng.normal(size=(4, 2, 3)).astype(np.float32)
    assert float(ForecastLoss(ensemble=2)(y, members)) == pytest.approx(np.mean(np.abs(y[:, None] - members)), rel=1e-5)


def test_quantiles_get_the_median():
    assert with_median((0.9, 0.1)) == (0.1, 0.5, 0.9)
    assert with_median(()) == ()


def test_point_forecast_is_the_sorted_median():
    cfg = ModelConfig(horizon=2, quantiles=[0.1, 0.5, 0.9])
    out = np.array([[[3.0, 1.0, 2.0], [0.0, 5.0, 4.0]]])
    np.testing.assert_array_equal(point_forecast(out, cfg), [[2.0, 4.0]])


# ----------------------------------------------------------------------------- models
@pytest.mark.parametrize("ensemble,quantiles", [(1, []), (2, [0.1, 0.5, 0.9])])
def test_ensemble_members_and_mean(ensemble, quantiles):
    cfg = ModelConfig(lookback=6, horizon=3, num_features=2, units=4, hidden=5, quantiles=quantiles, ensemble=ensemble)
    model, training = build_models(cfg)
    _randomise(model)
    x = np.random.default_rng(1).normal(size=(5, 6, 2)).astype(np.float32)
    out = model.predict(x, verbose=0)
    tail = (3, 3) if quantiles else (3,)
    assert out.shape == (5, *tail)
    members = training.predict(x, verbose=0)
    if ensemble == 1:
        assert training is model
    else:
        assert members.shape == (5, ensemble, *tail)
        np.testing.assert_allclose(members.mean(1), out, atol=1e-6)


@pytest.mark.parametrize("ensemble,quantiles,hidden,future", [(1, [], 8, 0), (2, [0.2, 0.5, 0.8], 0, 0), (2, [], 6, 3)])
def test_streaming_over_a_window_equals_the_window_model(ensemble, quantiles, hidden, future):
    names = tuple(f"f{i}" for i in range(future))
    cfg = ModelConfig(lookback=9, horizon=4, num_features=3, units=5, hidden=hidden, quantiles=quantiles,
                      ensemble=ensemble, future_features=names)
    model, _ = build_models(cfg)
    _randomise(model, seed=ensemble)
    stream = build_streaming_model(model, cfg)
    shapes = [(1, 3), *([(1, 4, future)] if future else []), (1, 5 * ensemble), (1, 5 * ensemble)]
    assert [tuple(i.shape) for i in stream.inputs] == shapes
    rng = np.random.default_rng(2)
    windows = rng.normal(size=(3, 9, 3)).astype(np.float32)
    futures = rng.normal(size=(3, 4, future)).astype(np.float32)
    full = model.predict([windows, futures] if future else windows, verbose=0)

    def step(*inputs):
        return stream(list(inputs), training=False)

    for w, f, expected in zip(windows, futures, full):
        got, state = stream_window(step, w, cfg, future=f if future else None)
        np.testing.assert_allclose(got[0], expected, atol=1e-5)
        assert state[0].shape == (1, 5 * ensemble)
    # continuing from a state = starting over on the longer sequence
    f0 = futures[1] if future else None
    both = np.concatenate([windows[0], windows[1]])
    a, _ = stream_window(step, both, cfg, future=f0)
    _, mid = stream_window(step, windows[0], cfg, future=f0)
    b, _ = stream_window(step, windows[1], cfg, state=mid, future=f0)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_keras_save_round_trip(tmp_path):
    cfg = ModelConfig(lookback=5, horizon=2, num_features=1, units=3, hidden=4, ensemble=2)
    model, _ = build_models(cfg)
    x = np.random.default_rng(0).normal(size=(2, 5, 1)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def _fake_trained_dir(path, **series):
    data = DataConfig(data="x.csv", target="y", time_col="t", features=("a",), transform="log", resample="1h")
    model = ModelConfig(lookback=7, horizon=3, seasons=(24, 168), num_features=2, quantiles=(0.1, 0.5, 0.9),
                        ensemble=3)
    scaler = Scaler("log", 2.0, 0.5, [1.0], [3.0])
    path.mkdir()
    directory = ForecastingModelDir.create(path, data, model, TrainConfig(), {"freq": "h", **series}, scaler)
    (path / "model.keras").write_bytes(b"")
    return directory, data, model, scaler


def test_config_round_trip(tmp_path):
    _, data, model, scaler = _fake_trained_dir(tmp_path / "m")
    directory = ForecastingModelDir.open(tmp_path / "m").check_trained()
    assert directory.data == data and directory.model == model and directory.scaler == scaler
    assert directory.seasons == (24, 168) and directory.series["freq"] == "h"


def test_model_dir_errors(tmp_path):
    with pytest.raises(UserError, match="no such model directory"):
        ForecastingModelDir.open(tmp_path / "nothing")
    _fake_trained_dir(tmp_path / "m")
    (tmp_path / "m" / "scaler.json").write_text('{"transform": "log"}')
    with pytest.raises(UserError, match="scaler.json: damaged scaler file"):
        ForecastingModelDir.open(tmp_path / "m").check_trained()
    config = (tmp_path / "m" / "config.json").read_text()
    (tmp_path / "m" / "config.json").write_text(config.replace('"horizon": 3', '"horizon": 0'))
    with pytest.raises(UserError, match=r"config.json: model: horizon: expected an integer >= 1, got 0"):
        ForecastingModelDir.open(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(config.replace('"horizon": 3', '"horizon": "3"'))
    with pytest.raises(UserError, match=r"horizon: expected an integer, got '3'"):
        ForecastingModelDir.open(tmp_path / "m")


# ----------------------------------------------------------------------------- baselines, metrics
def test_naive_baselines():
    y = np.arange(100, dtype=float) ** 1.5
    origins = np.array([20, 50])
    np.testing.assert_array_equal(metrics.last_value(y, origins, 3), [[y[19]] * 3, [y[49]] * 3])
    sn = metrics.seasonal_naive(y, origins, 9, 4)
    for i, t in enumerate(origins):
        for h in range(9):
            assert sn[i, h] == y[t + h - 4 * (h // 4 + 1)]
            assert t + h - 4 * (h // 4 + 1) < t


def test_seasonal_naive_is_statsforecasts():
    from statsforecast.models import SeasonalNaive

    y = np.random.default_rng(0).normal(size=80).cumsum()
    origins = np.array([40, 63])
    ours = metrics.seasonal_naive(y, origins, 10, 7)
    for row, t in zip(ours, origins):
        np.testing.assert_allclose(row, SeasonalNaive(season_length=7).forecast(y[:t], h=10)["mean"])


def _two_season_series(n=24 * 7 * 6):
    t = np.arange(n)
    rng = np.random.default_rng(3)
    return 100 + 10 * np.sin(2 * np.pi * t / 24) + 5 * np.sin(2 * np.pi * t / 168) + rng.normal(0, 0.5, n).cumsum() * 0.1


def test_mstl_rolling_with_a_decomposition_per_origin_is_statsforecasts_forward(monkeypatch):
    from statsforecast.models import MSTL, AutoETS

    z = _two_season_series()
    fit_end, origins = 700, np.array([700, 713, 790])
    monkeypatch.setattr(metrics, "mstl_refresh", lambda seasons, count: 1)
    monkeypatch.setattr(metrics, "trailing_rows", lambda seasons: 10**6)
    ours, description = metrics._mstl_rolling(z, fit_end, origins, 12, (24, 168))
    model = MSTL(season_length=[24, 168], trend_forecaster=AutoETS(model="ZZN")).fit(z[:fit_end])
    for row, t in zip(ours, origins):
        np.testing.assert_allclose(row, model.forward(z[:t], h=12)["mean"], rtol=1e-6)
    assert "MSTL" in description


def test_statsforecast_baselines_run_on_the_same_origins_and_are_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, "ARIMA_MAX_ROWS", 500)
    y = _two_season_series()
    fit_end = 800
    origins = np.arange(800, 900, 7)
    actual = y[origins[:, None] + np.arange(12)[None, :]]
    names = ("auto_ets", "auto_theta", "mstl", "auto_arima")
    forecasts, descriptions = metrics.statsforecast_baselines(y, fit_end, origins, 12, (24, 168), "none", names,
                                                               tmp_path)
    assert set(forecasts) == {"auto_ets", "auto_theta", "mstl"}  # 800 rows: more than AutoARIMA's limit here
    assert "skipped" in descriptions["auto_arima"]
    scale = metrics.mase_scale(y[:fit_end], 168)
    naive = metrics.point_metrics(metrics.last_value(y, origins, 12), actual, scale)["mase"]
    for forecast in forecasts.values():
        assert forecast.shape == (len(origins), 12) and np.all(np.isfinite(forecast))
    assert metrics.point_metrics(forecasts["mstl"], actual, scale)["mase"] < 0.5 * naive
    again, descriptions = metrics.statsforecast_baselines(y, fit_end, origins, 12, (24, 168), "none", names, tmp_path)
    assert all(descriptions[name].endswith("(cached)") for name in forecasts)
    for name in forecasts:
        np.testing.assert_allclose(again[name], forecasts[name])


def test_metrics():
    y = np.array([[1.0, 2.0], [3.0, 0.0]])
    f = np.array([[2.0, 2.0], [1.0, 0.0]])
    m = metrics.point_metrics(f, y, scale=0.5)
    assert m["mae"] == pytest.approx(0.75)
    assert m["rmse"] == pytest.approx(np.sqrt(5 / 4))
    assert m["mase"] == pytest.approx(1.5)
    assert m["smape"] == pytest.approx((200 * 1 / 3 + 0 + 200 * 2 / 4 + 0) / 4)  # 0/0 counts as 0
    assert metrics.mase_scale(np.array([1.0, 2.0, 4.0, 7.0]), 2) == pytest.approx(4.0)
    assert metrics.mase_scale(np.array([1.0, 2.0, 4.0]), 1) == pytest.approx(1.5)
    q = metrics.quantile_metrics(np.stack([f - 1, f, f + 1], -1), y, [0.1, 0.5, 0.9], 1.0)
    assert q["interval_coverage"] == pytest.approx(0.75) and q["interval_nominal"] == pytest.approx(0.8)
