"""``lstm-suite translation train|evaluate|export|predict``."""

from __future__ import annotations

import argparse
import dataclasses

from lstm_core.cli import Task, Verb, add_runtime_argument
from lstm_core.training import add_train_arguments, train_config_from_args

DEFAULT_OUT = "saved_models/translation"


def _tfds_lang_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source-lang", help="tfds only: source feature (default: the dataset's supervised source)")
    p.add_argument("--target-lang", help="tfds only: target feature (default: the dataset's supervised target)")


def _positive(value: str) -> int:
    n = int(value)
    if n <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return n


def configure_train(p: argparse.ArgumentParser) -> None:
    from tasks.translation import data as D
    from tasks.translation import model as M
    from tasks.translation.train import DEFAULT_TRAIN

    d, m = D.DataConfig(), M.ModelConfig()
    p.add_argument("--data", required=True, help="training TSV (source<TAB>target) or tfds:NAME[:SPLIT]")
    p.add_argument("--val", help="validation TSV or tfds:NAME[:SPLIT] (default: 5%% of --data, or the tfds 'validation' split)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"model directory (default: {DEFAULT_OUT})")
    p.add_argument("--max-pairs", type=_positive, help="use at most this many training pairs")
    _tfds_lang_arguments(p)
    g = p.add_argument_group("subwords and batches")
    g.add_argument("--vocab-size", type=_positive, default=d.vocab_size, help="sentencepiece pieces per language (joint with --shared-vocab)")
    g.add_argument("--shared-vocab", action="store_true", help="one joint sentencepiece model for both languages")
    g.add_argument("--spm-model-type", choices=("unigram", "bpe"), default=d.spm_model_type)
    g.add_argument("--max-length", type=_positive, default=d.max_length, help="drop training pairs longer than this many subwords")
    g.add_argument("--batch-size", type=_positive, default=d.batch_size)
    g = p.add_argument_group("model")
    g.add_argument("--embedding-dim", type=_positive, default=m.embedding_dim)
    g.add_argument("--encoder-units", type=_positive, default=m.encoder_units, help="per direction")
    g.add_argument("--unidirectional", action="store_true", help="forward-only encoder")
    g.add_argument("--decoder-units", type=_positive, default=m.decoder_units)
    g.add_argument("--dropout", type=float, default=m.dropout)
    g.add_argument("--label-smoothing", type=float, default=m.label_smoothing)
    g.add_argument("--warmup-steps", type=int, default=200)
    g.add_argument("--bleu-every", type=int, default=1, help="greedy BLEU on the validation set every N epochs (0: off)")
    g.add_argument("--bleu-sentences", type=_positive, default=1000, help="validation sentences for the per-epoch BLEU")
    add_train_arguments(p, DEFAULT_TRAIN)


def run_train(args) -> dict:
    from tasks.translation import data as D
    from tasks.translation import model as M
    from tasks.translation.train import DEFAULT_TRAIN, TranslationConfig, run_training

    if not 0.0 <= args.dropout < 1.0:
        from lstm_core.errors import UserError

        raise UserError(f"--dropout must be in [0, 1), got {args.dropout}")
    if not 0.0 <= args.label_smoothing < 1.0:
        from lstm_core.errors import UserError

        raise UserError(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    config = TranslationConfig(
        data=dataclasses.replace(
            D.DataConfig(),
            vocab_size=args.vocab_size,
            shared_vocab=args.shared_vocab,
            spm_model_type=args.spm_model_type,
            max_length=args.max_length,
            batch_size=args.batch_size,
        ),
        model=dataclasses.replace(
            M.ModelConfig(),
            embedding_dim=args.embedding_dim,
            encoder_units=args.encoder_units,
            bidirectional=not args.unidirectional,
            decoder_units=args.decoder_units,
            dropout=args.dropout,
            label_smoothing=args.label_smoothing,
        ),
        train=train_config_from_args(args, DEFAULT_TRAIN),
        warmup_steps=args.warmup_steps,
    )
    return run_training(args, config)


def _decoding_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_OUT, help=f"model directory (default: {DEFAULT_OUT})")
    p.add_argument("--beam", type=_positive, default=1, help="beam width (1 = greedy)")
    p.add_argument("--length-penalty", type=float, default=0.6, help="GNMT length penalty alpha for beam search")
    add_runtime_argument(p)


def configure_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="TSV (source<TAB>reference) or tfds:NAME[:SPLIT] (default split: validation)")
    _decoding_arguments(p)
    p.add_argument("--limit", type=_positive, help="evaluate the first N pairs only")
    p.add_argument("--output", help="write the detokenized translations here, one per line")
    _tfds_lang_arguments(p)


def configure_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", nargs="*", help="source sentences")
    p.add_argument("--input", help="file with one source sentence per line")
    _decoding_arguments(p)


def configure_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_OUT, help=f"model directory (default: {DEFAULT_OUT})")
    p.add_argument("--int8", action="store_true", help="also write full-integer int8 TFLite models")
    p.add_argument("--check-sentences", type=int, default=50,
                   help="validation sentences whose greedy LiteRT output must match Keras (0: skip)")
    p.add_argument("--data", help="sentences for the check and int8 calibration (default: the training --val file)")


def run_evaluate(args):
    from tasks.translation.evaluate import run_evaluate as run

    return run(args)


def run_predict(args):
    from tasks.translation.evaluate import run_predict as run

    return run(args)


def run_export(args):
    from tasks.translation.export import run_export as run

    return run(args)


TASK = Task(
    name="translation",
    help="English->French (any parallel TSV / tfds corpus) seq2seq with attention",
    verbs={
        "train": Verb("train sentencepiece + seq2seq on a parallel corpus", configure_train, run_train),
        "evaluate": Verb("corpus BLEU and chrF (sacrebleu) on a parallel corpus", configure_evaluate, run_evaluate),
        "export": Verb("SavedModel (translate signature) + TFLite encoder / decoder-step", configure_export, run_export),
        "predict": Verb("translate sentences", configure_predict, run_predict),
    },
)
