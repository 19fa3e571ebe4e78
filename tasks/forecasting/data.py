"""Time series in, clean regular series out: CSV, Jena climate CSV and statsmodels datasets.

* ``--data FILE.csv --target COL [--time-col COL] [--features a,b]``: any CSV with a header
  (comma, semicolon or tab separated). The time column is ``--time-col``, else ``Date Time``
  (Jena climate, ``01.01.2009 00:10:00`` day-first), else a column called date/time/
  timestamp/ds/year/..., else the first column if it parses as dates, else the row number.
* ``--data statsmodels:co2`` (also ``sunspots``, ``nile``, ``elnino``, ``macrodata``,
  ``danish_data``, ``interest_inflation``): the series that ship inside statsmodels, no
  download; each has a default target and transform (see :data:`DATASETS`).

Cleaning: rows are sorted by time (duplicates dropped with a warning), an optional
``--resample RULE`` (e.g. ``1h``) averages onto a coarser grid, the sampling frequency is
inferred and missing timestamps are inserted; missing values are then linearly interpolated
with a warning (``--on-missing interpolate``, default) or reported as an error
(``--on-missing fail``). A non-numeric value, an unknown column or a too-short series is a
:class:`~lstm_core.errors.UserError` naming the column and the row.

Windows (``keras.utils.timeseries_dataset_from_array``) are cut from the features of
:class:`Scaler`: the target enters the model as first differences of its (optionally sqrt/log
transformed) values divided by their train standard deviation, covariates as train z-scores,
and the model predicts the change of the scaled target from the last observed value. Every
statistic is fit on the training part only and stored in ``scaler.json``.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from lstm_core.errors import UserError

log = logging.getLogger(__name__)

ON_MISSING = ("interpolate", "fail")
TRANSFORMS = ("none", "sqrt", "log")
NA_TOKENS = {"", "na", "nan", "n/a", "null", "none", "-", "?", "#n/a"}
TIME_NAMES = ("date time", "datetime", "timestamp", "time", "date", "ds", "period", "year", "month")
JENA_TIME = re.compile(r"^\d{2}\.\d{2}\.\d{4} \d{2}:\d{2}(:\d{2})?$")
MIN_TRAIN_WINDOWS = 8


@dataclasses.dataclass
class DataConfig:
    """Where the series comes from and how it is cleaned and split (saved in config.json)."""

    data: str = "statsmodels:co2"
    target: str | None = None
    time_col: str | None = None
    features: list[str] = dataclasses.field(default_factory=list)
    on_missing: str = "interpolate"
    resample: str | None = None
    transform: str | None = None  # None: the dataset's default ("none" for CSV files)
    test_fraction: float = 0.2
    val_fraction: float = 0.1


# ----------------------------------------------------------------------------- the series
@dataclasses.dataclass
class Series:
    """A regular series: ``values[:, 0]`` is the target, ``values[:, 1:]`` the covariates."""

    source: str
    target: str
    features: list[str]
    index: pd.Index  # DatetimeIndex, or float index (row numbers / numeric time)
    values: np.ndarray  # [N, 1 + C] float64, no NaN
    freq: str | None = None  # pandas offset alias of a DatetimeIndex
    step: float | None = None  # spacing of a numeric index
    time_col: str | None = None
    default_transform: str = "none"
    lines: np.ndarray | None = None  # CSV line of every row (-1: inserted), for messages

    def __len__(self):
        return len(self.values)

    @property
    def y(self) -> np.ndarray:
        return self.values[:, 0]

    @property
    def columns(self) -> list[str]:
        return [self.target, *self.features]

    def where(self, row: int) -> str:
        """Human description of 0-based ``row``: ``row 18 (line 19, 1959-07-04)``."""
        parts = []
        if self.lines is not None and 0 <= row < len(self.lines) and self.lines[row] >= 0:
            parts.append(f"line {int(self.lines[row])}")
        parts.append(format_time(self.index[row], self.freq))
        return f"row {row + 1} ({', '.join(parts)})"

    def future_index(self, steps: int) -> list:
        """The ``steps`` timestamps after the last one."""
        last = self.index[-1]
        if isinstance(self.index, pd.DatetimeIndex):
            if self.freq is None:
                raise UserError(f"{self.source}: cannot extend the time axis, its frequency is unknown")
            return list(pd.date_range(last, periods=steps + 1, freq=self.freq)[1:])
        step = self.step or 1.0
        return [last + step * (i + 1) for i in range(steps)]


def format_time(value, freq: str | None = None) -> str:
    if isinstance(value, pd.Timestamp):
        if freq and freq.upper().startswith(("Y", "A", "BY", "BA")):
            return f"{value.year}"
        if value == value.normalize() and not _sub_daily(freq):
            return value.strftime("%Y-%m-%d")
        return value.strftime("%Y-%m-%d %H:%M:%S")
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _sub_daily(freq: str | None) -> bool:
    if not freq:
        return False
    from pandas.tseries.frequencies import to_offset

    try:
        off = to_offset(freq)
    except ValueError:
        return False
    return isinstance(off, pd.offsets.Tick) and pd.Timedelta(off) < pd.Timedelta(days=1)


# ----------------------------------------------------------------------------- statsmodels
@dataclasses.dataclass(frozen=True)
class StatsmodelsDataset:
    loader: Callable[[], pd.DataFrame]
    target: str
    transform: str = "none"
    description: str = ""


def _sm(name: str) -> pd.DataFrame:
    import statsmodels.api as sm

    return getattr(sm.datasets, name).load_pandas().data


def _yearly(df: pd.DataFrame, col: str) -> pd.DataFrame:
    idx = pd.DatetimeIndex(pd.to_datetime(df[col].astype(int).astype(str), format="%Y"), name=col.lower())
    return df.drop(columns=[col]).set_index(idx)


def _quarterly(df: pd.DataFrame) -> pd.DataFrame:
    idx = pd.PeriodIndex.from_fields(
        year=df["year"].astype(int), quarter=df["quarter"].astype(int), freq="Q"
    ).to_timestamp()
    return df.drop(columns=["year", "quarter"]).set_index(pd.DatetimeIndex(idx, name="quarter"))


def _co2():
    return _sm("co2")


def _sunspots():
    return _yearly(_sm("sunspots"), "YEAR")


def _nile():
    return _yearly(_sm("nile"), "year")


def _elnino():
    wide = _sm("elnino")
    months = [c for c in wide.columns if c != "YEAR"]
    long = wide.melt(id_vars="YEAR", value_vars=months, var_name="month", value_name="temperature")
    long["m"] = long["month"].map({m: i + 1 for i, m in enumerate(months)})
    long["date"] = pd.to_datetime(dict(year=long["YEAR"].astype(int), month=long["m"], day=1))
    return long.sort_values("date").set_index("date")[["temperature"]]


def _macrodata():
    return _quarterly(_sm("macrodata"))


def _interest_inflation():
    return _quarterly(_sm("interest_inflation"))


def _danish():
    return _sm("danish_data")


DATASETS: dict[str, StatsmodelsDataset] = {
    "co2": StatsmodelsDataset(_co2, "co2", "none", "weekly atmospheric CO2 (ppm), Mauna Loa 1958-2001"),
    "sunspots": StatsmodelsDataset(
        _sunspots, "SUNACTIVITY", "sqrt", "yearly sunspot numbers 1700-2008 (sqrt: the classic variance-stabilising transform)"
    ),
    "nile": StatsmodelsDataset(_nile, "volume", "none", "yearly Nile flow at Aswan 1871-1970"),
    "elnino": StatsmodelsDataset(_elnino, "temperature", "none", "monthly sea surface temperature (El Nino) 1950-2010"),
    "macrodata": StatsmodelsDataset(_macrodata, "realgdp", "log", "quarterly US macro data 1959-2009"),
    "danish_data": StatsmodelsDataset(_danish, "lrm", "none", "quarterly Danish money demand 1974-1987"),
    "interest_inflation": StatsmodelsDataset(
        _interest_inflation, "R", "none", "quarterly German interest rate and inflation 1972-1998"
    ),
}


# ----------------------------------------------------------------------------- reading
def _sniff_separator(path: Path) -> str:
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        header = fh.readline()
    counts = {sep: header.count(sep) for sep in (",", ";", "\t")}
    return max(counts, key=counts.get) if max(counts.values()) > 0 else ","


def read_csv(path: str | Path) -> tuple[pd.DataFrame, np.ndarray]:
    """All cells as stripped strings, plus the file line of each row (header = line 1)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        df = pd.read_csv(
            path,
            sep=_sniff_separator(path),
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            encoding="utf-8-sig",
        )
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise UserError(f"{path}: not a readable CSV file ({str(err).splitlines()[0]})") from None
    if df.shape[1] == 0 or len(df) == 0:
        raise UserError(f"{path}: no data rows")
    df.columns = [str(c).strip() for c in df.columns]
    lines = np.arange(len(df)) + 2
    df = df.apply(lambda col: col.str.strip())
    keep = ~(df == "").all(axis=1).to_numpy()
    return df[keep].reset_index(drop=True), lines[keep]


