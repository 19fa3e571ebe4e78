"""Frequencies, seasons and calendar inputs: what the sampling frequency and the training rows say.

Seasons: calendar candidates of the frequency (hourly: day 24, week 168, year 8766 ...) are
kept when the training part's autocorrelation confirms them (:func:`detect_seasons`).
Calendar inputs (:func:`calendar_features`) are sin/cos of the hour of day, day of week and
day of year (and holiday flags with ``--country``): known for every future step, so they are
fed for the forecast horizon too. Also the defaults that follow from them (horizon, lookback,
the hybrid model's season and the real history its windows need).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from tasks.common.errors import UserError

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- frequency
def _offset(freq: str | None):
    if not freq:
        return None
    from pandas.tseries.frequencies import to_offset

    try:
        return to_offset(freq)
    except (ValueError, TypeError):
        return None


def fixed_step(freq: str | None) -> pd.Timedelta | None:
    """The step of a fixed-length frequency (minutes, hours, days), None for calendar ones.

    ``Day`` is a ``Tick`` in pandas 2 but a calendar-day offset in pandas 3, so it is matched by
    name here; every other fixed step is a ``Tick`` in both.
    """
    off = _offset(freq)
    if off is None:
        return None
    if type(off).__name__ == "Day":
        return pd.Timedelta(days=off.n)
    if isinstance(off, pd.offsets.Tick):
        return pd.Timedelta(off)
    return None


def _base_freq(freq: str | None) -> str | None:
    """``Y``, ``Q``, ``M``, ``W``, ``B``, ``D`` (one day), ``tick`` (any other fixed step) or None."""
    off = _offset(freq)
    if off is None:
        return None
    name = type(off).__name__
    if name.startswith(("YearBegin", "YearEnd", "BYear")):
        return "Y"
    if name.startswith(("QuarterBegin", "QuarterEnd", "BQuarter")):
        return "Q"
    if name.startswith(("MonthBegin", "MonthEnd", "BMonth", "SemiMonth")):
        return "M" if off.n == 1 else None
    if name == "Week":
        return "W" if off.n == 1 else None
    if name == "BusinessDay":
        return "B" if off.n == 1 else None
    step = fixed_step(freq)
    if step is None:
        return None
    return "D" if step == pd.Timedelta(days=1) else "tick"


def _steps_per_day(freq: str | None) -> int | None:
    """Whole number of steps per day of a sub-daily frequency (hourly 24, 30 min 48), else None."""
    step = fixed_step(freq)
    if step is None or step >= pd.Timedelta(days=1):
        return None
    per_day = pd.Timedelta(days=1) / step
    return int(round(per_day)) if abs(per_day - round(per_day)) < 1e-9 else None


def calendar_seasons(freq: str | None) -> list[int]:
    """Calendar season candidates of a sampling frequency, shortest first.

    Sub-daily: day, week, year in steps (hourly 24, 168, 8766); daily 7, 365; business daily
    5, 261; weekly 52; monthly 12; quarterly 4; yearly and irregular: none.
    """
    base = _base_freq(freq)
    per_day = _steps_per_day(freq)
    if per_day is not None and per_day >= 2:
        return [per_day, 7 * per_day, int(round(365.25 * per_day))]
    return {"D": [7, 365], "B": [5, 261], "W": [52], "M": [12], "Q": [4]}.get(base, [])


# M4 competition horizons by sampling frequency; hourly: one day ahead
_HORIZON_BY_FREQ = {"Y": 6, "Q": 8, "M": 18, "W": 13, "D": 14, "B": 10}


def default_horizon(freq: str | None) -> int:
    base = _base_freq(freq)
    if base in _HORIZON_BY_FREQ:
        return _HORIZON_BY_FREQ[base]
    step = fixed_step(freq)
    if step is None:
        return 8
    if step > pd.Timedelta(days=1):
        return 8
    if step >= pd.Timedelta(minutes=30):
        return max(1, int(pd.Timedelta(days=1) / step))
    return max(1, int(pd.Timedelta(hours=6) / step))


def default_lookback(seasons, horizon: int, train_rows: int, padded: bool = False) -> int:
    """Two of the shortest season (and at least two horizons, 16 steps), capped so the train part
    keeps windows (``padded``: not capped by the data, short histories are padded instead)."""
    season = min(seasons) if seasons else 1
    lookback = max(2 * season, 2 * horizon, 16)
    cap = 512 if padded else max(4, (train_rows - horizon) // 4)
    return int(min(lookback, cap, 512))


def default_min_history(seasons, lookback: int) -> int:
    """Real rows a hybrid model's window needs: one season (at least 4), the rest padded."""
    return int(min(lookback, max(hybrid_season(seasons, lookback), 4)))


def _acf(y: np.ndarray, max_lag: int) -> np.ndarray:
    from scipy.signal import detrend
    from statsmodels.tsa.stattools import acf

    return acf(detrend(y), nlags=max_lag, fft=True)


