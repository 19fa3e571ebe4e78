"""``lstm-suite translation train|evaluate|export|predict`` (flags generated from ``config.py``)."""

from __future__ import annotations

import argparse

from tasks.common.cli import Task, settings_verb
from tasks.translation.config import (
    DEFAULT_TRAIN,
    EVALUATE,
    EXPORT,
    OUTPUT,
    PREDICT,
    CheckConfig,
    DataConfig,
    DecodeConfig,
    ModelConfig,
    MonitorConfig,
    ScheduleConfig,
)


def _predict(args, predict, decoding):
    from tasks.translation.evaluate import predict as run

    sentences = list(args.sentences)
    if args.input:
        sentences += _read_sentences(args.input)
    for line in run(predict, sentences, decoding):
        print(line)
    return None


def _read_sentences(path: str) -> list[str]:
    from pathlib import Path

    from tasks.common.errors import UserError

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"--input {path}: no such file (expected one source sentence per line)") from None
    except UnicodeDecodeError:
        raise UserError(f"--input {path}: not valid UTF-8") from None
    # one sentence per \n-terminated line: str.splitlines would also split at U+2028, form feeds, ...
    return [line.strip() for line in text.split("\n") if line.strip()]


def _predict_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sentences", nargs="*", help="source sentences to translate")
    parser.add_argument("--input", metavar="FILE", default=None,
                        help="also translate this file, one source sentence per line (default: none)")


TASK = Task(
    name="translation",
    help="English->French (any parallel TSV / tfds corpus) seq2seq with attention",
    verbs={
        "train": settings_verb(
            "train sentencepiece + seq2seq on a parallel corpus", "tasks.translation.train:train",
            {"data": DataConfig(), "model": ModelConfig(), "train": DEFAULT_TRAIN, "output": OUTPUT,
             "schedule": ScheduleConfig(), "monitor": MonitorConfig()},
        ),
        "evaluate": settings_verb(
            "corpus BLEU and chrF (sacrebleu) on a parallel corpus", "tasks.translation.evaluate:evaluate",
            {"evaluate": EVALUATE, "decoding": DecodeConfig()},
        ),
        "export": settings_verb(
            "SavedModel (translate signature) + TFLite encoder / decoder step (LiteRT and TFLM)",
            "tasks.translation.export:export", {"export": EXPORT, "check": CheckConfig()},
        ),
        "predict": settings_verb(
            "translate sentences", _predict, {"predict": PREDICT, "decoding": DecodeConfig()},
            extra_arguments=_predict_inputs,
        ),
    },
)