def _column(df: pd.DataFrame, name: str, what: str, source: str) -> str:
    if name in df.columns:
        return name
    folded = {c.lower(): c for c in df.columns}
    if name.lower() in folded:
        return folded[name.lower()]
    raise UserError(f"{source}: unknown {what} column {name!r}; columns are: {', '.join(map(str, df.columns))}")


def _guess_time_column(df: pd.DataFrame) -> str | None:
    lower = {str(c).lower(): c for c in df.columns}
    for name in TIME_NAMES:
        if name in lower:
            return lower[name]
    first = df.columns[0]
    sample = df[first].head(20)
    sample = sample[sample != ""]
    if len(sample) and pd.to_numeric(sample, errors="coerce").isna().all():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
        if parsed.notna().all():
            return first
    return None


def _numeric(df: pd.DataFrame, col: str, source: str, lines) -> np.ndarray:
    raw = df[col]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, copy=True)
    missing = raw.str.lower().isin(NA_TOKENS).to_numpy()
    bad = np.flatnonzero(np.isnan(values) & ~missing)
    if len(bad):
        i = bad[0]
        raise UserError(
            f"{source}: column {col!r}, row {i + 1} (line {lines[i]}): {raw.iloc[i]!r} is not a number"
            + (f" ({len(bad)} such rows)" if len(bad) > 1 else "")
        )
    inf = np.flatnonzero(np.isinf(values))
    if len(inf):
        i = inf[0]
        raise UserError(f"{source}: column {col!r}, row {i + 1} (line {lines[i]}): {raw.iloc[i]!r} is not finite")
    values[missing] = np.nan
    return values


