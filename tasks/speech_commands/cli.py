"""``lstm-suite speech_commands train|evaluate|export|predict``: flags generated from config.py.

Only config.py is imported here; each verb imports its module (and TensorFlow) when it runs.
"""

from __future__ import annotations

import argparse

from tasks.common.cli import Task, settings_verb

from tasks.speech_commands.config import (
    DEFAULT_TRAIN,
    EVALUATE,
    EXPORT,
    OUTPUT,
    PREDICT,
    DataConfig,
    EvaluateSelection,
    ExportChecks,
    ModelConfig,
    PredictOptions,
)


def _predict(args, predict, options):
    from tasks.speech_commands.evaluate import predict as run_prediction

    for row in run_prediction(predict, args.files, options):
        print(row["file"] + "\t" + "  ".join(f"{word} {p:.3f}" for word, p in row["top"]))
    return None


def _predict_files(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE.wav", help="WAV files to classify")


TASK = Task(
    name="speech_commands",
    help="keyword spotting from raw 16 kHz audio (log-mel in the model, LSTM, TFLite/streaming)",
    verbs={
        "train": settings_verb(
            "train on a Speech Commands style folder (or tfds)", "tasks.speech_commands.train:train",
            {"data": DataConfig(), "model": ModelConfig(), "train": DEFAULT_TRAIN, "output": OUTPUT},
        ),
        "evaluate": settings_verb(
            "accuracy + confusion matrix (default: the model's held-out test speakers)",
            "tasks.speech_commands.evaluate:evaluate",
            {"evaluate": EVALUATE, "selection": EvaluateSelection()},
        ),
        "export": settings_verb(
            "SavedModel, float/int8 TFLite and a streaming TFLite", "tasks.speech_commands.export:export",
            {"export": EXPORT, "checks": ExportChecks()},
        ),
        "predict": settings_verb(
            "top-k words with probabilities for WAV files", _predict,
            {"predict": PREDICT, "options": PredictOptions()}, extra_arguments=_predict_files,
        ),
    },
)
