"""Splits and windows: which rows train, validate and test, and the model's inputs cut from them.

Every row of a series becomes a model row (:func:`model_rows`: encoder inputs, future-step
inputs, the scaled level); a forecast origin ``t`` takes the ``L`` rows before it as the window
and the changes of the level over rows ``t .. t+H-1`` as the target, the same in NumPy
(:func:`window_arrays`: evaluate, export, predict) and ``tf.data`` (:func:`window_dataset`:
training). Short histories are padded by repeating the first season (:func:`pad_rows`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from tasks.common.errors import UserError

from tasks.forecasting.artifacts import Scaler
from tasks.forecasting.config import DataConfig, ModelConfig
from tasks.forecasting.loading import Series, format_time
from tasks.forecasting.seasons import calendar_features, hybrid_season
from tasks.forecasting.transforms import check_transform, forward

MIN_TRAIN_WINDOWS = 8

# ----------------------------------------------------------------------------- splits
@dataclasses.dataclass(frozen=True)
class Split:
    """Row boundaries: train ``[0, train_end)``, val ``[train_end, val_end)``, test ``[val_end, n)``."""

    n: int
    train_end: int
    val_end: int

    @classmethod
    def of(cls, n: int, test_fraction: float, val_fraction: float, test_rows: int | None = None,
           val_rows: int | None = None) -> "Split":
        """Fractions of ``n`` rows, or (``test_rows`` / ``val_rows``) exact row counts."""
        if not 0 < test_fraction < 1 or not 0 <= val_fraction < 1 or test_fraction + val_fraction >= 1:
            raise UserError(
                f"--test-fraction {test_fraction} and --val-fraction {val_fraction} must be in (0, 1) with sum < 1"
            )
        n_test = test_rows if test_rows is not None else int(round(test_fraction * n))
        n_val = val_rows if val_rows is not None else int(round(val_fraction * n))
        return cls(n, n - n_test - n_val, n - n_test)

    @classmethod
    def for_data(cls, n: int, data: DataConfig) -> "Split":
        return cls.of(n, data.test_fraction, data.val_fraction, data.test_rows, data.val_rows)

    def origins(self, part: str, lookback: int, horizon: int) -> tuple[int, int]:
        """Inclusive range ``(first, last)`` of forecast origins whose H targets lie in ``part``.

        An origin ``t`` forecasts rows ``t .. t+H-1`` from the window of differences of rows
        ``t-L-1 .. t-1`` (inputs may reach back into earlier parts, targets never do).
        ``lookback`` is the history an origin needs (:func:`history`: the window or the
        longest seasonal lag).
        """
        lo, hi = {"train": (0, self.train_end), "val": (self.train_end, self.val_end), "test": (self.val_end, self.n)}[part]
        return max(lo, lookback + 1), hi - horizon

    def count(self, part: str, lookback: int, horizon: int) -> int:
        first, last = self.origins(part, lookback, horizon)
        return max(0, last - first + 1)


def history(model: ModelConfig) -> int:
    """Real rows an origin needs before it: the lookback (or ``min_history`` when short windows
    are padded), or the longest seasonal lag."""
    return max([model.min_history or model.lookback, *model.lags])


def padding(model: ModelConfig) -> int:
    """Rows put before the first row so that a window may start before the series (:func:`pad_rows`)."""
    return max(0, model.lookback - history(model))


def pad_rows(rows: np.ndarray, count: int, season: int) -> np.ndarray:
    """``count`` rows before ``rows``, repeating its first season backwards (its first row if the
    season is 1), so a short series' windows carry its own seasonal shape, not zeros."""
    if count <= 0:
        return rows
    season = max(1, min(season, len(rows)))
    return np.concatenate([rows[np.arange(-count, 0) % season], rows])


def check_length(series: Series, split: Split, reach: int, horizon: int, val_fraction: float,
                 panel: bool = False) -> None:
    """A clear error if the series cannot give training/validation/test windows (``panel``: a series of
    an ``--id-col`` file, whose model learns and validates on the others too, needs a test window only)."""
    wants_val = not panel and val_fraction > 0 and split.val_end > split.train_end
    need = {"train": 0 if panel else MIN_TRAIN_WINDOWS, "val": 1 if wants_val else 0, "test": 1}
    short = [p for p, k in need.items() if split.count(p, reach, horizon) < k]
    if not short:
        return
    n = len(series)
    minimum = n
    while minimum < 10**7:
        minimum = max(minimum + 1, int(minimum * 1.05))
        s = Split.of(minimum, (split.n - split.val_end) / split.n, (split.val_end - split.train_end) / split.n)
        if all(s.count(p, reach, horizon) >= k for p, k in need.items()):
            break
    raise UserError(
        f"{series.source}: column {series.target!r} is too short: {n} rows (last row {n}, "
        f"{format_time(series.index[-1], series.freq)}) leave {split.count('train', reach, horizon)} "
        f"train / {split.count('val', reach, horizon)} val / {split.count('test', reach, horizon)} "
        f"test windows for a history of {reach} + horizon {horizon}; need about {minimum} rows, or a "
        f"smaller --lookback/--horizon/--seasons"
    )


# ----------------------------------------------------------------------------- model rows and windows
def encoder_features(series: Series, scaler: Scaler, model: ModelConfig, country: str | None) -> np.ndarray:
    """Encoder inputs for every row ``[N, F]``: target difference (row 0: 0), covariates, calendar."""
    values = np.asarray(series.values, np.float64)
    ty = forward(values[:, 0], scaler.transform)
    if model.hybrid == "on":  # the model normalises the level path itself
        cols = [(ty / scaler.target_scale)[:, None]]
    else:
        cols = [(np.concatenate([[0.0], np.diff(ty)]) / scaler.diff_scale)[:, None]]
    if values.shape[1] > 1:
        cols.append((values[:, 1:] - np.array(scaler.feature_mean)) / np.array(scaler.feature_std))
    if model.row_calendar:
        cols.append(calendar_features(series.index, model.row_calendar, country))
    return np.concatenate(cols, axis=1).astype(np.float32)