def _parse_time(raw: pd.Series, col: str, source: str, lines) -> pd.Index:
    empty = np.flatnonzero((raw == "").to_numpy())
    if len(empty):
        i = empty[0]
        raise UserError(f"{source}: column {col!r}, row {i + 1} (line {lines[i]}): empty timestamp")
    numbers = pd.to_numeric(raw, errors="coerce")
    if numbers.notna().all():
        v = numbers.to_numpy(dtype=np.float64)
        if col.lower() == "year" and np.all(v == np.round(v)) and v.min() >= 1000 and v.max() <= 2999:
            return pd.DatetimeIndex(pd.to_datetime(v.astype(int).astype(str), format="%Y"), name=col)
        return pd.Index(v, name=col)
    if raw.str.match(JENA_TIME).all():
        fmt = "%d.%m.%Y %H:%M:%S" if raw.iloc[0].count(":") == 2 else "%d.%m.%Y %H:%M"
        parsed = pd.to_datetime(raw, format=fmt, errors="coerce")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = pd.to_datetime(raw, errors="coerce", format="ISO8601")
            if parsed.isna().any():
                parsed = pd.to_datetime(raw, errors="coerce", format="mixed")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        i = bad[0]
        raise UserError(f"{source}: column {col!r}, row {i + 1} (line {lines[i]}): {raw.iloc[i]!r} is not a date/time")
    index = pd.DatetimeIndex(parsed, name=col)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return index


