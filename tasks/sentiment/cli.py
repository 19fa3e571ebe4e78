"""``lstm-suite sentiment <train|evaluate|export|predict>``: flags from config.py, work done lazily."""

from __future__ import annotations

from tasks.common.cli import Task, settings_verb
from tasks.sentiment.config import (
    DEFAULT_TRAIN,
    EVALUATE,
    EXPORT,
    MCU_EXPORT,
    OUTPUT,
    PREDICT,
    BaselineConfig,
    DataConfig,
    ModelConfig,
    ObjectiveConfig,
)


def _predict_inputs(parser):
    parser.add_argument("texts", nargs="+", metavar="TEXT", help="text(s) to classify; '-' reads lines from stdin")


def _predict(args, predict):
    from tasks.sentiment.evaluate import predict as run
    from tasks.sentiment.evaluate import read_stdin_texts

    texts = []
    for text in args.texts:
        texts.extend(read_stdin_texts() if text == "-" else [text])
    for text, (label, probability) in zip(texts, run(predict, texts)):
        print(f"{label}\t{probability:.4f}\t{text}")
    return None


TASK = Task(
    name="sentiment",
    help="sentence sentiment (negative/positive): sentencepiece + lstm_core.LSTM",
    verbs={
        "train": settings_verb(
            "train tokenizer and model (TensorBoard logs in OUT/logs)", "tasks.sentiment.train:train",
            {"data": DataConfig(), "model": ModelConfig(), "objective": ObjectiveConfig(), "train": DEFAULT_TRAIN,
             "output": OUTPUT},
        ),
        "evaluate": settings_verb(
            "accuracy, precision, recall, F1, confusion matrix, the TF-IDF+SVM and VADER peers, the negation set",
            "tasks.sentiment.evaluate:evaluate", {"evaluate": EVALUATE, "baselines": BaselineConfig()},
        ),
        "export": settings_verb(
            "SavedModel (raw strings), LiteRT float/int8 (token ids) and the fixed-length TFLM models",
            "tasks.sentiment.export:export", {"export": EXPORT, "mcu": MCU_EXPORT},
        ),
        "predict": settings_verb("print label and its probability for each text", _predict, {"predict": PREDICT},
                                 extra_arguments=_predict_inputs),
    },
)
