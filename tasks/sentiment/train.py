"""``lstm-suite sentiment train``: tokenizer + model + TensorBoard logs in one model directory.

Model directory::

    DIR/model.keras          Keras model (token ids → P(positive))
    DIR/tokenizer.model      sentencepiece model (pad 0, unk 1)
    DIR/config.json          SentimentConfig (data, model, train) + labels
    DIR/calibration.json     a few training texts: int8 calibration for ``export``
    DIR/train_report.json    wall time, epochs, validation metrics
    DIR/logs/                TensorBoard (scalars, histograms, hparams)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np

from lstm_core.errors import UserError
from lstm_core.io import read_json, write_json_atomic
from lstm_core.training import TrainConfig, fit, model_directory, set_seed
from tasks.sentiment import LABELS
from tasks.sentiment.data import (
    TOKENIZER_FILE,
    Examples,
    Tokenizer,
    load_examples,
    make_dataset,
    split_validation,
    train_tokenizer,
)
from tasks.sentiment.model import ModelConfig, build_model

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"
CALIBRATION_FILE = "calibration.json"
REPORT_FILE = "train_report.json"
DEFAULT_TRAIN = "data/sentiment/train.tsv"
DEFAULT_DEV = "data/sentiment/dev.tsv"
DEFAULT_DIR = "saved_models/sentiment"


@dataclasses.dataclass
class DataConfig:
    train: str = DEFAULT_TRAIN
    val: str | None = None  # None: hold out ``val_fraction`` of ``train``
    val_fraction: float = 0.1
    text_column: str = "text"
    label_column: str = "label"
    vocab_size: int = 8000  # sentencepiece unigram vocabulary (upper bound)
    max_tokens: int = 256  # longer texts are truncated (IMDB reviews); dev.tsv max is ~80
    batch_size: int = 32
    sampling_alpha: float = 0.3  # sentencepiece subword sampling (smoothing) in training; 0 = off
    calibration_examples: int = 200


DEFAULT_TRAIN_CONFIG = TrainConfig(epochs=15, learning_rate=1e-3, patience=3, monitor="val_loss")


@dataclasses.dataclass
class SentimentConfig:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: dataclasses.replace(DEFAULT_TRAIN_CONFIG))
    labels: tuple[str, ...] = LABELS

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SentimentConfig":
        def build(kind, values):
            names = {f.name for f in dataclasses.fields(kind)}
            return kind(**{k: v for k, v in (values or {}).items() if k in names})

        return cls(
            data=build(DataConfig, d.get("data")),
            model=build(ModelConfig, d.get("model")),
            train=build(TrainConfig, d.get("train")),
            labels=tuple(d.get("labels", LABELS)),
        )

    def save(self, model_dir) -> Path:
        return write_json_atomic(Path(model_dir) / CONFIG_FILE, self.to_dict())

    @classmethod
    def load(cls, model_dir) -> "SentimentConfig":
        model_dir = Path(model_dir)
        path = model_dir / CONFIG_FILE
        if not model_dir.is_dir():
            raise UserError(
                f"{model_dir}: no such model directory; train one with "
                f"`lstm-suite sentiment train --out {model_dir}`"
            )
        if not path.is_file():
            raise UserError(f"{path}: missing; {model_dir} is not a sentiment model directory")
        try:
            return cls.from_dict(read_json(path))
        except (json.JSONDecodeError, TypeError, AttributeError) as err:
            raise UserError(f"{path}: unreadable config ({err})") from None


def load_data(config: DataConfig, seed: int) -> tuple[Examples, Examples]:
    train = load_examples(
        config.train, default_split="train", text_column=config.text_column, label_column=config.label_column
    )
    counts = np.bincount(train.labels, minlength=2)
    if counts.min() == 0:
        missing = LABELS[int(np.argmin(counts))]
        raise UserError(f"{train.source}: no '{missing}' examples; need both labels to train")
    if config.val:
        val = load_examples(
            config.val, default_split="test", text_column=config.text_column, label_column=config.label_column
        )
    else:
        train, val = split_validation(train, config.val_fraction, seed)
        log.info("no --val: holding out %d of %d training examples", len(val), len(val) + len(train))
    log.info(
        "train %s: %d examples (%d negative, %d positive); val %s: %d examples",
        train.source, len(train), *np.bincount(train.labels, minlength=2), val.source, len(val),
    )
    return train, val


def train(config: SentimentConfig, out) -> dict:
    """Train a model into ``out`` (built in ``out.partial``, resumable); returns a summary."""
    import keras

    from tasks.sentiment.evaluate import KerasPredictor, classification_metrics

    config.model.validate()
    if config.data.batch_size <= 0 or config.data.max_tokens <= 0:
        raise UserError("--batch-size and --max-tokens must be positive")
    set_seed(config.train.seed)
    train_ex, val_ex = load_data(config.data, config.train.seed)
    start = time.monotonic()
    with model_directory(out) as work:
        tokenizer_path = work / TOKENIZER_FILE
        if tokenizer_path.exists():
            log.info("reusing tokenizer %s", tokenizer_path)
        else:
            log.info("training sentencepiece (vocab %d) on %d texts", config.data.vocab_size, len(train_ex))
            train_tokenizer(train_ex.texts, tokenizer_path, vocab_size=config.data.vocab_size)
        tokenizer = Tokenizer(tokenizer_path, config.data.max_tokens)
        config.model.vocab_size = tokenizer.vocab_size
        config.save(work)
        rng = np.random.default_rng(config.train.seed)
        pick = rng.choice(len(train_ex), size=min(config.data.calibration_examples, len(train_ex)), replace=False)
        write_json_atomic(work / CALIBRATION_FILE, [train_ex.texts[i] for i in sorted(pick)])

        model = build_model(config.model, seed=config.train.seed)
        model.compile(
            optimizer=keras.optimizers.Adam(config.train.learning_rate),
            loss=keras.losses.BinaryCrossentropy(),
            metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
        )
        if log.isEnabledFor(logging.INFO):
            model.summary(print_fn=lambda line, *a, **k: log.info("%s", line))
        steps = config.train.steps_per_epoch
        common = dict(
            tokenizer_proto=tokenizer.proto,
            batch_size=config.data.batch_size,
            max_tokens=config.data.max_tokens,
            seed=config.train.seed,
        )
        train_ds = make_dataset(
            train_ex, training=True, sampling_alpha=config.data.sampling_alpha, repeat=steps is not None, **common
        )
        val_ds = make_dataset(val_ex, training=False, **common)
        hparams = {f"data.{k}": v for k, v in dataclasses.asdict(config.data).items()}
        hparams.update({f"model.{k}": v for k, v in dataclasses.asdict(config.model).items()})
        with warnings.catch_warnings():
            # tf.data batches of unknown count: Keras' fit warns about shuffle/exhaustion each run
            warnings.filterwarnings("ignore", message=r"`shuffle=True` was passed")
            warnings.filterwarnings("ignore", message=r"Your input ran out of data")
            history = fit(model, train_ds, val_ds, workdir=work, config=config.train, hparams=hparams)
        model.save(work / MODEL_FILE)

        probs = KerasPredictor(model, tokenizer).predict_proba(val_ex.texts)
        val_metrics = classification_metrics(val_ex.labels, probs)
        losses = history.history.get(config.train.monitor) or history.history.get("val_loss") or []
        report = {
            "train_source": train_ex.source,
            "train_examples": len(train_ex),
            "val_source": val_ex.source if config.data.val else f"{train_ex.source} (held out)",
            "val_examples": len(val_ex),
            "vocab_size": tokenizer.vocab_size,
            "parameters": int(model.count_params()),
            "epochs_run": len(losses),
            "best_epoch": int(np.argmin(losses)) + 1 if losses else None,
            "wall_seconds": round(time.monotonic() - start, 1),
            "val": val_metrics,
        }
        write_json_atomic(work / REPORT_FILE, report)
    log.info(
        "val accuracy %.4f f1 %.4f after %s epochs in %.0f s",
        val_metrics["accuracy"], val_metrics["f1"], report["epochs_run"], report["wall_seconds"],
    )
    return {"model_dir": str(out), **{k: v for k, v in report.items() if k != "val"}, **{f"val_{k}": v for k, v in val_metrics.items() if k != "confusion_matrix"}}