def load_frame(config: DataConfig) -> tuple[pd.DataFrame, np.ndarray | None, str, str, str]:
    """``(numeric frame indexed by time, line numbers or None, source label, target, default transform)``."""
    spec = config.data
    if spec.startswith("statsmodels:"):
        name = spec.split(":", 1)[1]
        if name not in DATASETS:
            raise UserError(f"unknown dataset {spec!r}; known: " + ", ".join(f"statsmodels:{n}" for n in DATASETS))
        ds = DATASETS[name]
        frame = ds.loader().astype(np.float64)
        target = _column(frame, config.target, "target", spec) if config.target else ds.target
        features = [_column(frame, f, "feature", spec) for f in config.features]
        if config.time_col:
            raise UserError(f"{spec}: --time-col is only for CSV files (the dataset has its own time axis)")
        cols = [target, *dict.fromkeys(f for f in features if f != target)]
        return frame[cols], None, spec, target, ds.transform
    df, lines = read_csv(spec)
    source = spec
    time_col = _column(df, config.time_col, "time", source) if config.time_col else _guess_time_column(df)
    value_cols = [c for c in df.columns if c != time_col]
    if config.target:
        target = _column(df, config.target, "target", source)
    elif len(value_cols) == 1:
        target = value_cols[0]
    else:
        raise UserError(f"{source}: pass --target COL; value columns are: {', '.join(value_cols)}")
    if target == time_col:
        raise UserError(f"{source}: column {target!r} is the time column, it cannot be the target")
    features = [_column(df, f, "feature", source) for f in config.features]
    cols = [target, *dict.fromkeys(f for f in features if f != target)]
    frame = pd.DataFrame({c: _numeric(df, c, source, lines) for c in cols})
    if time_col is None:
        frame.index = pd.Index(np.arange(len(frame), dtype=np.float64), name="row")
    else:
        frame.index = _parse_time(df[time_col], time_col, source, lines)
    return frame, lines, source, target, "none"


# ----------------------------------------------------------------------------- regular grid
_SEASON_BY_FREQ = {"Y": 1, "A": 1, "Q": 4, "M": 12, "W": 52, "D": 7, "B": 5}


def _freq_alias(offset) -> str:
    from pandas.tseries.frequencies import to_offset

    return to_offset(offset).freqstr


def infer_datetime_freq(index: pd.DatetimeIndex) -> str | None:
    """Offset alias of a (possibly gappy) DatetimeIndex, from ``pd.infer_freq`` or the modal step."""
    if len(index) < 3:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            freq = pd.infer_freq(index)
        except (TypeError, ValueError):
            freq = None
    if freq:
        return _freq_alias(freq)
    steps = pd.Series(np.diff(index.asi8)).mode()
    step = pd.Timedelta(int(steps.iloc[0]), unit=str(index.unit) if hasattr(index, "unit") else "ns")
    days = step / pd.Timedelta(days=1)
    start = all(index.day == 1)
    if 28 <= days <= 31:
        return "MS" if start else "ME"
    if 89 <= days <= 92:
        return "QS" if start else "QE"
    if 365 <= days <= 366:
        return "YS" if start and all(index.month == 1) else "YE"
    return _freq_alias(step)


