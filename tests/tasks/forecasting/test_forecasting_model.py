"""Model, loss, streaming model, baselines and metrics."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from lstm_core.errors import UserError
from tasks.forecasting import baselines as B
from tasks.forecasting import metrics as MET
from tasks.forecasting.artifacts import open_model_dir
from tasks.forecasting.data import DataConfig, Scaler
from tasks.forecasting.model import (
    ForecastLoss,
    ModelConfig,
    build_models,
    build_streaming_model,
    parse_quantiles,
    point_forecast,
    stream_window,
)
from lstm_core.io import write_json_atomic


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


def test_parse_quantiles_adds_the_median():
    assert parse_quantiles("0.9,0.1") == [0.1, 0.5, 0.9]
    assert parse_quantiles(None) == []
    with pytest.raises(UserError, match="in \\(0, 1\\)"):
        parse_quantiles("0.1,1.5")
    with pytest.raises(UserError, match="numbers"):
        parse_quantiles("low,high")


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


@pytest.mark.parametrize("ensemble,quantiles,hidden", [(1, [], 8), (2, [0.2, 0.5, 0.8], 0)])
def test_streaming_over_a_window_equals_the_window_model(ensemble, quantiles, hidden):
    cfg = ModelConfig(lookback=9, horizon=4, num_features=3, units=5, hidden=hidden, quantiles=quantiles, ensemble=ensemble)
    model, _ = build_models(cfg)
    _randomise(model, seed=ensemble)
    stream = build_streaming_model(model, cfg)
    assert [tuple(i.shape) for i in stream.inputs] == [(1, 3), (1, 5 * ensemble), (1, 5 * ensemble)]
    windows = np.random.default_rng(2).normal(size=(3, 9, 3)).astype(np.float32)
    full = model.predict(windows, verbose=0)
    step = lambda x, h, c: stream([x, h, c], training=False)
    for w, expected in zip(windows, full):
        got, state = stream_window(step, w, cfg)
        np.testing.assert_allclose(got[0], expected, atol=1e-5)
        assert state[0].shape == (1, 5 * ensemble)
    # continuing from a state = starting over on the longer sequence
    both = np.concatenate([windows[0], windows[1]])
    a, _ = stream_window(step, both, cfg)
    _, mid = stream_window(step, windows[0], cfg)
    b, _ = stream_window(step, windows[1], cfg, state=mid)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_keras_save_round_trip(tmp_path):
    cfg = ModelConfig(lookback=5, horizon=2, num_features=1, units=3, hidden=4, ensemble=2)
    model, _ = build_models(cfg)
    x = np.random.default_rng(0).normal(size=(2, 5, 1)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_config_round_trip(tmp_path):
    data = DataConfig(data="x.csv", target="y", time_col="t", features=["a"], transform="log", resample="1h")
    mcfg = ModelConfig(lookback=7, horizon=3, num_features=2, quantiles=[0.1, 0.5, 0.9], ensemble=3)
    scaler = Scaler("log", 2.0, 0.5, [1.0], [3.0])
    for name in ("model.keras",):
        (tmp_path / name).write_bytes(b"")
    write_json_atomic(tmp_path / "config.json", {"task": "forecasting", "data": dataclasses.asdict(data),
                                                  "model": dataclasses.asdict(mcfg), "series": {"season": 4}, "train": {}})
    write_json_atomic(tmp_path / "scaler.json", scaler.as_dict())
    md = open_model_dir(tmp_path)
    assert md.data == data and md.model == mcfg and md.scaler == scaler and md.series["season"] == 4


def test_model_dir_errors(tmp_path):
    with pytest.raises(UserError, match="missing config.json"):
        open_model_dir(tmp_path)


# ----------------------------------------------------------------------------- baselines, metrics
def test_naive_baselines():
    y = np.arange(100, dtype=float) ** 1.5
    origins = np.array([20, 50])
    np.testing.assert_array_equal(B.last_value(y, origins, 3), [[y[19]] * 3, [y[49]] * 3])
    sn = B.seasonal_naive(y, origins, 9, 4)
    for i, t in enumerate(origins):
        for h in range(9):
            assert sn[i, h] == y[t + h - 4 * (h // 4 + 1)]
            assert t + h - 4 * (h // 4 + 1) < t


def test_ets_rolling_forecasts_equal_a_refit_with_frozen_parameters():
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    rng = np.random.default_rng(0)
    t = np.arange(160)
    z = 5 + 0.05 * t + np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.1, 160)
    fit = B.fit_ets(z[:120], 12)
    assert fit is not None and fit.seasonal == "add"
    origins = np.array([120, 137])
    got = B.ets_forecasts(z, fit, origins, 8)
    p = fit.params
    for row, o in zip(got, origins):
        res = ExponentialSmoothing(
            z[:o], trend=fit.trend, damped_trend=fit.damped, seasonal="add", seasonal_periods=12,
            initialization_method="known", initial_level=p["initial_level"],
            initial_trend=p["initial_trend"] if fit.trend else None, initial_seasonal=p["initial_seasons"],
        ).fit(smoothing_level=p["smoothing_level"], smoothing_trend=p["smoothing_trend"] if fit.trend else None,
              smoothing_seasonal=p["smoothing_seasonal"], damping_trend=p["damping_trend"] if fit.damped else None,
              optimized=False)
        np.testing.assert_allclose(row, res.forecast(8), rtol=1e-9)


def test_metrics():
    y = np.array([[1.0, 2.0], [3.0, 0.0]])
    f = np.array([[2.0, 2.0], [1.0, 0.0]])
    m = MET.point_metrics(f, y, scale=0.5)
    assert m["mae"] == pytest.approx(0.75)
    assert m["rmse"] == pytest.approx(np.sqrt(5 / 4))
    assert m["mase"] == pytest.approx(1.5)
    assert m["smape"] == pytest.approx((200 * 1 / 3 + 0 + 200 * 2 / 4 + 0) / 4)  # 0/0 counts as 0
    assert MET.mase_scale(np.array([1.0, 2.0, 4.0, 7.0]), 2) == pytest.approx(4.0)
    assert MET.mase_scale(np.array([1.0, 2.0, 4.0]), 1) == pytest.approx(1.5)
    q = MET.quantile_metrics(np.stack([f - 1, f, f + 1], -1), y, [0.1, 0.5, 0.9], 1.0)
    assert q["interval_coverage"] == pytest.approx(0.75) and q["interval_nominal"] == pytest.approx(0.8)
