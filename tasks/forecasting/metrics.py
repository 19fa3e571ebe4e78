"""Forecast metrics and the baselines they are compared with, on the same rolling origins.

Metrics (arrays ``[origins, H]``):

* MAE, RMSE in the series' units; sMAPE in percent, ``200 * |F - Y| / (|F| + |Y|)`` (0 when
  both are 0);
* MASE = MAE / ``scale``: the in-sample MAE of the seasonal naive forecast with the **longest**
  season on the rows before the test part (Hyndman & Koehler 2006; M4's definition).

Baselines (every one forecasts the same H rows from the same origins as the model):

* ``last_value``: ``y[t-1]``; ``seasonal_naive``: the value one longest season earlier,
  ``y[t+h - m(floor(h/m)+1)]`` (what statsforecast's ``SeasonalNaive`` returns);
* from statsforecast, **fit once on the rows before the test part**, then updated through the
  test rows with their parameters frozen (``forward``): ``auto_ets`` (``AutoETS``, shortest
  season), ``auto_theta`` (``AutoTheta``, shortest season), ``mstl`` (``MSTL`` with every
  season, ``AutoETS`` trend), ``auto_arima`` (``AutoARIMA``, only when the fit part has at most
  :data:`ARIMA_MAX_ROWS` rows and the season is at most 52). Theta and MSTL are updated on the
  trailing :func:`trailing_rows` rows; MSTL's decomposition is refreshed every few origins
  (:func:`mstl_refresh`; in between its seasonal components continue periodically and only
  the trend model is updated), which keeps a year of hourly data to about a minute.

Baselines run on the model's ``--transform`` scale and are transformed back. Their forecasts
are cached (``MODEL/baselines/``) under a key of the data, origins and settings, so repeated
``evaluate`` calls are fast.
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from pathlib import Path

import numpy as np

from tasks.forecasting.artifacts import apply_transform, invert_transform

log = logging.getLogger(__name__)

STATSFORECAST_BASELINES = ("auto_ets", "auto_theta", "mstl", "auto_arima")
ARIMA_MAX_ROWS = 1000
CACHE_VERSION = "1"


# ----------------------------------------------------------------------------- metrics
def mase_scale(y_insample: np.ndarray, season: int) -> float:
    """In-sample MAE of the seasonal naive forecast with lag ``season`` (lag 1 if the series is too short)."""
    y = np.asarray(y_insample, np.float64)
    lag = season if season > 1 and len(y) > season + 1 else 1
    scale = float(np.mean(np.abs(y[lag:] - y[:-lag]))) if len(y) > lag else float("nan")
    return scale if scale > 0 else float("nan")


def point_metrics(forecast: np.ndarray, actual: np.ndarray, scale: float) -> dict:
    f = np.asarray(forecast, np.float64)
    y = np.asarray(actual, np.float64)
    err = f - y
    denom = np.abs(f) + np.abs(y)
    smape = np.where(denom > 0, 200.0 * np.abs(err) / np.where(denom > 0, denom, 1.0), 0.0)
    mae = float(np.mean(np.abs(err)))
    return {
        "mae": mae,
        "rmse": float(np.sqrt(np.mean(err**2))),
        "smape": float(np.mean(smape)),
        "mase": mae / scale,
    }


def mase_by_step(forecast, actual, scale) -> list[float]:
    return [float(v) for v in np.mean(np.abs(np.asarray(forecast) - np.asarray(actual)), axis=0) / scale]


def quantile_metrics(quantile_forecast: np.ndarray, actual: np.ndarray, quantiles, scale: float) -> dict:
    """Mean pinball loss (scaled like MASE) and the coverage of the outermost interval."""
    qf = np.asarray(quantile_forecast, np.float64)  # [N, H, Q]
    y = np.asarray(actual, np.float64)[..., None]
    q = np.asarray(quantiles, np.float64)
    e = y - qf
    pinball = np.maximum(q * e, (q - 1) * e)
    out = {
        "pinball_loss": float(np.mean(pinball)),
        "scaled_pinball_loss": float(np.mean(pinball) / scale),
    }
    if len(q) >= 2:
        lo, hi = qf[..., 0], qf[..., -1]
        out["interval"] = [float(q[0]), float(q[-1])]
        out["interval_coverage"] = float(np.mean((y[..., 0] >= lo) & (y[..., 0] <= hi)))
        out["interval_nominal"] = float(q[-1] - q[0])
    return out


# ----------------------------------------------------------------------------- naive baselines
def last_value(y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    return np.repeat(np.asarray(y, np.float64)[origins - 1][:, None], horizon, axis=1)


def seasonal_naive(y: np.ndarray, origins: np.ndarray, horizon: int, season: int) -> np.ndarray:
    m = max(1, int(season))
    h = np.arange(horizon)
    idx = origins[:, None] + h[None, :] - m * (h[None, :] // m + 1)
    return np.asarray(y, np.float64)[idx]


# ----------------------------------------------------------------------------- statsforecast
def trailing_rows(seasons) -> int:
    """History handed to Theta/MSTL at each origin: 20 longest seasons, at least 2000 rows."""
    return max(20 * max(seasons), 2000)


def mstl_refresh(seasons, origins: int) -> int:
    """Origins between two MSTL decompositions: at most the shortest season, about 100 decompositions in all."""
    return int(max(1, min(min(seasons), -(-origins // 100))))


def _rolling_forward(model, z: np.ndarray, origins: np.ndarray, horizon: int, window: int | None) -> np.ndarray:
    out = np.empty((len(origins), horizon))
    for i, t in enumerate(origins):
        start = 0 if window is None else max(0, t - window)
        out[i] = model.forward(z[start:t], h=horizon)["mean"]
    return out


def _mstl_rolling(z, fit_end, origins, horizon, seasons) -> tuple[np.ndarray, str]:
    """MSTL fit on ``z[:fit_end]``; at each refresh the trailing rows are decomposed again."""
    from statsforecast.models import MSTL, AutoETS
    from statsforecast.mstl import mstl

    usable = sorted(m for m in seasons if 1 < m and 2 * m < fit_end) or [1]
    model = MSTL(season_length=usable if len(usable) > 1 else usable[0], trend_forecaster=AutoETS(model="ZZN"))
    model.fit(z[:fit_end])
    trend = model.trend_forecaster
    window = trailing_rows(usable)
    refresh = mstl_refresh(usable, len(origins))
    out = np.empty((len(origins), horizon))
    block_start, seasonal = None, None
    for i, t in enumerate(origins):
        if block_start is None or t - block_start >= refresh:
            block_start = int(t)
            start = max(0, t - window)
            parts = mstl(z[start:t], period=usable if len(usable) > 1 else usable[0])
            columns = [c for c in parts.columns if c.startswith("seasonal")]
            span = t + refresh + horizon - start  # rows this block's origins can reach
            seasonal = np.zeros(span)
            for column, m in zip(columns, usable if len(columns) > 1 else usable[:1]):
                component = parts[column].to_numpy()
                known = len(component)
                extended = np.empty(span)
                extended[:known] = component
                cycle = component[known - m :]
                for r in range(known, span):
                    extended[r] = cycle[(r - known) % m]
                seasonal += extended
            block_origin = start
        rel = t - block_origin
        adjusted = z[block_origin:t] - seasonal[:rel]
        mean = trend.forward(adjusted, h=horizon)["mean"]
        out[i] = mean + seasonal[rel : rel + horizon]
    return out, f"MSTL(season_length={usable}, trend AutoETS(ZZN)), decomposition refreshed every {refresh} origins"


def _fit_baseline(name: str, z: np.ndarray, fit_end: int, origins: np.ndarray, horizon: int, seasons):
    """``(forecasts [N, H] on the transformed scale, description)``, or ``(None, reason)``."""
    shortest = min(seasons)
    season = shortest if shortest > 1 and 2 * shortest < fit_end else 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _fit_quietly(name, z, fit_end, origins, horizon, seasons, season)
    except Exception as err:  # noqa: BLE001 - a baseline that cannot fit this series is reported, not fatal
        return None, f"failed: {err.__class__.__name__}: {str(err)[:120]}"


def _fit_quietly(name, z, fit_end, origins, horizon, seasons, season):
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta

    if name == "mstl":
        if max(seasons) < 2:
            return None, "no season"
        return _mstl_rolling(z, fit_end, origins, horizon, seasons)
    if name == "auto_ets":
        model = AutoETS(season_length=season).fit(z[:fit_end])
        description = f"AutoETS {model.model_['method']} (season {season})"
        return _rolling_forward(model, z, origins, horizon, None), description
    if name == "auto_theta":
        model = AutoTheta(season_length=season).fit(z[:fit_end])
        description = f"AutoTheta (season {season})"
        return _rolling_forward(model, z, origins, horizon, trailing_rows(seasons)), description
    if name == "auto_arima":
        if fit_end > ARIMA_MAX_ROWS or season > 52:
            return None, f"skipped: {fit_end} rows / season {season} (AutoARIMA runs up to {ARIMA_MAX_ROWS} rows, season 52)"
        model = AutoARIMA(season_length=season).fit(z[:fit_end])
        order = model.model_.get("arma") if isinstance(model.model_, dict) else None
        return _rolling_forward(model, z, origins, horizon, None), f"AutoARIMA (season {season}, arma {order})"
    raise ValueError(f"unknown baseline {name!r}")


def _cache_key(name, z, fit_end, origins, horizon, seasons) -> str:
    digest = hashlib.sha256()
    for part in (CACHE_VERSION, name, fit_end, horizon, tuple(seasons)):
        digest.update(repr(part).encode())
    digest.update(np.ascontiguousarray(z, np.float64).tobytes())
    digest.update(np.ascontiguousarray(origins, np.int64).tobytes())
    return digest.hexdigest()[:20]


def statsforecast_baselines(y, fit_end: int, origins: np.ndarray, horizon: int, seasons, transform: str,
                            names, cache_dir: Path | None = None) -> tuple[dict, dict]:
    """``({name: forecasts [N, H] in series units}, {name: description})`` for the requested baselines.

    Args:
        y: the whole series (raw values).
        fit_end: rows ``[0, fit_end)`` fit the models (everything before the test part).
        origins: forecast origins (each forecasts rows ``t .. t+H-1`` from rows before ``t``).
        horizon: H.
        seasons: the model's seasons (MSTL uses all, ETS/Theta/ARIMA the shortest).
        transform: the model's transform; the baselines run on that scale.
        names: which of :data:`STATSFORECAST_BASELINES`.
        cache_dir: where fitted forecasts are cached (None: no cache).
    """
    z = apply_transform(np.asarray(y, np.float64), transform)
    forecasts, descriptions = {}, {}
    for name in names:
        if name not in STATSFORECAST_BASELINES:
            continue
        key = _cache_key(name, z, fit_end, origins, horizon, seasons)
        cached = Path(cache_dir) / f"{name}-{key}.npz" if cache_dir is not None else None
        if cached is not None and cached.is_file():
            try:
                with np.load(cached) as stored:
                    forecasts[name] = invert_transform(stored["forecast"], transform)
                    descriptions[name] = str(stored["description"]) + " (cached)"
                continue
            except (OSError, ValueError, KeyError):
                log.debug("ignoring the unreadable baseline cache %s", cached)
        started = time.time()
        forecast, description = _fit_baseline(name, z, fit_end, origins, horizon, seasons)
        descriptions[name] = description
        if forecast is None or not np.all(np.isfinite(forecast)):
            if forecast is not None:
                descriptions[name] = description + ": non-finite forecasts, left out"
            log.info("baseline %s: %s", name, descriptions[name])
            continue
        log.info("baseline %s: %s in %.1fs", name, description, time.time() - started)
        forecasts[name] = invert_transform(forecast, transform)
        if cached is not None:
            _write_cache(cached, forecast, description)
    return forecasts, descriptions


def _write_cache(path: Path, forecast: np.ndarray, description: str) -> None:
    """Best effort: a read-only or full model directory just means no cache."""
    import io

    from tasks.common.io import write_bytes_atomic

    buffer = io.BytesIO()
    np.savez(buffer, forecast=forecast, description=np.array(description))
    try:
        write_bytes_atomic(path, buffer.getvalue())
    except OSError as err:
        log.debug("baseline cache not written (%s)", err)
