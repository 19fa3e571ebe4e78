"""Loading and cleaning: time series in, clean regular series out: CSV files and the statsmodels datasets.

* ``--data FILE.csv --target COL [--time-col COL] [--features a,b]``: any CSV with a header
  (comma, semicolon or tab separated). The time column is ``--time-col``, else ``Date Time``,
  else a column called date/time/datetime/timestamp/ds/year/..., else the first column if it
  parses as dates, else the row number. ``DD.MM.YYYY`` / ``DD-MM-YYYY`` / ``DD/MM/YYYY``
  timestamps are read day first when any first field is above 12 (the Jena climate and PJM
  files), month first when any second field is, and day first when both are ambiguous.
* ``--data statsmodels:co2`` (also ``sunspots``, ``nile``, ``elnino``, ``macrodata``,
  ``danish_data``, ``interest_inflation``): the series that ship inside statsmodels, no
  download; each has a default target and transform (see :data:`DATASETS`).

Cleaning (one warning line says what was done): rows are sorted by time; rows with a repeated
timestamp are **averaged** into one (the daylight-saving fall-back hour of local-time load data
appears twice; both readings belong to that clock hour); ``--resample RULE`` averages onto a
coarser grid; the sampling frequency is inferred and missing timestamps are inserted;
``--start/--end/--max-rows`` keep a window; missing values are then linearly interpolated
(``--on-missing interpolate``, default) or reported as an error (``--on-missing fail``). A
non-numeric value, an unknown column or a too-short series is a
:class:`~tasks.common.errors.UserError` naming the column and the row.

Seasons: calendar candidates of the frequency (hourly: day 24, week 168, year 8766 ...) are
kept when the training part's autocorrelation confirms them (:func:`detect_seasons`).
Calendar inputs (:func:`calendar_features`) are sin/cos of the hour of day, day of week and
day of year (and holiday flags with ``--country``): known for every future step, so they are
fed for the forecast horizon too.
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

from tasks.common.errors import UserError

from tasks.forecasting.config import DataConfig
from tasks.forecasting.seasons import fixed_step

log = logging.getLogger(__name__)

NA_TOKENS = {"", "na", "nan", "n/a", "null", "none", "-", "?", "#n/a"}
TIME_NAMES = ("date time", "datetime", "timestamp", "time", "date", "ds", "period", "year", "month")
DAY_MONTH_TIME = re.compile(r"^(\d{1,2})([-./])(\d{1,2})\2(\d{4})(?:[ T](\d{1,2}:\d{2})(:\d{2})?)?$")


def _day_month_format(raw: pd.Series) -> str | None:
    """``%d.%m.%Y %H:%M[:%S]`` (or month first) for ``DD.MM.YYYY``-style columns, else None."""
    sample = raw.head(5000)
    match = sample.str.extract(DAY_MONTH_TIME)
    if match[0].isna().any():
        return None
    first, second = match[0].astype(int), match[2].astype(int)
    sep = match[1].iloc[0]
    day_first = not (second > 12).any() or (first > 12).any()
    date = f"%d{sep}%m{sep}%Y" if day_first else f"%m{sep}%d{sep}%Y"
    if match[4].isna().all():
        return date
    return date + (" %H:%M:%S" if match[5].notna().all() else " %H:%M")


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
    def has_dates(self) -> bool:
        return isinstance(self.index, pd.DatetimeIndex)

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
    return off is not None and fixed_step(freq) is not None and fixed_step(freq) < pd.Timedelta(days=1)


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
    flag = "" if "--" in what else " (" + {"target": "--target", "time": "--time-col"}.get(what, "--features") + ")"
    raise UserError(f"{source}: unknown {what} column {name!r}{flag}; columns are: {', '.join(map(str, df.columns))}")


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
    fmt = _day_month_format(raw)
    if fmt is not None:
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


def load_frame(config: DataConfig, table=None) -> tuple[pd.DataFrame, np.ndarray | None, str, str, str]:
    """``(numeric frame indexed by time, line numbers or None, source label, target, default transform)``.

    ``table``: ``(cells, lines, source)`` already read (one series of a long-format file).
    """
    spec = config.data
    if table is None and spec.startswith("statsmodels:"):
        name = spec.split(":", 1)[1]
        if name not in DATASETS:
            raise UserError(f"unknown dataset {spec!r}; known: " + ", ".join(f"statsmodels:{n}" for n in DATASETS))
        ds = DATASETS[name]
        frame = ds.loader().astype(np.float64)
        target = _column(frame, config.target, "target", spec) if config.target else ds.target
        features = [_column(frame, f, "feature", spec) for f in list(config.features)]
        if config.time_col:
            raise UserError(f"{spec}: --time-col is only for CSV files (the dataset has its own time axis)")
        cols = [target, *dict.fromkeys(f for f in features if f != target)]
        return frame[cols], None, spec, target, ds.transform
    df, lines, source = table if table is not None else (*read_csv(spec), spec)
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
    features = [_column(df, f, "feature", source) for f in list(config.features)]
    cols = [target, *dict.fromkeys(f for f in features if f != target)]
    frame = pd.DataFrame({c: _numeric(df, c, source, lines) for c in cols})
    if time_col is None:
        frame.index = pd.Index(np.arange(len(frame), dtype=np.float64), name="row")
    else:
        frame.index = _parse_time(df[time_col], time_col, source, lines)
    return frame, lines, source, target, "none"


# ----------------------------------------------------------------------------- regular grid
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


def _sort_and_merge(frame: pd.DataFrame, lines: np.ndarray, notes: list[str]):
    """Time order, and one row per timestamp (repeated timestamps averaged)."""
    if not frame.index.is_monotonic_increasing:
        order = np.argsort(frame.index.to_numpy(), kind="stable")
        frame, lines = frame.iloc[order], lines[order]
        notes.append("sorted the rows into time order")
    dup = frame.index.duplicated(keep=False)
    if dup.any():
        first = int(np.flatnonzero(dup)[0])
        repeated = int(frame.index.duplicated(keep="first").sum())
        notes.append(
            f"averaged {repeated} repeated timestamp{'s' if repeated > 1 else ''} into one row each "
            f"(first {format_time(frame.index[first])}, "
            f"line {lines[first]})"
        )
        keep_lines = pd.Series(lines, index=frame.index).groupby(level=0, sort=True).first().to_numpy()
        frame = frame.groupby(level=0, sort=True).mean()
        lines = keep_lines
    return frame, lines


def _keep_window(frame: pd.DataFrame, lines: np.ndarray, config: DataConfig, source: str):
    """``--start`` / ``--end`` / ``--max-rows``."""
    keep = np.ones(len(frame), bool)
    for flag, value, compare in (("--start", config.start, np.greater_equal), ("--end", config.end, np.less_equal)):
        if value is None:
            continue
        if isinstance(frame.index, pd.DatetimeIndex):
            try:
                bound = pd.Timestamp(value)
            except (ValueError, TypeError):
                raise UserError(f"{flag} {value!r}: not a date/time (e.g. 2016-01-01)") from None
            keep &= compare(frame.index.to_numpy(), bound.to_datetime64())
        else:
            try:
                bound = float(value)
            except ValueError:
                raise UserError(f"{flag} {value!r}: the time axis of {source} is numeric; expected a number") from None
            keep &= compare(frame.index.to_numpy(dtype=np.float64), bound)
    if config.max_rows is not None and keep.sum() > config.max_rows:
        keep[np.flatnonzero(keep)[: keep.sum() - config.max_rows]] = False
    if not keep.any():
        raise UserError(f"{source}: no rows left after --start/--end/--max-rows")
    return frame[keep], lines[keep]


def regularise(frame: pd.DataFrame, lines, source: str, config: DataConfig, notes: list[str]):
    """Sort, merge repeated timestamps, resample, insert missing timestamps (as NaN rows), keep the window."""
    lines = np.asarray(lines) if lines is not None else np.full(len(frame), -1)
    frame, lines = _sort_and_merge(frame, lines, notes)
    if config.resample:
        if not isinstance(frame.index, pd.DatetimeIndex):
            raise UserError(f"{source}: --resample needs a date/time column (use --time-col)")
        try:
            frame = frame.resample(config.resample).mean()
        except (ValueError, TypeError) as err:
            raise UserError(f"--resample {config.resample!r}: not a pandas frequency ({err})") from None
        lines = np.full(len(frame), -1)
        freq = _freq_alias(config.resample)
        frame, lines = _keep_window(frame, lines, config, source)
        return frame, lines, freq, None
    if isinstance(frame.index, pd.DatetimeIndex):
        freq = infer_datetime_freq(frame.index)
        if freq is None:
            frame, lines = _keep_window(frame, lines, config, source)
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
    inserted = np.zeros(len(grid), bool)
    if len(grid) != len(frame):
        inserted = ~grid.isin(frame.index)
        lines = pd.Series(lines, index=frame.index).reindex(grid).fillna(-1).to_numpy(dtype=np.int64)
        frame = frame.reindex(grid)
    frame = frame.assign(_inserted=inserted)
    frame, lines = _keep_window(frame, lines, config, source)
    inserted = frame.pop("_inserted").to_numpy(bool)
    frame.attrs["missing_timestamps"] = frame.index[inserted]
    return frame, lines, freq, step


def fill_missing(frame: pd.DataFrame, lines, source: str, on_missing: str, freq, notes: list[str]) -> pd.DataFrame:
    """Interpolate NaN (noted for the warning line) or raise naming the first missing row of each column."""
    missing_ts = frame.attrs.get("missing_timestamps")
    if missing_ts is not None and len(missing_ts):
        if on_missing == "fail":
            raise UserError(
                f"{source}: {len(missing_ts)} timestamps missing from the {freq or 'regular'} grid, first "
                f"{format_time(missing_ts[0], freq)}; pass --on-missing interpolate"
            )
        notes.append(
            f"inserted {len(missing_ts)} missing timestamp{'s' if len(missing_ts) > 1 else ''} "
            f"(first {format_time(missing_ts[0], freq)}) "
            "and interpolated their values"
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
            notes.append(f"column {col!r}: interpolated {real} missing values (first at {where})")
        frame[col] = frame[col].interpolate(method="linear", limit_direction="both")
    return frame


def load_series(config: DataConfig, table=None, notes_out: list | None = None) -> Series:
    """Read, regularise and clean the series described by ``config`` (one warning line if anything was fixed).

    ``table``: see :func:`load_frame`; ``notes_out``: collect the cleaning notes there instead of logging.
    """
    frame, lines, source, target, default_transform = load_frame(config, table)
    features = [c for c in frame.columns if c != target]
    time_name = frame.index.name
    notes: list[str] = []
    frame, lines, freq, step = regularise(frame, lines, source, config, notes)
    frame.index.name = time_name
    frame = fill_missing(frame, lines, source, config.on_missing, freq, notes)
    if notes and notes_out is not None:
        notes_out.append(f"{source}: {'; '.join(notes)}")
    elif notes:
        log.warning("%s: %s", source, "; ".join(notes))
    return Series(
        source=source,
        target=target,
        features=features,
        index=frame.index,
        values=np.array(frame.to_numpy(dtype=np.float64), copy=True),
        freq=freq,
        step=step,
        time_col=time_name,
        default_transform=default_transform,
        lines=lines,
    )


def load_panel(config: DataConfig) -> dict[str, Series]:
    """The series of a long-format CSV, one per value of ``config.id_col``, in first-appearance order.

    Each is cleaned like a file of its own (sorted, repeated stamps averaged, gaps filled) and
    named ``FILE [COL=ID]`` in messages.

    Example:

    ```python
    panel = load_panel(DataConfig(data="load.csv", id_col="region", target="mw"))
    panel["east"].y
    ```
    """
    spec = config.data
    if spec.startswith("statsmodels:"):
        raise UserError(f"--id-col: {spec} is one series; --id-col needs a long-format CSV file")
    df, lines = read_csv(spec)
    id_col = _column(df, config.id_col, "series-id (--id-col)", spec)
    if config.time_col and _column(df, config.time_col, "time", spec) == id_col:
        raise UserError(f"--id-col {config.id_col}: it is also the time column")
    if config.target and _column(df, config.target, "target", spec) == id_col:
        raise UserError(f"--id-col {config.id_col}: it is also the target column")
    ids = df[id_col]
    if (ids == "").any():
        row = int(np.flatnonzero((ids == "").to_numpy())[0])
        raise UserError(f"{spec}: line {int(lines[row])}: empty series id in column {id_col!r}")
    panel, notes = {}, []
    for name, rows in ids.groupby(ids, sort=False).indices.items():  # row positions per id, in order
        cells = df.iloc[rows].drop(columns=[id_col]).reset_index(drop=True)
        panel[str(name)] = load_series(config, (cells, lines[rows], f"{spec} [{id_col}={name}]"), notes)
    if notes:  # one line for the file: how many series were fixed, the first ones' notes
        shown = " | ".join(note.replace(f"{spec} ", "", 1) for note in notes[:3])
        more = f" | ... ({len(notes) - 3} more)" if len(notes) > 3 else ""
        log.warning("%s: cleaned %d of %d series: %s%s", spec, len(notes), len(panel), shown, more)
    return panel


