"""``evaluate`` and ``predict``: one predictor per runtime (Keras, LiteRT float, LiteRT int8).

All runtimes tokenize with the model directory's sentencepiece model in Python; the Keras
predictor pads length-sorted batches (masked), the LiteRT predictors run one unpadded text at a
time (batch 1, true length), which is what the fused LSTM op expects.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from lstm_core.errors import UserError
from tasks.sentiment import LABELS
from tasks.sentiment.data import TOKENIZER_FILE, Tokenizer, load_examples, pad_batch

log = logging.getLogger(__name__)

EXPORT_DIR = "export"
TFLITE_FILES = {"tflite": "model_float.tflite", "tflite-int8": "model_int8.tflite"}


# ----------------------------------------------------------------------------- predictors
class KerasPredictor:
    def __init__(self, model, tokenizer: Tokenizer, batch_size: int = 64):
        import tensorflow as tf

        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self._fn = tf.function(
            lambda ids: model(ids, training=False),
            input_signature=[tf.TensorSpec([None, None], tf.int32)],
        )

    def predict_ids(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        order = np.argsort([len(x) for x in ids], kind="stable")
        probs = np.zeros(len(ids), dtype=np.float32)
        for start in range(0, len(ids), self.batch_size):
            chunk = order[start : start + self.batch_size]
            batch = pad_batch([ids[i] for i in chunk])
            probs[chunk] = np.asarray(self._fn(batch))[:, 0]
        return probs

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """P(positive) per text."""
        return self.predict_ids(self.tokenizer.encode_many(texts))


class TFLitePredictor:
    def __init__(self, path, tokenizer: Tokenizer, num_threads: int | None = None):
        from lstm_core.export import TFLiteModel

        self.path = Path(path)
        self.runner = TFLiteModel(self.path, num_threads=num_threads)
        self.tokenizer = tokenizer

    def predict_ids(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        out = np.zeros(len(ids), dtype=np.float32)
        for i, x in enumerate(ids):
            (prob,) = self.runner(np.asarray([x], dtype=np.int32))
            out[i] = float(np.reshape(prob, -1)[0])
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_ids(self.tokenizer.encode_many(texts))


def load_predictor(model_dir, runtime: str = "keras"):
    """The predictor of ``model_dir`` for ``runtime`` (keras | tflite | tflite-int8)."""
    from tasks.sentiment.train import MODEL_FILE, SentimentConfig

    model_dir = Path(model_dir)
    config = SentimentConfig.load(model_dir)
    max_tokens = config.data.max_tokens
    if runtime == "keras":
        path = model_dir / MODEL_FILE
        if not path.is_file():
            raise UserError(f"{path}: missing; train the model first (`lstm-suite sentiment train --out {model_dir}`)")
        import keras

        import lstm_core.layer  # noqa: F401  (registers the lstm_core layer classes)

        model = keras.saving.load_model(path, compile=False)
        return KerasPredictor(model, Tokenizer(model_dir / TOKENIZER_FILE, max_tokens))
    if runtime not in TFLITE_FILES:
        raise UserError(f"unknown runtime {runtime!r}; expected keras, tflite or tflite-int8")
    export_dir = model_dir / EXPORT_DIR
    path = export_dir / TFLITE_FILES[runtime]
    if not path.is_file():
        raise UserError(
            f"{path}: missing; run `lstm-suite sentiment export --model {model_dir}` first"
        )
    tokenizer_path = export_dir / TOKENIZER_FILE
    if not tokenizer_path.is_file():
        tokenizer_path = model_dir / TOKENIZER_FILE
    return TFLitePredictor(path, Tokenizer(tokenizer_path, max_tokens))


# ----------------------------------------------------------------------------- metrics
def classification_metrics(labels, probs, threshold: float = 0.5) -> dict:
    """Accuracy and precision/recall/F1 of the positive class, macro-F1, confusion matrix."""
    from lstm_core.plots import confusion_matrix

    labels = np.asarray(labels, dtype=np.int64)
    pred = (np.asarray(probs) >= threshold).astype(np.int64)
    cm = confusion_matrix(labels, pred, 2)
    tn, fp, fn, tp = (int(v) for v in cm.ravel())

    def f1(p, r):
        return 2 * p * r / (p + r) if p + r else 0.0

    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    neg_precision = tn / (tn + fn) if tn + fn else 0.0
    neg_recall = tn / (tn + fp) if tn + fp else 0.0
    return {
        "examples": int(len(labels)),
        "accuracy": float((tp + tn) / max(1, len(labels))),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1(precision, recall)),
        "macro_f1": float((f1(precision, recall) + f1(neg_precision, neg_recall)) / 2),
        "confusion_matrix": cm.tolist(),
    }


def vader_scores(texts: Sequence[str]) -> np.ndarray:
    """VADER compound scores in [-1, 1] (lexicon + rules, Hutto & Gilbert 2014)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return np.asarray([analyzer.polarity_scores(t)["compound"] for t in texts], dtype=np.float32)


