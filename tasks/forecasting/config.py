"""Forecasting settings, each declared once (flags, ``--help``, validation and ``config.json``).

``None`` (shown as ``none`` in ``--help``) means "derived at train time": the horizon from the
sampling frequency, the seasons from the frequency and the autocorrelation, the lookback from
the seasons and the horizon. The resolved values are what ``config.json`` stores.

No TensorFlow, Keras or NumPy here: ``--help`` must stay instant.
"""

from __future__ import annotations

import dataclasses

from tasks.common.config import (
    EvaluateConfig,
    ExportConfig,
    OutputConfig,
    PredictConfig,
    TrainConfig,
    setting,
)

DATASETS = ("co2", "sunspots", "nile", "elnino", "macrodata", "danish_data", "interest_inflation")
ON_MISSING = ("interpolate", "fail")
TRANSFORMS = ("none", "sqrt", "log")
SWITCHES = ("auto", "on", "off")
DEFAULT_MODEL_DIR = "saved_models/forecasting"

DATA_HELP = (
    "FILE.csv (header row; a time column and value columns) or "
    + ", ".join(f"statsmodels:{name}" for name in DATASETS)
)


@dataclasses.dataclass
class DataConfig:
    """Where the series comes from, how it is cleaned, split and batched."""

    data: str | None = setting(None, DATA_HELP + " (required for train)", metavar="SOURCE")
    target: str | None = setting(None, "column to forecast (none: the only value column, or the dataset's default)")
    time_col: str | None = setting(
        None, "time column (none: 'Date Time', a date/time/datetime/timestamp/year... column, else the row number)"
    )
    features: tuple[str, ...] = setting((), "covariate columns fed to the encoder with the target", metavar="A,B")
    id_col: str | None = setting(
        None, "series-id column of a long-format CSV: one global model over every series, each series scaled "
        "and split by its own rows (none: the file is one series)", metavar="COL",
    )
    on_missing: str = setting(
        "interpolate", "missing timestamps/values: interpolate linearly (one warning) or fail", choices=ON_MISSING
    )
    resample: str | None = setting(None, "average onto this pandas frequency first, e.g. 1h")
    start: str | None = setting(None, "drop rows before this time (e.g. 2016-01-01)")
    end: str | None = setting(None, "drop rows after this time (inclusive)")
    max_rows: int | None = setting(None, "keep only the last N rows (after --start/--end)", minimum=1)
    transform: str | None = setting(
        None, "variance-stabilising transform of the target; unset: the dataset's own (statsmodels:sunspots sqrt, "
        "statsmodels:macrodata log, everything else none)",
        choices=TRANSFORMS,
    )
    test_fraction: float = setting(0.2, "last part of the series held out for evaluate", above=0, below=1)
    val_fraction: float = setting(0.1, "part before the test part, for early stopping", minimum=0, below=1)
    test_rows: int | None = setting(
        None, "hold out exactly the last N rows of each series instead of --test-fraction (e.g. a competition's "
        "horizon)", minimum=1,
    )
    val_rows: int | None = setting(None, "validation rows before the test part instead of --val-fraction", minimum=0)
    country: str | None = setting(
        None, "ISO country code: add public-holiday flags from the holidays package to the calendar inputs (e.g. US)"
    )
    batch_size: int = setting(32, "training windows per batch", minimum=1)
    scale: str = setting(
        "auto", "per-series scale of the target: the std of its training rows, or their in-sample seasonal-naive "
        "MAE (mase: the MAE loss is then the MASE); auto: mase with --hybrid on, else std",
        choices=("auto", "std", "mase"),
    )
    refit_epochs: int | None = setting(
        None, "after early stopping, this many more epochs over the training and validation windows together "
        "(the latest rows of short series matter most; none: 3 for --id-col models, else 0)", minimum=0,
    )


