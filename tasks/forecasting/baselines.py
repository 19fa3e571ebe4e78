"""Baselines forecast from the same rolling origins as the model.

* last value: ``y[t-1]`` for every step;
* seasonal naive: ``y[t+h - m*(floor(h/m)+1)]`` (the value one season earlier);
* ETS: statsmodels Holt-Winters exponential smoothing. Every additive form (trend none /
  additive / damped x season none / additive) is fit by maximum likelihood on the rows before
  the test part, the lowest-AIC form is kept, and its smoothing parameters are frozen; the
  states (level, trend, seasonals) are then updated through the test rows with those
  parameters, and at each origin the H-step forecast is computed from the states observed up
  to ``t-1``. This is rolling-origin evaluation with parameters fit once (no refit per
  origin, so it takes seconds). ETS is fit on the same transformed scale as the model
  (``--transform``) and its forecasts are transformed back.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings

import numpy as np

from tasks.forecasting.data import apply_transform, invert_transform

log = logging.getLogger(__name__)


def last_value(y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    return np.repeat(np.asarray(y, np.float64)[origins - 1][:, None], horizon, axis=1)


def seasonal_naive(y: np.ndarray, origins: np.ndarray, horizon: int, season: int) -> np.ndarray:
    m = max(1, int(season))
    h = np.arange(horizon)
    idx = origins[:, None] + h[None, :] - m * (h[None, :] // m + 1)
    return np.asarray(y, np.float64)[idx]


@dataclasses.dataclass
class ETSFit:
    trend: str | None
    damped: bool
    seasonal: str | None
    season: int
    aic: float
    params: dict

    @property
    def name(self) -> str:
        t = {None: "N", "add": "A"}[self.trend] + ("d" if self.damped else "")
        s = {None: "N", "add": "A"}[self.seasonal]
        return f"ETS(A,{t},{s})" + (f" m={self.season}" if self.seasonal else "")


def _candidates(n: int, season: int):
    out = [(None, False, None)]
    if n >= 10:
        out += [("add", False, None), ("add", True, None)]
    if season > 1 and n >= 2 * season + 10:
        out += [(None, False, "add")]
        if n >= 2 * season + 12:
            out += [("add", False, "add"), ("add", True, "add")]
    return out


def fit_ets(z: np.ndarray, season: int) -> ETSFit | None:
    """Lowest-AIC additive Holt-Winters model of ``z`` (already transformed)."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    best = None
    for trend, damped, seasonal in _candidates(len(z), season):
        started = time.time()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = ExponentialSmoothing(
                    z,
                    trend=trend,
                    damped_trend=damped,
                    seasonal=seasonal,
                    seasonal_periods=season if seasonal else None,
                    initialization_method="estimated",
                ).fit()
        except (ValueError, np.linalg.LinAlgError) as err:  # pragma: no cover - data dependent
            log.debug("ETS %s/%s/%s failed: %s", trend, damped, seasonal, err)
            continue
        aic = float(res.aic)
        fit = ETSFit(trend, damped, seasonal, season, aic, dict(res.params))
        log.debug("%s aic %.1f (%.1fs)", fit.name, aic, time.time() - started)
        if np.isfinite(aic) and (best is None or aic < best.aic):
            best = fit
    return best


def ets_forecasts(z: np.ndarray, fit: ETSFit, origins: np.ndarray, horizon: int) -> np.ndarray:
    """H-step forecasts (transformed scale) from each origin with the frozen parameters of ``fit``."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    p, m = fit.params, fit.season
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ExponentialSmoothing(
            z,
            trend=fit.trend,
            damped_trend=fit.damped,
            seasonal=fit.seasonal,
            seasonal_periods=m if fit.seasonal else None,
            initialization_method="known",
            initial_level=p["initial_level"],
            initial_trend=p["initial_trend"] if fit.trend else None,
            initial_seasonal=p["initial_seasons"] if fit.seasonal else None,
        )
        res = model.fit(
            smoothing_level=p["smoothing_level"],
            smoothing_trend=p["smoothing_trend"] if fit.trend else None,
            smoothing_seasonal=p["smoothing_seasonal"] if fit.seasonal else None,
            damping_trend=p["damping_trend"] if fit.damped else None,
            optimized=False,
        )
    level = np.asarray(res.level)
    trend = np.asarray(res.trend) if fit.trend else np.zeros_like(level)
    phi = float(p["damping_trend"]) if fit.damped else 1.0
    h = np.arange(1, horizon + 1)
    damp = np.cumsum(phi**h)
    prev = origins - 1  # states after observing y[t-1]
    out = level[prev][:, None] + damp[None, :] * trend[prev][:, None]
    if fit.seasonal:
        season = np.asarray(res.season)
        out = out + season[prev[:, None] + h[None, :] - m * ((h[None, :] - 1) // m + 1)]
    return out


def ets_baseline(y: np.ndarray, fit_end: int, origins: np.ndarray, horizon: int, season: int, transform: str):
    """``(forecasts [N, H] in the series' units, ETSFit)``; ``(None, None)`` if no form could be fit."""
    z = apply_transform(np.asarray(y, np.float64), transform)
    started = time.time()
    fit = fit_ets(z[:fit_end], season)
    if fit is None:
        log.warning("ETS: no exponential smoothing model could be fit; ETS metrics omitted")
        return None, None
    forecast = invert_transform(ets_forecasts(z, fit, origins, horizon), transform)
    log.info("ETS baseline %s (AIC %.1f) in %.1fs", fit.name, fit.aic, time.time() - started)
    return forecast, fit
