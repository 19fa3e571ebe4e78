"""``lstm-suite forecasting ...``: flags -> configs -> train/evaluate/export/predict."""

from __future__ import annotations

import argparse

from lstm_core.cli import Task, Verb, add_runtime_argument
from lstm_core.export import FLOAT_ATOL
from lstm_core.training import add_train_arguments, train_config_from_args

from tasks.forecasting.artifacts import DEFAULT_MODEL_DIR
from tasks.forecasting.data import DATASETS, ON_MISSING, TRANSFORMS, DataConfig
from tasks.forecasting.model import ModelConfig

_D, _M = DataConfig(), ModelConfig()
_DATA_HELP = (
    "FILE.csv (header row; time column + value columns; Jena climate CSV works as is) or "
    + ", ".join(f"statsmodels:{n}" for n in DATASETS)
)


def _features(text: str | None) -> list[str]:
    return [f.strip() for f in (text or "").split(",") if f.strip()]


def _add_source(p: argparse.ArgumentParser, *, required: bool):
    g = p.add_argument_group("data")
    g.add_argument("--data", required=required, default=None if not required else argparse.SUPPRESS,
                   help=_DATA_HELP + ("" if required else " (default: the training data)"))
    g.add_argument("--target", default=None, help="column to forecast (statsmodels data: a sensible default)")
    g.add_argument("--time-col", default=None,
                   help="time column (default: 'Date Time', a date/time/year... column, else the row number)")
    g.add_argument("--on-missing", choices=ON_MISSING, default=None if not required else _D.on_missing,
                   help="missing timestamps/values: interpolate linearly with a warning, or fail (default interpolate)")
    return g


def configure_train(p: argparse.ArgumentParser) -> None:
    from tasks.forecasting.train import DEFAULT_BATCH_SIZE, DEFAULT_TRAIN

    g = _add_source(p, required=True)
    g.add_argument("--features", default="", help="comma-separated covariate columns fed to the encoder (multivariate)")
    g.add_argument("--resample", default=None, help="average onto this pandas frequency first, e.g. 1h for Jena climate")
    g.add_argument("--transform", choices=TRANSFORMS, default=None,
                   help="variance-stabilising transform of the target (default: none; statsmodels:sunspots sqrt)")
    g.add_argument("--test-fraction", type=float, default=_D.test_fraction, help="last part held out for evaluate")
    g.add_argument("--val-fraction", type=float, default=_D.val_fraction, help="part before the test part, for early stopping")
    g.add_argument("--season", type=int, default=None,
                   help="seasonal period in steps (default: from the sampling frequency, confirmed by the ACF, or the ACF peak)")
    g.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    g.add_argument("--out", default=DEFAULT_MODEL_DIR, help=f"model directory (default {DEFAULT_MODEL_DIR})")
    m = p.add_argument_group("model")
    m.add_argument("--horizon", type=int, default=None,
                   help="steps to forecast (default by frequency, M4 style: yearly 6, quarterly 8, monthly 18, weekly 13, daily 14, hourly 48)")
    m.add_argument("--lookback", type=int, default=None, help="input window length (default max(2*season, 2*horizon, 16))")
    m.add_argument("--units", type=int, default=_M.units, help="LSTM units")
    m.add_argument("--hidden", type=int, default=_M.hidden, help="ReLU layer before the head (0: none)")
    m.add_argument("--dropout", type=float, default=_M.dropout, help="LSTM input dropout")
    m.add_argument("--quantiles", default=None, help="quantile outputs, e.g. 0.1,0.9 (pinball loss; the median is added)")
    m.add_argument("--ensemble", type=int, default=None,
                   help="members trained side by side and averaged (default: 3 if fewer than 1000 training "
                        "windows, to tame the seed variance of small series, else 1)")
    add_train_arguments(p, DEFAULT_TRAIN)


def run_train(args) -> dict:
    import dataclasses

    from lstm_core.errors import UserError
    from tasks.forecasting.model import parse_quantiles
    from tasks.forecasting.train import DEFAULT_TRAIN, train

    for name in ("units", "ensemble", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 <= args.dropout < 1:
        raise UserError("--dropout must be in [0, 1)")
    dcfg = dataclasses.replace(
        _D,
        data=args.data,
        target=args.target,
        time_col=args.time_col,
        features=_features(args.features),
        on_missing=args.on_missing,
        resample=args.resample,
        transform=args.transform,
        test_fraction=args.test_fraction,
        val_fraction=args.val_fraction,
    )
    mcfg = dataclasses.replace(
        _M,
        lookback=args.lookback or 0,
        horizon=args.horizon or 0,
        units=args.units,
        hidden=args.hidden,
        dropout=args.dropout,
        quantiles=parse_quantiles(args.quantiles),
        ensemble=args.ensemble or 0,
    )
    return train(args, dcfg, mcfg, train_config_from_args(args, DEFAULT_TRAIN), season=args.season,
                 batch_size=args.batch_size)


def configure_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL_DIR, help="model directory written by train")
    _add_source(p, required=False)
    p.add_argument("--stride", type=int, default=1, help="use every n-th test origin (default: all)")
    p.add_argument("--no-ets", action="store_true", help="skip the ETS baseline")
    p.add_argument("--out", default=None, help="folder for the PNG and metrics JSON (default MODEL/evaluation)")
    add_runtime_argument(p)


def run_evaluate(args) -> dict:
    from tasks.forecasting.evaluate import evaluate

    return evaluate(args)


def configure_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL_DIR, help="model directory written by train")
    p.add_argument("--data", default=None, help="series for int8 calibration and checks (default: the training data)")
    p.add_argument("--calibration-windows", type=int, default=200, help="training windows calibrating int8")
    p.add_argument("--check-windows", type=int, default=100, help="test windows comparing LiteRT with Keras")
    p.add_argument("--stream-check-windows", type=int, default=10, help="windows streamed row by row")
    p.add_argument("--atol", type=float, default=FLOAT_ATOL, help="max |LiteRT - Keras| for float exports")


def run_export(args) -> dict:
    from tasks.forecasting.export import export

    return export(args)


def configure_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL_DIR, help="model directory written by train")
    _add_source(p, required=False)
    p.add_argument("--output", default=None, help="also write the CSV to this file")
    add_runtime_argument(p)


def run_predict(args) -> None:
    from tasks.forecasting.evaluate import predict

    return predict(args)


TASK = Task(
    name="forecasting",
    help="multi-step time-series forecasting (LSTM encoder, direct head) with last-value/seasonal-naive/ETS baselines",
    verbs={
        "train": Verb("train on a CSV or statsmodels series (chronological split, last 20%% held out)",
                      configure_train, run_train),
        "evaluate": Verb("rolling-origin MAE/RMSE/sMAPE/MASE on the test part beside the baselines, + PNG",
                         configure_evaluate, run_evaluate),
        "export": Verb("SavedModel, float/int8 TFLite (fused LSTM) and a streaming one-step TFLite",
                       configure_export, run_export),
        "predict": Verb("CSV of the next H timestamps and forecasts after the end of --data",
                        configure_predict, run_predict),
    },
)
