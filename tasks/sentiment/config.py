"""Every sentiment setting, declared once (flags, ``--help``, validation and ``config.json``).

No TensorFlow, Keras or NumPy here: ``lstm-suite sentiment --help`` stays instant.
"""

from __future__ import annotations

import dataclasses

from tasks.common.config import EvaluateConfig, ExportConfig, OutputConfig, PredictConfig, TrainConfig, setting
from tasks.common.samples import sample_path

LABELS = ("negative", "positive")
# Shipped in tasks/samples/sentiment/ (see its README), read from the installed package.
TRAIN_FILE = sample_path("sentiment/train.tsv")
DEV_FILE = sample_path("sentiment/dev.tsv")
NEGATION_FILE = sample_path("sentiment/negation.tsv")
MODEL_DIR = "saved_models/sentiment"


def given(value: str | None) -> bool:
    """False for an optional path/name left out: None, "" or the word ``none`` on the command line."""
    return value is not None and value.strip().lower() not in ("", "none")


@dataclasses.dataclass
class DataConfig:
    """Where the examples come from and how texts become token ids."""

    data: str = setting(
        TRAIN_FILE,
        "training data: TSV/CSV with a header naming the text and label columns, or tfds:NAME[:SPLIT] "
        "(e.g. tfds:imdb_reviews)",
        metavar="FILE",
    )
    val: str | None = setting(
        None, "validation data for early stopping (none: hold out --val-fraction of --data)", metavar="FILE"
    )
    val_fraction: float = setting(0.1, "share of --data held out for early stopping when --val is none",
                                  above=0, below=1)
    member_folds: bool = setting(
        True, "with several --members and no --val: each member holds out a different --val-fraction fold of "
        "--data for its early stopping, so the ensemble learns from all of it (cross-validation bagging); "
        "off: one hold-out shared by every member",
    )
    text_column: str = setting("text", "name of the text column")
    label_column: str = setting("label", "name of the label column (negative|positive, neg|pos or 0|1)")
    rating_column: str | None = setting(
        "rating", "numeric column trained as an auxiliary regression target (none, or absent in the file: off)"
    )
    vocab_size: int = setting(8000, "sentencepiece vocabulary size (an upper bound for small corpora)", minimum=8)
    max_tokens: int = setting(128, "texts are truncated to this many tokens (keeping the last ones)", minimum=1)
    batch_size: int = setting(32, "examples per training batch", minimum=1)
    sampling_alpha: float = setting(
        0.3, "sentencepiece subword-sampling smoothing in training (0: always the best segmentation)",
        minimum=0, maximum=1,
    )
    augment: tuple[str, ...] | None = setting(
        ("negation", "contrast", "balance"), "extra training rows of the LSTM members and the student, made by rule "
        "(tasks/sentiment/augment.py; none: off): negation "
        "(a 'not' put in front of a sentence's only strong sentiment word, after a form of 'be' also 'never' and "
        "'isn't', or its negator removed, label flipped), "
        "contrast (two sentences of opposite labels joined by ', but', labelled as the second), balance (with "
        "negation: the rarer direction's negation rows repeated to weigh as much as the other's)",
        choices=("negation", "contrast", "balance"),
    )
    whole_negators: bool = setting(
        True, "sentencepiece keeps \"n't\" as one piece (so \"don't\" ends in the negator the lexicon knows)"
    )
    min_examples_per_label: int = setting(
        50, "warn when the training data has fewer examples of a label than this", minimum=1, cli=False
    )


