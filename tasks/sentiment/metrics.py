"""Classification metrics and the two peers every evaluation is compared with.

- ``tfidf_svm``: TF-IDF of word 1–2-grams + character 2–5-grams, ``LinearSVC`` (scikit-learn),
  trained on the model's own training file (the peer of issue 16); ``C`` is chosen by 5-fold
  cross-validation on that file, never on the evaluated data. Cached in the model directory.
- ``vader``: the VADER lexicon + rules (Hutto & Gilbert 2014), compound ≥ 0 → positive.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

SVM_C_GRID = (0.1, 0.3, 1.0)
SUMMARY_KEYS = ("accuracy", "precision", "recall", "f1", "macro_f1")


def classification_metrics(labels, probs, threshold: float = 0.5) -> dict:
    """Accuracy, precision/recall/F1 of the positive class, macro-F1, confusion matrix (rows = true)."""
    from tasks.common.plots import confusion_matrix

    labels = np.asarray(labels, dtype=np.int64)
    pred = (np.asarray(probs) >= threshold).astype(np.int64)
    matrix = confusion_matrix(labels, pred, 2)
    tn, fp, fn, tp = (int(v) for v in matrix.ravel())

    def f1(p, r):
        return 2 * p * r / (p + r) if p + r else 0.0

    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    negative_precision = tn / (tn + fn) if tn + fn else 0.0
    negative_recall = tn / (tn + fp) if tn + fp else 0.0
    return {
        "accuracy": float((tp + tn) / max(1, len(labels))),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1(precision, recall)),
        "macro_f1": float((f1(precision, recall) + f1(negative_precision, negative_recall)) / 2),
        "confusion_matrix": matrix.tolist(),
    }


# ----------------------------------------------------------------------------- VADER
def vader_scores(texts: Sequence[str]) -> np.ndarray:
    """VADER compound scores in [-1, 1]."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return np.asarray([analyzer.polarity_scores(t)["compound"] for t in texts], dtype=np.float32)


def vader_predictions(texts: Sequence[str]) -> np.ndarray:
    """1 (positive) where the compound score is ≥ 0."""
    return (vader_scores(texts) >= 0).astype(np.float32)


# ----------------------------------------------------------------------------- TF-IDF + SVM
def tfidf_svm_pipeline(c: float):
    """The unfitted peer: word 1–2-gram + char 2–5-gram TF-IDF (sublinear tf), ``LinearSVC(C=c)``."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline, make_union
    from sklearn.svm import LinearSVC

    features = make_union(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        TfidfVectorizer(analyzer="char", ngram_range=(2, 5), sublinear_tf=True),
    )
    return make_pipeline(features, LinearSVC(C=c))


def fit_tfidf_svm(texts: Sequence[str], labels, seed: int = 0):
    """The peer fitted on ``texts``, its ``C`` chosen by 5-fold CV on the same texts."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    scores = {c: float(np.mean(cross_val_score(tfidf_svm_pipeline(c), list(texts), labels, cv=folds)))
              for c in SVM_C_GRID}
    best = max(scores, key=scores.get)
    log.info("TF-IDF + LinearSVC: 5-fold CV accuracy on the training file %s; C = %g", scores, best)
    return tfidf_svm_pipeline(best).fit(list(texts), labels), {"c": best, "cv_accuracy": scores[best]}


class TfidfSvmPeer:
    """The peer of one model directory, fitted once on its training file and pickled there.

    Args:
        cache: the pickle file (``MODEL/baseline_svm.pkl``); ``None`` never caches.
        train_source: the training file's name, recorded with the cache.
        load_training: returns the training ``Examples`` (called only when the cache is missing
            or was fitted on another file).

    The cache is a pickle: like ``model.keras``, only open model directories you trust.
    """

    def __init__(self, cache: Path | None, train_source: str, load_training):
        self.cache = Path(cache) if cache is not None else None
        self.train_source = str(train_source)
        self._load_training = load_training
        self.pipeline, self.info = self._load_or_fit()

    def _load_or_fit(self):
        if self.cache is not None and self.cache.is_file():
            try:
                with open(self.cache, "rb") as handle:
                    saved = pickle.load(handle)
                if saved.get("train_source") == self.train_source:
                    return saved["pipeline"], saved["info"]
            except Exception:  # noqa: BLE001 - a damaged or foreign cache is simply refitted
                log.warning("%s: unreadable baseline cache, refitting", self.cache)
        examples = self._load_training()
        pipeline, info = fit_tfidf_svm(examples.texts, examples.labels)
        info["train_examples"] = len(examples)
        if self.cache is not None:
            from tasks.common.io import write_bytes_atomic

            try:
                write_bytes_atomic(self.cache, pickle.dumps(
                    {"train_source": self.train_source, "pipeline": pipeline, "info": info}))
            except OSError as err:
                log.warning("%s: cannot cache the baseline (%s)", self.cache, err.strerror or err)
        return pipeline, info

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.pipeline.predict(list(texts)).astype(np.float32)

