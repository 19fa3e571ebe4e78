"""``lstm-suite forecasting ...``: flags (generated from config.py) -> train/evaluate/export/predict."""

from __future__ import annotations

from lstm_core.cli import Task, settings_verb

from tasks.forecasting.config import (
    DEFAULT_TRAIN,
    EVALUATE,
    EXPORT,
    OUTPUT,
    PREDICT,
    DataConfig,
    EvaluateOptions,
    ExportChecks,
    ModelConfig,
    PredictOptions,
)


def _train(args, output, data, model, train):
    from tasks.forecasting.train import train as run

    return run(data, model, train, output)


def _evaluate(args, evaluate, baselines):
    from tasks.forecasting.evaluate import evaluate as run

    return run(evaluate, baselines)


def _export(args, export, checks):
    from tasks.forecasting.export import export as run

    return run(export, checks)


def _predict(args, predict, options):
    import sys

    from lstm_core.io import write_bytes_atomic
    from tasks.forecasting.evaluate import predict as run
    from tasks.forecasting.evaluate import predictions_csv

    text = predictions_csv(run(predict, options))
    if options.output:
        write_bytes_atomic(options.output, text.encode())
    sys.stdout.write(text)
    sys.stdout.flush()
    return None


TASK = Task(
    name="forecasting",
    help="multi-step time-series forecasting (lstm_core.LSTM encoder, direct head, calendar and seasonal-lag "
    "inputs) beside the statsforecast baselines",
    verbs={
        "train": settings_verb(
            "train on a CSV or statsmodels series (chronological split; the last --test-fraction is held out)", _train,
            {"output": OUTPUT, "data": DataConfig(), "model": ModelConfig(), "train": DEFAULT_TRAIN},
        ),
        "evaluate": settings_verb(
            "rolling-origin MAE/RMSE/sMAPE/MASE on the test part beside the baselines, + PNG", _evaluate,
            {"evaluate": EVALUATE, "baselines": EvaluateOptions()},
        ),
        "export": settings_verb(
            "SavedModel, float/int8 TFLite (fused LSTM), a streaming one-step TFLite, TFLM checks and C array",
            _export, {"export": EXPORT, "checks": ExportChecks()},
        ),
        "predict": settings_verb(
            "CSV of the next H timestamps and forecasts after the end of --data", _predict,
            {"predict": PREDICT, "options": PredictOptions()},
        ),
    },
)