@dataclasses.dataclass
class ModelConfig:
    """Architecture: token ids (pre-padded) -> Embedding -> lstm_core.LSTM -> Dense heads."""

    vocab_size: int = setting(8000, "embedding rows (the trained tokenizer's size)", minimum=2, cli=False)
    embedding_dim: int = setting(128, "embedding width", minimum=1)
    units: int = setting(64, "LSTM units", minimum=1)
    embedding_dropout: float = setting(0.2, "share of embedding channels dropped in training (SpatialDropout1D)",
                                       minimum=0, below=1)
    dropout: float = setting(0.5, "dropout before the classifier", minimum=0, below=1)
    lexicon: str | None = setting(
        "vader", "fixed per-token prior columns concatenated to the embedding: vader (VADER valence, negator, "
        "intensifier of each piece; vaderSentiment package) or none", choices=("vader",),
    )
    pooling: tuple[str, ...] = setting(
        ("last", "last+max"), "classifier features of each member in turn: last (the LSTM's last output) or last+max "
        "(beside it, the maximum of its outputs over the text's real tokens)", choices=("last", "last+max"),
    )
    wide: bool = setting(
        False, "a linear bag-of-pieces term beside the LSTM (wide & deep): a learned weight per piece, averaged "
        "over the text's real tokens and added to the classifier's logit",
    )
    members: int = setting(6, "independently trained LSTMs whose probabilities are averaged (model averaging)",
                           minimum=1)
    ngram_member: bool = setting(
        True, "average the LSTMs' probability 50/50 with a linear model on piece unigrams and hashed bigrams, "
        "fitted by scikit-learn's LogisticRegression (C by 5-fold CV) on all of --data (tasks/sentiment/ngram.py)",
    )
    ngram_negation_scope: bool = setting(
        True, "the n-gram member reads a piece between a negator (not, never, n't, ...) and the next punctuation "
        "mark as a separate feature (NOT_bad; Das & Chen 2001, Pang et al. 2002)",
    )
    rating_head: bool = setting(False, "a second output regressing the rating (set by train from the data)",
                                cli=False)


@dataclasses.dataclass
class ObjectiveConfig:
    """What training minimises besides the label's cross-entropy."""

    rating_weight: float = setting(
        0.5, "weight of the auxiliary rating regression loss (0: off; needs --rating-column)", minimum=0
    )
    adversarial_epsilon: float = setting(
        1.0, "norm of the adversarial perturbation of the embeddings, Miyato et al. 2017 (0: off)", minimum=0
    )


@dataclasses.dataclass
class StudentConfig:
    """The distilled microcontroller model (tasks/sentiment/distill.py)."""

    distill: bool = setting(
        True, "after the ensemble, train one small LSTM on its probabilities (knowledge distillation): "
        "student.keras, exported as the MCU model (model_mcu_*.tflite, the C array)",
    )
    student_embedding_dim: int = setting(32, "the student's embedding width", minimum=1)
    student_units: int = setting(64, "the student's LSTM units", minimum=1)
    distill_copies: int = setting(
        1, "word-dropout copies of each training text the teacher labels for the student (beside the texts, "
        "their halves and the --augment rows)", minimum=0,
    )


DEFAULT_TRAIN = TrainConfig(epochs=15, learning_rate=2e-3, patience=3, monitor="val_accuracy", monitor_mode="max")
OUTPUT = OutputConfig(out=MODEL_DIR)
EVALUATE = EvaluateConfig(model=MODEL_DIR, data=DEV_FILE)
PREDICT = PredictConfig(model=MODEL_DIR)


@dataclasses.dataclass
class BaselineConfig:
    """evaluate's peers, scored on the same examples."""

    baseline: bool = setting(
        True, "also score the TF-IDF + linear SVM peer (trained on the model's training file, cached) and VADER"
    )
    negation: str | None = setting(
        NEGATION_FILE, "negation/contrast check set scored beside --data (none: skip)", metavar="FILE"
    )


@dataclasses.dataclass
class ModelChoiceConfig:
    """evaluate: the ensemble or the distilled student."""

    student: bool = setting(
        False, "score the distilled MCU student instead of the ensemble: student.keras with --runtime keras, "
        "model_mcu_{float,int8}.tflite on LiteRT with tflite/tflite-int8 (--runtime tflm always runs the MCU model)",
    )


@dataclasses.dataclass
class SentimentExportConfig:
    """The fixed-length export for TensorFlow Lite Micro."""

    max_tokens: int | None = setting(
        None, "fixed input length of the MCU export (model_mcu_*.tflite; none: the longest training text, "
        "capped at the model's --max-tokens)", minimum=1,
    )
    flash_kb: int = setting(512, "flash budget of model_mcu_int8.tflite in KiB (export_report.json: mcu_budget; "
                            "a warning when it does not fit)", minimum=1)
    arena_kb: int = setting(64, "TFLM arena (RAM) budget of model_mcu_int8.tflite in KiB (same)", minimum=1)


EXPORT = ExportConfig(model=MODEL_DIR)
MCU_EXPORT = SentimentExportConfig()