def vader_baseline(texts, labels) -> dict:
    """The lexicon baseline: compound ≥ 0 → positive."""
    pred = (vader_scores(texts) >= 0).astype(np.float32)
    m = classification_metrics(labels, pred)
    return {f"vader_{k}": m[k] for k in ("accuracy", "precision", "recall", "f1", "macro_f1")}


# ----------------------------------------------------------------------------- verbs
def evaluate(
    model_dir,
    data: str,
    *,
    runtime: str = "keras",
    plot: str | None = None,
    baseline: bool = True,
    limit: int | None = None,
) -> dict:
    from lstm_core.plots import confusion_matrix_png, save_png
    from tasks.sentiment.train import SentimentConfig

    model_dir = Path(model_dir)
    config = SentimentConfig.load(model_dir)
    predictor = load_predictor(model_dir, runtime)
    examples = load_examples(
        data,
        default_split="test",
        text_column=config.data.text_column,
        label_column=config.data.label_column,
        limit=limit,
    )
    log.info("evaluating %s (%s) on %d examples of %s", model_dir, runtime, len(examples), examples.source)
    start = time.monotonic()
    probs = predictor.predict_proba(examples.texts)
    seconds = time.monotonic() - start
    metrics = classification_metrics(examples.labels, probs)
    if plot is None:
        stem = Path(data).stem if not str(data).startswith("tfds:") else str(data)[5:].replace("/", "_").replace(":", "_")
        plot = model_dir / "eval" / f"confusion_{stem}_{runtime}.png"
    cm = np.asarray(metrics["confusion_matrix"])
    title = f"{runtime}\naccuracy {metrics['accuracy']:.3f}"
    save_png(plot, confusion_matrix_png(cm, list(config.labels), title=title))
    result = {
        "task": "sentiment",
        "model": str(model_dir),
        "data": examples.source,
        "runtime": runtime,
        **metrics,
        "ms_per_example": round(1000 * seconds / max(1, len(examples)), 3),
        "confusion_png": str(plot),
    }
    if baseline:
        result.update(vader_baseline(examples.texts, examples.labels))
    return result


def predict(model_dir, texts: Sequence[str], *, runtime: str = "keras", threshold: float = 0.5) -> list[tuple[str, float]]:
    """``(label, probability of that label)`` per text."""
    if not texts:
        raise UserError("no text given; pass one or more texts (or '-' to read lines from stdin)")
    for i, text in enumerate(texts, 1):
        if not text.strip():
            raise UserError(f"text {i} is empty")
    predictor = load_predictor(model_dir, runtime)
    probs = predictor.predict_proba(list(texts))
    return [(LABELS[int(p >= threshold)], float(p if p >= threshold else 1.0 - p)) for p in probs]


def read_stdin_texts() -> list[str]:
    data = sys.stdin.buffer.read()
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise UserError(f"<stdin>:{line}: not UTF-8") from None
    return [line for line in content.splitlines() if line.strip()]