def model_rows(series: Series, scaler: Scaler, model: ModelConfig, country: str | None) -> np.ndarray:
    """Everything the windows are cut from, one row per time step ``[N, F + G + 1]``.

    Columns: the encoder inputs (:func:`encoder_features`), the future-step inputs (calendar of the
    row, then for each seasonal lag the level ``lag`` rows earlier), and the scaled level.
    """
    level = scaler.level(series.y)
    columns = [encoder_features(series, scaler, model, country)]
    calendar = [name for name in model.future_features if not name.startswith("lag_")]
    if calendar:
        columns.append(calendar_features(series.index, tuple(calendar), country))
    for lag in model.lags:
        lagged = np.full(len(level), np.nan)
        lagged[lag:] = level[:-lag]
        columns.append(lagged[:, None])
    columns.append(level[:, None])
    rows = np.nan_to_num(np.concatenate(columns, axis=1).astype(np.float32))
    return pad_rows(rows, padding(model), hybrid_season(model.seasons, model.lookback))


def _cut(window, model: ModelConfig, lookback: int):
    """One window of :func:`model_rows` rows ``t-L .. t+H-1`` -> ``(inputs, target)``."""
    num_features, num_future, num_lags = model.num_features, model.num_future, len(model.lags)
    last_level = window[..., lookback - 1 : lookback, -1:]
    x = window[..., :lookback, :num_features]
    target = window[..., lookback:, -1] - last_level[..., 0]
    if not num_future:
        return x, target
    future = window[..., lookback:, num_features : num_features + num_future]
    if num_lags:
        calendar = future[..., : num_future - num_lags]
        lags = future[..., num_future - num_lags :] - last_level
        future = np.concatenate([calendar, lags], -1) if isinstance(window, np.ndarray) else _tf_concat(calendar, lags)
    return (x, future), target


def _tf_concat(a, b):
    import tensorflow as tf

    return tf.concat([a, b], axis=-1)


def window_dataset(rows: np.ndarray, first: int, last: int, model: ModelConfig, *, batch_size: int = 32,
                   shuffle: bool = False, seed: int | None = None):
    """``tf.data`` of ``(inputs, y [B, H])`` for origins ``first..last`` (inclusive).

    ``inputs`` is the window ``x [B, L, F]`` (rows ``t-L .. t-1``), plus ``future [B, H, G]``
    when the model has future-step inputs; ``y[h] = level[t+h] - level[t-1]``.
    """
    import keras
    import tensorflow as tf

    if last < first:
        raise ValueError(f"no origins in [{first}, {last}]")
    lookback, horizon, pad = model.lookback, model.horizon, padding(model)
    data = rows[first + pad - lookback : last + pad + horizon]
    ds = keras.utils.timeseries_dataset_from_array(
        data, None, sequence_length=lookback + horizon, batch_size=batch_size, shuffle=shuffle, seed=seed
    )
    return ds.map(lambda w: _cut(w, model, lookback), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def window_arrays(rows: np.ndarray, origins, model: ModelConfig):
    """``(inputs, y)`` of :func:`window_dataset` as numpy arrays for the given origins."""
    origins = np.asarray(origins) + padding(model)
    span = np.arange(-model.lookback, model.horizon)
    windows = rows[origins[:, None] + span[None, :]]
    return _cut(windows, model, model.lookback)


def extend_for_prediction(series: Series, times) -> Series:
    """``series`` with ``len(times)`` future rows appended (values: the last row's), so the
    future-step inputs (calendar, seasonal lags) of a forecast from the end can be built."""
    values = np.concatenate([series.values, np.repeat(series.values[-1:], len(times), axis=0)])
    if series.has_dates:
        index = series.index.append(pd.DatetimeIndex(times))
    else:
        index = pd.Index(np.concatenate([np.asarray(series.index, np.float64), np.asarray(times, np.float64)]))
    return dataclasses.replace(series, values=values, index=index, lines=None)


def as_list(inputs) -> list:
    return list(inputs) if isinstance(inputs, tuple) else [inputs]


def fit_scaler(series, train_end: int, transform: str, scale: str = "std", season: int = 1):
    """:class:`Scaler` statistics of the training rows (a constant series keeps scale 1).

    ``scale``: ``std`` divides the transformed target by its standard deviation, ``mase`` by its
    in-sample seasonal-naive MAE with lag ``season`` (so an MAE loss is the MASE)."""
    check_transform(series, transform)
    ty = forward(series.y[:train_end], transform)
    cov = series.values[:train_end, 1:]

    def safe(value):
        return float(value) if np.isfinite(value) and value > 1e-12 else 1.0

    lag = season if 1 < season < len(ty) - 1 else 1
    target_scale = np.std(ty) if scale == "std" else np.mean(np.abs(ty[lag:] - ty[:-lag])) if len(ty) > lag else 1.0
    return Scaler(
        transform=transform,
        target_scale=safe(target_scale),
        diff_scale=safe(np.std(np.diff(ty))),
        feature_mean=[float(v) for v in cov.mean(0)] if cov.shape[1] else [],
        feature_std=[safe(v) for v in cov.std(0)] if cov.shape[1] else [],
    )
