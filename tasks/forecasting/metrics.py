"""Point and quantile forecast metrics over rolling origins (arrays ``[origins, H]``).

* MAE, RMSE in the series' units;
* sMAPE in percent, ``200 * |F - Y| / (|F| + |Y|)`` (0 when both are 0), range 0..200;
* MASE = MAE / ``scale``, where ``scale`` is the in-sample MAE of the seasonal naive forecast
  (lag ``season``, lag 1 for a non-seasonal series) on the part before the test rows
  (Hyndman & Koehler 2006; the M4 definition).
"""

from __future__ import annotations

import numpy as np


def mase_scale(y_insample: np.ndarray, season: int) -> float:
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
