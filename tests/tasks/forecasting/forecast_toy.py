"""Generated series: a monthly CSV with a covariate, and a Jena-climate-format CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def seasonal_series(n: int, period: int = 12, seed: int = 0, trend: float = 0.02) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 10 + trend * t + 3 * np.sin(2 * np.pi * t / period) + rng.normal(0, 0.3, n)


def write_monthly_csv(path: Path, n: int = 240, seed: int = 0) -> Path:
    """``date,sales,temp``: monthly from 1990-01, yearly season, temp = a leading covariate."""
    rng = np.random.default_rng(seed + 1)
    t = np.arange(n)
    df = pd.DataFrame(
        {
            "date": pd.date_range("1990-01-01", periods=n, freq="MS").strftime("%Y-%m-%d"),
            "sales": seasonal_series(n, seed=seed).round(4),
            "temp": (np.cos(2 * np.pi * t / 12) + rng.normal(0, 0.1, n)).round(4),
        }
    )
    df.to_csv(path, index=False)
    return path


def write_jena_csv(path: Path, n: int = 2 * 144 * 3, drop_rows=(), duplicate_rows=(), blank=None) -> Path:
    """The Jena climate layout: ``"Date Time"`` as ``01.01.2009 00:10:00``, every 10 minutes."""
    t = np.arange(n)
    times = pd.date_range("2009-01-01 00:10:00", periods=n, freq="10min")
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "Date Time": times.strftime("%d.%m.%Y %H:%M:%S"),
            "p (mbar)": (996 + np.sin(2 * np.pi * t / 1000) + rng.normal(0, 0.05, n)).round(2),
            "T (degC)": (-8 + 4 * np.sin(2 * np.pi * t / 144) + rng.normal(0, 0.1, n)).round(2),
            "rh (%)": (90 + 5 * np.cos(2 * np.pi * t / 144)).round(1),
        }
    )
    if blank is not None:
        row, col = blank
        df.loc[row, col] = np.nan
    df = pd.concat([df, df.iloc[list(duplicate_rows)]]).sort_index(kind="stable") if duplicate_rows else df
    df = df.drop(index=list(drop_rows))
    df.to_csv(path, index=False)
    return path
