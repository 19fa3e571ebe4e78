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
    ModelChoiceConfig,
    DataConfig,
    ModelConfig,
    ObjectiveConfig,
    StudentConfig,
)


def _predict_inputs(parser):
    parser.add_argument("texts", nargs="+", metavar="TEXT",
                        help="text(s) to classify; '-' reads one text per stdin line (split at \\n only) and "
                             "answers each line as it arrives. Output: a header line (label, p_positive, text), then "
                             "LABEL<TAB>P(positive)<TAB>TEXT per text (the column evaluate's TSVs have), with "
                             "backslash, tab, newline and CR in TEXT written as \\\\, \\t, \\n, \\r")


def _predict(args, predict):
    import sys

    from tasks.common.errors import UserError
    from tasks.common.io import input_batches
    from tasks.sentiment.evaluate import PROBABILITY_COLUMN, check_texts, escape_text, predict_batches

    check_texts([text for text in args.texts if text != "-"])
    answered = 0
    for batch in predict_batches(predict, input_batches(args.texts)):
        if not answered:  # the header once the model answered (an error leaves stdout empty)
            sys.stdout.write(f"label\t{PROBABILITY_COLUMN}\ttext\n")
        for text, label, probability in batch:
            sys.stdout.write(f"{label}\t{probability:.4f}\t{escape_text(text)}\n")
        sys.stdout.flush()
        answered += len(batch)
    if not answered:
        raise UserError("no text given; pass one or more texts (or '-' to read lines from stdin)")
    return None


def _train_columns(data, **_):
    """``--text-column``/``--label-column`` are in the header of ``--data`` and ``--val`` (before TensorFlow loads)."""
    from tasks.common.precheck import check_columns

    for path in (data.data, data.val):
        if path and path.lower() != "none":
            check_columns(path, {"--text-column": data.text_column, "--label-column": data.label_column})


def _evaluate_columns(evaluate, **_):
    """``evaluate --data`` has the columns the model was trained with (before TensorFlow loads)."""
    from tasks.common.precheck import check_columns, model_dir_class

    if evaluate.data:
        trained = model_dir_class("sentiment").open(evaluate.model).data
        check_columns(evaluate.data, {"--text-column": trained.text_column, "--label-column": trained.label_column},
                      advice="the model was trained with {flag} {name}: name that column so in this file")


TASK = Task(
    name="sentiment",
    help="sentence sentiment (negative/positive): sentencepiece + lstm_core.LSTM",
    verbs={
        "train": settings_verb(
            "train tokenizer and model (TensorBoard logs in OUT/logs)", "tasks.sentiment.train:train",
            {"data": DataConfig(), "model": ModelConfig(), "objective": ObjectiveConfig(), "train": DEFAULT_TRAIN,
             "output": OUTPUT, "student": StudentConfig()},
            precheck=_train_columns,
        ),
        "evaluate": settings_verb(
            "accuracy, precision, recall, F1, confusion matrix, the TF-IDF+SVM and VADER peers, the negation set",
            "tasks.sentiment.evaluate:evaluate",
            {"evaluate": EVALUATE, "baselines": BaselineConfig(), "model": ModelChoiceConfig()},
            precheck=_evaluate_columns,
        ),
        "export": settings_verb(
            "SavedModel (raw strings), LiteRT float/int8 (token ids) and the fixed-length TFLM models",
            "tasks.sentiment.export:export", {"export": EXPORT, "mcu": MCU_EXPORT},
        ),
        "predict": settings_verb("print label and P(positive) for each text", _predict, {"predict": PREDICT},
                                 extra_arguments=_predict_inputs),
    },
)