@dataclasses.dataclass
class ModelConfig:
    """The forecaster (``lstm_core.LSTM`` encoder, direct multi-step head) and its window."""

    horizon: int | None = setting(
        None, "steps to forecast (none: M4 horizon of the frequency: yearly 6, quarterly 8, monthly 18, weekly 13, "
        "daily 14, hourly 24)", minimum=1,
    )
    lookback: int | None = setting(
        None, "input window in steps (none: max(2*shortest season, 2*horizon, 16), capped by the data)", minimum=1
    )
    seasons: tuple[int, ...] = setting(
        (), "seasonal periods in steps, e.g. 24,168 (none: calendar candidates of the frequency confirmed by "
        "the autocorrelation, else the strongest autocorrelation peak; 1: none)", minimum=1,
    )
    calendar: str = setting(
        "auto", "future-known calendar inputs (sin/cos of hour of day, day of week, day of year) and "
        "seasonal-lag inputs; auto: on for daily and finer data", choices=SWITCHES,
    )
    hybrid: str = setting(
        "auto", "ES-RNN-style normalisation inside the model: each window deseasonalised (multiplicative when "
        "positive, else additive; profile from the window) and normalised by its level and spread, the LSTM "
        "forecasts the normalised path, level and season restored; auto: on without calendar inputs for "
        "--id-col panels and series whose training part is under max(200 rows, 16 seasons)",
        choices=SWITCHES,
    )
    combine: str = setting(
        "auto", "hybrid models: what the model outputs — the LSTM (none), the LSTM and the in-graph Theta "
        "averaged (mean), the in-graph theta or seasonal_naive alone, or whichever mix of them has the lowest "
        "validation MASE (best); auto: mean unless another mix is over 2 percent better on validation",
        choices=("auto", "none", "mean", "best", "theta", "seasonal_naive"),
    )
    encoder_steps: int | None = setting(
        None, "hybrid: the last N rows of the normalised window that the LSTM reads; the whole --lookback "
        "still sets the season profile, level, spread and the in-graph Theta (none: half the hybrid's default "
        "lookback, i.e. max(2*season, 2*horizon, 16); without the hybrid: the whole window)", minimum=1,
    )
    units: int = setting(32, "LSTM units", minimum=1)
    hidden: int = setting(64, "ReLU layer between the encoder and the head (0: none)", minimum=0)
    dropout: float = setting(0.0, "input dropout of the LSTM", minimum=0, below=1)
    quantiles: tuple[float, ...] = setting(
        (), "quantile outputs, e.g. 0.1,0.9 (pinball loss; the median is added and is the point forecast)",
        above=0, below=1,
    )
    ensemble: int | None = setting(
        None, "members trained side by side and averaged (none: 3 below 1000 training windows, else 1)", minimum=1
    )
    # Measured at train time (saved in config.json, not flags).
    num_features: int = setting(1, "encoder inputs per time step", cli=False, minimum=1)
    future_features: tuple[str, ...] = setting((), "names of the per-step inputs of the forecast horizon", cli=False)
    row_calendar: tuple[str, ...] = setting((), "calendar inputs added to every encoder row", cli=False)
    lags: tuple[int, ...] = setting((), "seasonal lags (steps) whose values enter the head", cli=False)
    min_history: int | None = setting(
        None, "real rows a window needs; shorter history is padded by repeating the first season", cli=False,
    )
    member: str = setting("lstm", "the forecast the model outputs (set by --combine at train time)", cli=False)

    @property
    def num_outputs(self) -> int:
        return len(self.quantiles) or 1

    @property
    def num_future(self) -> int:
        return len(self.future_features)


@dataclasses.dataclass
class EvaluateOptions:
    """What ``evaluate`` compares beside the model."""

    stride: int = setting(1, "use every n-th test origin", minimum=1)
    baselines: tuple[str, ...] = setting(
        ("seasonal_naive", "auto_ets", "auto_theta", "mstl", "auto_arima"),
        "statsforecast baselines on the same origins (auto_arima only on short series; none: only the naive ones)",
        choices=("seasonal_naive", "auto_ets", "auto_theta", "mstl", "auto_arima"),
    )


@dataclasses.dataclass
class ExportChecks:
    """How many windows ``export`` uses to check the exported files against Keras."""

    data: str | None = setting(None, "series for int8 calibration and the checks (none: the training data)")
    check_windows: int = setting(100, "test windows comparing LiteRT with Keras", minimum=1)
    stream_check_windows: int = setting(10, "windows streamed row by row through the streaming model", minimum=1)


@dataclasses.dataclass
class PredictOptions:
    """``predict``: which series to continue, and where the CSV goes."""

    data: str | None = setting(None, "series whose next H steps are forecast (none: the training data)")
    id: str | None = setting(None, "--id-col models: the series to forecast (none: every series)", metavar="ID")
    output: str | None = setting(None, "also write the CSV to this file", metavar="FILE")


DEFAULT_TRAIN = TrainConfig(epochs=100, learning_rate=1e-3, patience=10)
OUTPUT = OutputConfig(out=DEFAULT_MODEL_DIR)
EVALUATE = EvaluateConfig(model=DEFAULT_MODEL_DIR, data=None)
EXPORT = ExportConfig(model=DEFAULT_MODEL_DIR, calibration_examples=200)
PREDICT = PredictConfig(model=DEFAULT_MODEL_DIR)