def detect_seasons(y: np.ndarray, freq: str | None) -> tuple[tuple[int, ...], str]:
    """``(seasons, how)`` from the training part ``y``.

    Every calendar candidate of the frequency (:func:`calendar_seasons`) that fits twice in
    ``y`` is kept if the autocorrelation of the linearly detrended series has a local peak
    within 5% of it above ``max(3/sqrt(n), 0.2)``; if none is confirmed, the strongest peak
    (its first harmonic if nearly as strong) is the season; no peak -> ``(1,)``.
    """
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    candidates = calendar_seasons(freq)
    if n < 8 or np.std(y) == 0:
        return ((candidates[0],) if candidates else (1,)), ("frequency" if candidates else "none")
    max_lag = int(min(n // 2 - 1, max([n // 3, *[m + m // 20 + 1 for m in candidates if 2 * m <= n]])))
    if max_lag < 3:
        return ((candidates[0],) if candidates else (1,)), ("frequency" if candidates else "none")
    if max_lag > 1000:  # only the calendar candidates need lags this long: look at them alone
        r = _acf(y, max_lag)
        peaks = []
        for m in candidates:
            tol = max(1, m // 20)
            lo, hi = max(2, m - tol - 1), min(len(r) - 2, m + tol + 1)
            peaks += [k for k in range(lo, hi + 1) if r[k] > r[k - 1] and r[k] >= r[k + 1]]
        short = r[: 1001]
        peaks += [k for k in range(2, len(short) - 1) if short[k] > short[k - 1] and short[k] >= short[k + 1]]
    else:
        r = _acf(y, max_lag)
        peaks = [k for k in range(2, len(r) - 1) if r[k] > r[k - 1] and r[k] >= r[k + 1]]
    threshold = max(3.0 / np.sqrt(n), 0.2)
    peaks = sorted({k for k in peaks if r[k] > threshold})
    confirmed = [m for m in candidates if m <= max_lag and any(abs(k - m) <= max(1, m // 20) for k in peaks)]
    if confirmed:
        return tuple(confirmed), "frequency+acf"
    best = max(peaks, key=lambda k: r[k]) if peaks else None
    first = candidates[0] if candidates else None
    if first and first <= max_lag and best is None and r[first] > 0:
        return (first,), "frequency"
    if best is not None:
        for div in (3, 2):  # prefer the first harmonic: a peak at k/2, k/3 nearly as strong as k
            for k in peaks:
                if abs(k * div - best) <= 1 and r[k] >= 0.8 * r[best]:
                    best = k
        return (best,), "acf"
    if first and first <= max_lag:
        return (first,), "frequency"
    return (1,), "none"


def hybrid_season(seasons, lookback: int) -> int:
    """The hybrid model's profile period: the shortest season > 1 that fits twice in the window, else 1."""
    fitting = [m for m in sorted(seasons) if 1 < m and 2 * m <= lookback]
    return fitting[0] if fitting else 1


def seasonal_lags(seasons, horizon: int, train_rows: int) -> tuple[int, ...]:
    """Lags whose values are known for every forecast step: each season rounded up to cover the horizon.

    Lags longer than half the training rows are left out (too few windows would reach them).
    """
    lags = []
    for m in sorted(set(seasons)):
        if m < 2:
            continue
        lag = m * -(-horizon // m)
        if lag <= train_rows // 2 and lag not in lags:
            lags.append(lag)
    return tuple(lags)


# ----------------------------------------------------------------------------- calendar inputs
def calendar_names(freq: str | None, country: str | None, yearly: bool = True) -> tuple[str, ...]:
    """Calendar inputs that vary at this frequency: hour of day below a day, day of week at a day
    and below, day of year at a week and below (only when ``yearly``: the training part covers a
    year, else the test months may be ones it never saw); ``holiday`` with ``--country``."""
    base = _base_freq(freq)
    step = fixed_step(freq)
    names: list[str] = []
    if step is not None and step < pd.Timedelta(days=1):
        names += ["hour_sin", "hour_cos"]
    if base in ("D", "B") or (step is not None and step < pd.Timedelta(days=1)):
        names += ["weekday_sin", "weekday_cos"]
    if yearly and (base in ("D", "B", "W") or (step is not None and step < pd.Timedelta(days=1))):
        names += ["yearday_sin", "yearday_cos"]
    if country and base in ("D", "B", "tick"):
        names += ["holiday"]
    return tuple(names)


def calendar_features(index, names, country: str | None = None) -> np.ndarray:
    """``[N, len(names)]`` calendar inputs of the timestamps ``index`` (see :func:`calendar_names`)."""
    if not names:
        return np.zeros((len(index), 0), np.float32)
    index = pd.DatetimeIndex(index)
    day = (index.hour.to_numpy() * 3600 + index.minute.to_numpy() * 60 + index.second.to_numpy()) / 86400.0
    angle = {
        "hour": 2 * np.pi * day,
        "weekday": 2 * np.pi * (index.dayofweek.to_numpy() + day) / 7.0,
        "yearday": 2 * np.pi * (index.dayofyear.to_numpy() - 1 + day) / 365.25,
    }
    columns = []
    for name in names:
        if name == "holiday":
            columns.append(holiday_flags(index, country))
            continue
        kind, fn = name.rsplit("_", 1)
        columns.append(np.sin(angle[kind]) if fn == "sin" else np.cos(angle[kind]))
    return np.stack(columns, axis=1).astype(np.float32)


def holiday_flags(index: pd.DatetimeIndex, country: str | None) -> np.ndarray:
    """1.0 on the public holidays of ``country`` (``holidays`` package), else 0.0."""
    import holidays

    try:
        calendar = holidays.country_holidays(country, years=range(index.year.min(), index.year.max() + 2))
    except (NotImplementedError, KeyError, AttributeError):
        raise UserError(f"--country {country!r}: not a country code the holidays package knows (e.g. US, DE, FR)") from None
    dates = pd.Index(index.date)
    return np.asarray(dates.isin(list(calendar.keys())), np.float64)