def regularise(frame: pd.DataFrame, lines, source: str, resample: str | None):
    """Sort, de-duplicate, resample, and insert missing timestamps (as NaN rows)."""
    lines = np.asarray(lines) if lines is not None else np.full(len(frame), -1)
    if not frame.index.is_monotonic_increasing:
        order = np.argsort(frame.index.to_numpy(), kind="stable")
        frame, lines = frame.iloc[order], lines[order]
        log.warning("%s: rows were not in time order; sorted them", source)
    dup = frame.index.duplicated(keep="first")
    if dup.any():
        first = int(np.flatnonzero(dup)[0])
        log.warning(
            "%s: dropped %d rows with a repeated timestamp (first: %s, line %s)",
            source, int(dup.sum()), format_time(frame.index[first]), lines[first],
        )
        frame, lines = frame[~dup], lines[~dup]
    if resample:
        if not isinstance(frame.index, pd.DatetimeIndex):
            raise UserError(f"{source}: --resample needs a date/time column (use --time-col)")
        try:
            frame = frame.resample(resample).mean()
        except (ValueError, TypeError) as err:
            raise UserError(f"--resample {resample!r}: not a pandas frequency ({err})") from None
        lines = np.full(len(frame), -1)
        freq = _freq_alias(resample)
        return frame, lines, freq, None
    if isinstance(frame.index, pd.DatetimeIndex):
        freq = infer_datetime_freq(frame.index)
        if freq is None:
            return frame, lines, None, None
        grid = pd.date_range(frame.index[0], frame.index[-1], freq=freq, name=frame.index.name)
        off_grid = ~frame.index.isin(grid)
        if off_grid.any():
            i = int(np.flatnonzero(off_grid)[0])
            raise UserError(
                f"{source}: timestamp {format_time(frame.index[i])} (line {lines[i]}) is off the "
                f"regular {freq} grid; pass --resample RULE (e.g. --resample {freq})"
            )
        step = None
    else:
        v = frame.index.to_numpy(dtype=np.float64)
        if len(v) < 2:
            return frame, lines, None, 1.0
        step = float(pd.Series(np.diff(v)).mode().iloc[0])
        n = int(round((v[-1] - v[0]) / step)) + 1
        grid = pd.Index(v[0] + step * np.arange(n), name=frame.index.name)
        pos = (v - v[0]) / step
        if not np.allclose(pos, np.round(pos), atol=1e-6):
            i = int(np.flatnonzero(~np.isclose(pos, np.round(pos), atol=1e-6))[0])
            raise UserError(f"{source}: time value {v[i]:g} (line {lines[i]}) is off the regular step {step:g}")
        frame = frame.set_axis(pd.Index(v[0] + step * np.round(pos), name=frame.index.name))
        freq = None
    if len(grid) != len(frame):
        missing = grid.difference(frame.index)
        lines = pd.Series(lines, index=frame.index).reindex(grid).fillna(-1).to_numpy(dtype=np.int64)
        frame = frame.reindex(grid)
        frame.attrs["missing_timestamps"] = missing
    return frame, lines, freq, step


def fill_missing(frame: pd.DataFrame, lines, source: str, on_missing: str, freq) -> pd.DataFrame:
    """Interpolate NaN (with a warning) or raise naming the first missing row of each column."""
    if on_missing not in ON_MISSING:
        raise UserError(f"--on-missing must be one of {ON_MISSING}, got {on_missing!r}")
    missing_ts = frame.attrs.get("missing_timestamps")
    if missing_ts is not None and len(missing_ts):
        if on_missing == "fail":
            raise UserError(
                f"{source}: {len(missing_ts)} timestamps missing from the {freq or 'regular'} grid, first "
                f"{format_time(missing_ts[0], freq)}; pass --on-missing interpolate"
            )
        log.warning(
            "%s: inserted %d missing timestamps (first %s) and interpolated their values",
            source, len(missing_ts), format_time(missing_ts[0], freq),
        )
    for col in frame.columns:
        nan = np.flatnonzero(frame[col].isna().to_numpy())
        if not len(nan):
            continue
        i = nan[0]
        where = f"row {i + 1} ({'line ' + str(lines[i]) + ', ' if lines[i] >= 0 else ''}{format_time(frame.index[i], freq)})"
        if len(nan) == len(frame):
            raise UserError(f"{source}: column {col!r} has no values")
        if on_missing == "fail":
            raise UserError(f"{source}: column {col!r} has no value at {where}; pass --on-missing interpolate")
        inserted = frame.index[nan].isin(missing_ts) if missing_ts is not None else np.zeros(len(nan), bool)
        real = int(np.sum(~inserted))
        if real:
            log.warning("%s: column %r: interpolated %d missing values (first at %s)", source, col, real, where)
        frame[col] = frame[col].interpolate(method="linear", limit_direction="both")
    return frame


