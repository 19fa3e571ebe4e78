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
                             "answers each line as it arrives. Output: LABEL<TAB>PROBABILITY<TAB>TEXT per text, "
                             "with backslash, tab, newline and CR in TEXT written as \\\\, \\t, \\n, \\r")


def _input_batches(texts):
    """The command line's texts in order, ``-`` replaced by stdin's lines as they arrive."""
    from tasks.sentiment.evaluate import stdin_batches

    given = []
    for text in texts:
        if text != "-":
            given.append(text)
            continue
        if given:
            yield given
            given = []
        yield from stdin_batches()
    if given:
        yield given


def _predict(args, predict):
    import sys

    from tasks.common.errors import UserError
    from tasks.sentiment.evaluate import check_texts, escape_text, predict_batches

    check_texts([text for text in args.texts if text != "-"])
    answered = 0
    for batch in predict_batches(predict, _input_batches(args.texts)):
        for text, label, probability in batch:
            sys.stdout.write(f"{label}\t{probability:.4f}\t{escape_text(text)}\n")
        sys.stdout.flush()
        answered += len(batch)
    if not answered:
        raise UserError("no text given; pass one or more texts (or '-' to read lines from stdin)")
    return None


TASK = Task(
    name="sentiment",
    help="sentence sentiment (negative/positive): sentencepiece + lstm_core.LSTM",
    verbs={
        "train": settings_verb(
            "train tokenizer and model (TensorBoard logs in OUT/logs)", "tasks.sentiment.train:train",
            {"data": DataConfig(), "model": ModelConfig(), "objective": ObjectiveConfig(), "train": DEFAULT_TRAIN,
             "output": OUTPUT, "student": StudentConfig()},
        ),
        "evaluate": settings_verb(
            "accuracy, precision, recall, F1, confusion matrix, the TF-IDF+SVM and VADER peers, the negation set",
            "tasks.sentiment.evaluate:evaluate",
            {"evaluate": EVALUATE, "baselines": BaselineConfig(), "model": ModelChoiceConfig()},
        ),
        "export": settings_verb(
            "SavedModel (raw strings), LiteRT float/int8 (token ids) and the fixed-length TFLM models",
            "tasks.sentiment.export:export", {"export": EXPORT, "mcu": MCU_EXPORT},
        ),
        "predict": settings_verb("print label and its probability for each text", _predict, {"predict": PREDICT},
                                 extra_arguments=_predict_inputs),
    },
)
