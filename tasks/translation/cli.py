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
    check_quantization,
)


def _predict(args, predict, decoding):
    import sys

    from tasks.common.errors import UserError
    from tasks.translation.evaluate import Translator, check_sentences

    given = [s for s in args.sentences if s != "-"]
    check_sentences(given)
    translator, answered = None, 0
    for batch in _input_batches(args.sentences, args.input):
        translator = translator or Translator(predict, decoding)
        if args.nbest:
            for number, hypotheses in enumerate(translator.nbest(batch, args.nbest), answered + 1):
                sys.stdout.writelines(f"{number}\t{score:.4f}\t{text}\n" for score, text in hypotheses)
        else:
            sys.stdout.writelines(f"{text}\n" for text in translator(batch))
        sys.stdout.flush()
        answered += len(batch)
    if not answered:
        raise UserError("nothing to translate: pass sentences, '-' for stdin lines, or --input FILE")
    return None


def _input_batches(sentences, input_file):
    """The command line's sentences in order (``-``: stdin's lines as they arrive), then ``--input``'s."""
    from tasks.common.io import input_batches

    yield from input_batches(sentences)
    if input_file:
        yield _read_sentences(input_file)


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


def _positive_int(text: str) -> int:
    value = int(text) if text.strip().isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _predict_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sentences", nargs="*",
                        help="source sentences to translate, one output line each; '-' reads one sentence per stdin "
                             "line (split at \\n only) and answers each line as it arrives")
    parser.add_argument("--nbest", type=_positive_int, default=0, metavar="N",
                        help="print the N best translations per sentence as NUMBER<TAB>SCORE<TAB>TRANSLATION lines, "
                             "best first (NUMBER counts the input sentences from 1; SCORE is the beam's length-"
                             "normalised log-probability; beam width max(N, --beam)) (default: 0, one translation)")
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
            precheck=check_quantization,
        ),
        "predict": settings_verb(
            "translate sentences", _predict, {"predict": PREDICT, "decoding": DecodeConfig()},
            extra_arguments=_predict_inputs,
        ),
    },
)