def load_series(config: DataConfig) -> Series:
    """Read, regularise and clean the series described by ``config``."""
    frame, lines, source, target, default_transform = load_frame(config)
    features = [c for c in frame.columns if c != target]
    time_name = frame.index.name
    frame, lines, freq, step = regularise(frame, lines, source, config.resample)
    frame.index.name = time_name
    frame = fill_missing(frame, lines, source, config.on_missing, freq)
    index = frame.index
    return Series(
        source=source,
        target=target,
        features=features,
        index=index,
        values=np.array(frame.to_numpy(dtype=np.float64), copy=True),
        freq=freq,
        step=step,
        time_col=time_name,
        default_transform=default_transform,
        lines=lines,
    )


# ----------------------------------------------------------------------------- defaults
def _base_freq(freq: str | None) -> str | None:
    if not freq:
        return None
    from pandas.tseries.frequencies import to_offset

    off = to_offset(freq)
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
        return "B"
    if isinstance(off, pd.offsets.Tick):
        return "tick"
    return None


def calendar_season(freq: str | None) -> int | None:
    """The natural season of a sampling frequency (weekly -> 52, monthly -> 12, 10 min -> 144 ...)."""
    base = _base_freq(freq)
    if base is None:
        return None
    if base == "tick":
        from pandas.tseries.frequencies import to_offset

        step = pd.Timedelta(to_offset(freq))
        if step < pd.Timedelta(days=1):
            per_day = pd.Timedelta(days=1) / step
            return int(round(per_day)) if abs(per_day - round(per_day)) < 1e-9 else None
        if step == pd.Timedelta(days=1):
            return 7
        return None
    return _SEASON_BY_FREQ[base]


# M4 competition horizons by sampling frequency
_HORIZON_BY_FREQ = {"Y": 6, "Q": 8, "M": 18, "W": 13, "D": 14, "B": 10}


def default_horizon(freq: str | None) -> int:
    base = _base_freq(freq)
    if base in _HORIZON_BY_FREQ:
        return _HORIZON_BY_FREQ[base]
    if base == "tick":
        from pandas.tseries.frequencies import to_offset

        step = pd.Timedelta(to_offset(freq))
        if step >= pd.Timedelta(days=1):
            return 14
        if step >= pd.Timedelta(hours=1):
            return 48 if step == pd.Timedelta(hours=1) else max(1, int(pd.Timedelta(days=2) / step))
        return max(1, int(pd.Timedelta(hours=6) / step))
    return 8


