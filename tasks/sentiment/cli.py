"""``lstm-suite sentiment <train|evaluate|export|predict>``: argparse wiring only."""

from __future__ import annotations

import argparse

from lstm_core.cli import Task, Verb, add_runtime_argument
from lstm_core.training import add_train_arguments, train_config_from_args

from tasks.sentiment.model import POOLINGS, ModelConfig



def _defaults():
    from tasks.sentiment.train import DEFAULT_TRAIN_CONFIG, DataConfig

    return DataConfig(), ModelConfig(), DEFAULT_TRAIN_CONFIG


def _configure_train(p: argparse.ArgumentParser) -> None:
    from tasks.sentiment.train import DEFAULT_DIR

    data, model, train = _defaults()
    g = p.add_argument_group("data")
    g.add_argument("--data", default=data.train,
                   help="training data: TSV/CSV with a header (text, label) or tfds:NAME[:SPLIT], "
                        "e.g. tfds:imdb_reviews (default: %(default)s)")
    g.add_argument("--val", default=None,
                   help="validation data (early stopping), same formats; default: hold out --val-fraction of --data")
    g.add_argument("--val-fraction", type=float, default=data.val_fraction)
    g.add_argument("--text-column", default=data.text_column)
    g.add_argument("--label-column", default=data.label_column)
    g.add_argument("--out", default=DEFAULT_DIR, help="model directory (default: %(default)s)")
    g.add_argument("--vocab-size", type=int, default=data.vocab_size, help="sentencepiece vocabulary size")
    g.add_argument("--max-tokens", type=int, default=data.max_tokens, help="truncate texts to this many tokens")
    g.add_argument("--batch-size", type=int, default=data.batch_size)
    g.add_argument("--sampling-alpha", type=float, default=data.sampling_alpha,
                   help="sentencepiece subword-sampling smoothing in training (0 disables)")
    m = p.add_argument_group("model")
    m.add_argument("--embedding-dim", type=int, default=model.embedding_dim)
    m.add_argument("--units", type=int, default=model.units, help="LSTM units (per direction)")
    m.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=model.bidirectional)
    m.add_argument("--pooling", choices=POOLINGS, default=model.pooling,
                   help="last LSTM output(s) or masked mean over time")
    m.add_argument("--embedding-dropout", type=float, default=model.embedding_dropout)
    m.add_argument("--dropout", type=float, default=model.dropout)
    m.add_argument("--recurrent-dropout", type=float, default=model.recurrent_dropout)
    m.add_argument("--l2", type=float, default=model.l2)
    add_train_arguments(p, train)


def config_from_args(args):
    from tasks.sentiment.train import DataConfig, SentimentConfig

    _, _, train_defaults = _defaults()
    return SentimentConfig(
        data=DataConfig(
            train=args.data,
            val=args.val,
            val_fraction=args.val_fraction,
            text_column=args.text_column,
            label_column=args.label_column,
            vocab_size=args.vocab_size,
            max_tokens=args.max_tokens,
            batch_size=args.batch_size,
            sampling_alpha=args.sampling_alpha,
        ),
        model=ModelConfig(
            embedding_dim=args.embedding_dim,
            units=args.units,
            bidirectional=args.bidirectional,
            pooling=args.pooling,
            embedding_dropout=args.embedding_dropout,
            dropout=args.dropout,
            recurrent_dropout=args.recurrent_dropout,
            l2=args.l2,
        ),
        train=train_config_from_args(args, train_defaults),
    )


def _run_train(args):
    from tasks.sentiment.train import train

    return train(config_from_args(args), args.out)


def _model_argument(p):
    from tasks.sentiment.train import DEFAULT_DIR

    p.add_argument("--model", default=DEFAULT_DIR, help="model directory (default: %(default)s)")


def _configure_evaluate(p):
    from tasks.sentiment.train import DEFAULT_DEV

    _model_argument(p)
    p.add_argument("--data", default=DEFAULT_DEV,
                   help="labelled TSV/CSV or tfds:NAME[:SPLIT] (default split: test) (default: %(default)s)")
    add_runtime_argument(p)
    p.add_argument("--plot", default=None,
                   help="confusion-matrix PNG (default: MODEL/eval/confusion_<data>_<runtime>.png)")
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="skip the VADER lexicon baseline")
    p.add_argument("--limit", type=int, default=None, help="only the first N examples")


def _run_evaluate(args):
    from tasks.sentiment.evaluate import evaluate

    return evaluate(args.model, args.data, runtime=args.runtime, plot=args.plot,
                    baseline=args.baseline, limit=args.limit)


def _configure_export(p):
    _model_argument(p)
    p.add_argument("--calibration-data", default=None,
                   help="texts for int8 calibration (TSV/CSV or tfds:); default: MODEL/calibration.json")
    p.add_argument("--calibration-examples", type=int, default=200)


def _run_export(args):
    from tasks.sentiment.export import export

    return export(args.model, calibration_data=args.calibration_data,
                  calibration_examples=args.calibration_examples)


def _configure_predict(p):
    _model_argument(p)
    add_runtime_argument(p)
    p.add_argument("texts", nargs="+", metavar="TEXT", help="text(s) to classify; '-' reads lines from stdin")


def _run_predict(args):
    from tasks.sentiment.evaluate import predict, read_stdin_texts

    texts = []
    for text in args.texts:
        texts.extend(read_stdin_texts() if text == "-" else [text])
    for text, (label, prob) in zip(texts, predict(args.model, texts, runtime=args.runtime)):
        print(f"{label}\t{prob:.4f}\t{text}")
    return None


TASK = Task(
    name="sentiment",
    help="sentence sentiment (negative/positive): sentencepiece + (Bi)LSTM",
    verbs={
        "train": Verb("train tokenizer and model (TensorBoard logs in OUT/logs)", _configure_train, _run_train),
        "evaluate": Verb("accuracy, precision, recall, F1, confusion matrix (+ VADER baseline)",
                         _configure_evaluate, _run_evaluate),
        "export": Verb("SavedModel (raw strings) and LiteRT float/int8 models (token ids)",
                       _configure_export, _run_export),
        "predict": Verb("print label and its probability for each text", _configure_predict, _run_predict),
    },
)
