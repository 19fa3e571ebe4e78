"""``lstm-suite forecasting ...``: flags (generated from config.py) -> train/evaluate/export/predict."""

from __future__ import annotations

from tasks.common.cli import Task, settings_verb

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


def _predict(args, predict, options):
    import sys

    from tasks.common.io import write_bytes_atomic
    from tasks.forecasting.evaluate import predict as run
    from tasks.forecasting.evaluate import predictions_csv

    text = predictions_csv(run(predict, options))
    if options.output:
        write_bytes_atomic(options.output, text.encode())
    sys.stdout.write(text)
    sys.stdout.flush()
    return None


def _train_columns(data, **_):
    """``--target``, ``--time-col``, ``--id-col`` and ``--features`` name columns of ``--data`` (before TensorFlow)."""
    from tasks.common.precheck import check_columns

    if data.data:
        check_columns(data.data, {"--target": data.target, "--time-col": data.time_col, "--id-col": data.id_col,
                                  "--features": data.features})


TASK = Task(
    name="forecasting",
    help="multi-step time-series forecasting (lstm_core.LSTM encoder, direct head, calendar and seasonal-lag "
    "inputs) beside the statsforecast baselines",
    verbs={
        "train": settings_verb(
            "train on a CSV or statsmodels series (chronological split; the last --test-fraction is held out)",
            "tasks.forecasting.train:train",
            {"data": DataConfig(), "model": ModelConfig(), "train": DEFAULT_TRAIN, "output": OUTPUT},
            precheck=_train_columns,
        ),
        "evaluate": settings_verb(
            "rolling-origin MAE/RMSE/sMAPE/MASE on the test part beside the baselines, + PNG",
            "tasks.forecasting.evaluate:evaluate",
            {"evaluate": EVALUATE, "baselines": EvaluateOptions()},
        ),
        "export": settings_verb(
            "SavedModel, float/int8 TFLite (fused LSTM), a streaming one-step TFLite, TFLM checks and C array",
            "tasks.forecasting.export:export", {"export": EXPORT, "checks": ExportChecks()},
        ),
        "predict": settings_verb(
            "CSV of the next H timestamps and forecasts after the end of --data", _predict,
            {"predict": PREDICT, "options": PredictOptions()},
        ),
    },
)