def default_lookback(season: int, horizon: int, train_rows: int) -> int:
    """Two seasons (and at least two horizons, 16 steps), capped so the train part keeps windows."""
    lookback = max(2 * season, 2 * horizon, 16)
    cap = max(4, (train_rows - horizon) // 4)
    return int(min(lookback, cap, 512))


def detect_season(y: np.ndarray, freq: str | None, max_lag: int | None = None) -> tuple[int, str]:
    """``(season, how)``: the calendar season if the ACF confirms it, else the strongest ACF peak.

    The ACF is computed on the linearly detrended series (the training part only). A peak is a
    local maximum above ``max(3/sqrt(n), 0.2)`` (well above the noise band, over many lags);
    no peak -> season 1.
    """
    from scipy.signal import detrend
    from statsmodels.tsa.stattools import acf

    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    max_lag = int(min(max_lag or n // 3, n // 2 - 1, 1000))
    calendar = calendar_season(freq)
    if max_lag < 3 or np.std(y) == 0:
        return (calendar or 1, "frequency" if calendar else "none")
    r = acf(detrend(y), nlags=max_lag, fft=True)
    threshold = max(3.0 / np.sqrt(n), 0.2)
    peaks = [k for k in range(2, len(r) - 1) if r[k] > r[k - 1] and r[k] >= r[k + 1] and r[k] > threshold]
    best = max(peaks, key=lambda k: r[k]) if peaks else None
    if calendar and calendar > 1:
        near = [k for k in peaks if abs(k - calendar) <= max(1, calendar // 20)]
        if calendar <= max_lag and (near or (best is None)) and r[calendar] > 0:
            return calendar, "frequency"
    if best is not None:
        # prefer the first harmonic: a peak at k/2, k/3 nearly as strong as k
        for div in (3, 2):
            for k in peaks:
                if abs(k * div - best) <= 1 and r[k] >= 0.8 * r[best]:
                    best = k
        return best, "acf"
    if calendar and calendar > 1 and calendar <= max_lag:
        return calendar, "frequency"
    return 1, "none"


# ----------------------------------------------------------------------------- splits
@dataclasses.dataclass(frozen=True)
class Split:
    """Row boundaries: train ``[0, train_end)``, val ``[train_end, val_end)``, test ``[val_end, n)``."""

    n: int
    train_end: int
    val_end: int

    @classmethod
    def of(cls, n: int, test_fraction: float, val_fraction: float) -> "Split":
        if not 0 < test_fraction < 1 or not 0 <= val_fraction < 1 or test_fraction + val_fraction >= 1:
            raise UserError(
                f"--test-fraction {test_fraction} and --val-fraction {val_fraction} must be in (0, 1) with sum < 1"
            )
        n_test = int(round(test_fraction * n))
        n_val = int(round(val_fraction * n))
        return cls(n, n - n_test - n_val, n - n_test)

    def origins(self, part: str, lookback: int, horizon: int) -> tuple[int, int]:
        """Inclusive range ``(first, last)`` of forecast origins whose H targets lie in ``part``.

        An origin ``t`` forecasts rows ``t .. t+H-1`` from the window of differences of rows
        ``t-L-1 .. t-1`` (inputs may reach back into earlier parts, targets never do).
        """
        lo, hi = {"train": (0, self.train_end), "val": (self.train_end, self.val_end), "test": (self.val_end, self.n)}[part]
        return max(lo, lookback + 1), hi - horizon

    def count(self, part: str, lookback: int, horizon: int) -> int:
        first, last = self.origins(part, lookback, horizon)
        return max(0, last - first + 1)


def check_length(series: Series, split: Split, lookback: int, horizon: int, val_fraction: float) -> None:
    """A clear error if the series cannot give training/validation/test windows."""
    need = {
        "train": MIN_TRAIN_WINDOWS,
        "val": 1 if val_fraction > 0 else 0,
        "test": 1,
    }
    short = [p for p, k in need.items() if split.count(p, lookback, horizon) < k]
    if not short:
        return
    n = len(series)
    minimum = n
    while minimum < 10**7:
        minimum = max(minimum + 1, int(minimum * 1.05))
        s = Split.of(minimum, (split.n - split.val_end) / split.n, (split.val_end - split.train_end) / split.n)
        if all(s.count(p, lookback, horizon) >= k for p, k in need.items()):
            break
    raise UserError(
        f"{series.source}: column {series.target!r} is too short: {n} rows (last row {n}, "
        f"{format_time(series.index[-1], series.freq)}) leave {split.count('train', lookback, horizon)} "
        f"train / {split.count('val', lookback, horizon)} val / {split.count('test', lookback, horizon)} "
        f"test windows for lookback {lookback} + horizon {horizon}; need about {minimum} rows, or a "
        f"smaller --lookback/--horizon"
    )


# ----------------------------------------------------------------------------- scaling
@dataclasses.dataclass
class Scaler:
    """Transform + scaling of the target and covariates, fit on the training rows only.

    ``level(y) = T(y) / target_scale``; the model input for the target is
    ``diff(T(y)) / diff_scale``; covariates are ``(x - mean) / std``. The model predicts
    ``level[t+h] - level[t-1]``.
    """

    transform: str
    target_scale: float
    diff_scale: float
    feature_mean: list[float]
    feature_std: list[float]

    @classmethod
    def fit(cls, series: Series, train_end: int, transform: str) -> "Scaler":
        check_transform(series, transform)
        ty = apply_transform(series.y[:train_end], transform)
        cov = series.values[:train_end, 1:]
        safe = lambda s: float(s) if np.isfinite(s) and s > 1e-12 else 1.0
        return cls(
            transform=transform,
            target_scale=safe(np.std(ty)),
            diff_scale=safe(np.std(np.diff(ty))),
            feature_mean=[float(v) for v in cov.mean(0)] if cov.shape[1] else [],
            feature_std=[safe(v) for v in cov.std(0)] if cov.shape[1] else [],
        )

    @property
    def num_features(self) -> int:
        return 1 + len(self.feature_mean)

    def level(self, y) -> np.ndarray:
        return apply_transform(np.asarray(y, np.float64), self.transform) / self.target_scale

    def inverse_level(self, level) -> np.ndarray:
        return invert_transform(np.asarray(level, np.float64) * self.target_scale, self.transform)

    def features(self, values: np.ndarray) -> np.ndarray:
        """Model inputs for every row ``[N, F]`` (row 0 has no difference: 0)."""
        values = np.asarray(values, np.float64)
        ty = apply_transform(values[:, 0], self.transform)
        diff = np.concatenate([[0.0], np.diff(ty)]) / self.diff_scale
        cols = [diff[:, None]]
        if values.shape[1] > 1:
            cols.append((values[:, 1:] - np.array(self.feature_mean)) / np.array(self.feature_std))
        return np.concatenate(cols, axis=1).astype(np.float32)

    def forecast(self, deltas: np.ndarray, last_level: np.ndarray) -> np.ndarray:
        """Model outputs (changes of the level, ``[N, H]`` or ``[N, H, Q]``) -> values."""
        deltas = np.asarray(deltas, np.float64)
        last = np.asarray(last_level, np.float64).reshape((-1,) + (1,) * (deltas.ndim - 1))
        return self.inverse_level(last + deltas)

    def as_dict(self):
        return dataclasses.asdict(self)


def check_transform(series: Series, transform: str) -> None:
    if transform not in TRANSFORMS:
        raise UserError(f"--transform must be one of {TRANSFORMS}, got {transform!r}")
    y = series.y
    bad = np.flatnonzero(y < 0) if transform == "sqrt" else np.flatnonzero(y <= 0) if transform == "log" else []
    if len(bad):
        i = bad[0]
        raise UserError(
            f"{series.source}: column {series.target!r}, {series.where(i)}: value {y[i]:g} cannot take "
            f"--transform {transform} (needs {'>= 0' if transform == 'sqrt' else '> 0'})"
        )


def apply_transform(y, transform: str):
    if transform == "sqrt":
        return np.sqrt(np.maximum(y, 0.0))
    if transform == "log":
        return np.log(y)
    return y


def invert_transform(z, transform: str):
    if transform == "sqrt":
        return np.square(np.maximum(z, 0.0))
    if transform == "log":
        return np.exp(z)
    return z


# ----------------------------------------------------------------------------- windows
def window_dataset(
    features: np.ndarray,
    level: np.ndarray,
    first: int,
    last: int,
    lookback: int,
    horizon: int,
    *,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int | None = None,
):
    """``tf.data`` of ``(x [B, L, F], y [B, H])`` for origins ``first..last`` (inclusive).

    ``x`` = feature rows ``t-L .. t-1``; ``y[h] = level[t+h] - level[t-1]``.
    """
    import keras
    import tensorflow as tf

    if last < first:
        raise ValueError(f"no origins in [{first}, {last}]")
    num_features = features.shape[1]
    data = np.concatenate([features, np.asarray(level, np.float32)[:, None]], axis=1).astype(np.float32)
    data = data[first - lookback : last + horizon]
    ds = keras.utils.timeseries_dataset_from_array(
        data, None, sequence_length=lookback + horizon, batch_size=batch_size, shuffle=shuffle, seed=seed
    )

    def split(w):
        x = w[:, :lookback, :num_features]
        y = w[:, lookback:, num_features] - w[:, lookback - 1 : lookback, num_features]
        return x, y

    return ds.map(split, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def window_arrays(features, level, first, last, lookback, horizon):
    """The windows of :func:`window_dataset` as numpy arrays, in origin order."""
    xs, ys = [], []
    for x, y in window_dataset(features, level, first, last, lookback, horizon, batch_size=512).as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)
