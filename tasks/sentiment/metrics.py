"""Classification metrics and the two peers every evaluation is compared with.

- ``tfidf_svm``: TF-IDF of word 1–2-grams + character 2–5-grams, ``LinearSVC`` (scikit-learn),
  trained on the model's own training file (the peer of issue 16); ``C`` is chosen by 5-fold
  cross-validation on that file, never on the evaluated data. Cached in the model directory as
  arrays (``baseline_svm.npz``: terms, idf, coefficients), never as a pickle.
- ``vader``: the VADER lexicon + rules (Hutto & Gilbert 2014), compound ≥ 0 → positive.
"""

from __future__ import annotations

import json
import logging
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


CACHE_FORMAT = 1


def svm_parameters(pipeline) -> dict:
    """The fitted peer as plain arrays: each TF-IDF's terms (by column) and idf, the SVM's coefficients."""
    features, svm = pipeline.steps[0][1], pipeline.steps[-1][1]
    arrays = {"coef": svm.coef_.astype(np.float64), "intercept": svm.intercept_.astype(np.float64),
              "classes": np.asarray(svm.classes_, np.float64)}
    for i, (_, vectorizer) in enumerate(features.transformer_list):
        terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
        arrays[f"terms{i}"] = np.frombuffer(json.dumps(terms).encode(), np.uint8)
        arrays[f"idf{i}"] = vectorizer.idf_.astype(np.float64)
    return arrays


class LinearTextPeer:
    """The TF-IDF + linear SVM peer rebuilt from :func:`svm_parameters`: no pickle, nothing runs.

    Args:
        arrays: ``terms{i}`` (UTF-8 JSON list of terms), ``idf{i}``, ``coef``, ``intercept``, ``classes``.
    """

    def __init__(self, arrays: dict):
        from sklearn.base import clone

        template = tfidf_svm_pipeline(1.0).steps[0][1]
        self.vectorizers = []
        for i, (_, vectorizer) in enumerate(template.transformer_list):
            terms = json.loads(bytes(np.asarray(arrays[f"terms{i}"], np.uint8)).decode())
            idf = np.asarray(arrays[f"idf{i}"], np.float64)
            if not (isinstance(terms, list) and all(isinstance(t, str) for t in terms) and len(terms) == len(idf)
                    and len(set(terms)) == len(terms)):
                raise ValueError(f"vectorizer {i}: terms and idf disagree")
            vectorizer = clone(vectorizer).set_params(vocabulary={t: j for j, t in enumerate(terms)})
            vectorizer.idf_ = idf
            self.vectorizers.append(vectorizer)
        width = sum(len(v.vocabulary) for v in self.vectorizers)
        self.coef = np.asarray(arrays["coef"], np.float64).reshape(-1)
        self.intercept = float(np.asarray(arrays["intercept"], np.float64).reshape(-1)[0])
        self.classes = np.asarray(arrays["classes"], np.float64).reshape(-1)
        if self.coef.shape != (width,) or self.classes.shape != (2,):
            raise ValueError(f"coefficients {self.coef.shape} do not fit {width} features")

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """LinearSVC's rule: ``classes[1]`` where ``x·coef + intercept > 0``."""
        from scipy.sparse import hstack

        features = hstack([v.transform(list(texts)) for v in self.vectorizers]).tocsr()
        return self.classes[(features @ self.coef + self.intercept > 0).astype(int)].astype(np.float32)


class TfidfSvmPeer:
    """The peer of one model directory, fitted once on its training file and cached there.

    Args:
        cache: the cache file (``MODEL/baseline_svm.npz``); ``None`` never caches.
        train_source: the training file's name, recorded with the cache.
        load_training: returns the training ``Examples`` (called only when the cache is missing,
            unreadable or was fitted on another file).

    The cache holds only arrays (terms, idf, coefficients) read with ``np.load(allow_pickle=False)``,
    so a planted cache can give wrong peer figures at worst, never run code (older model
    directories' ``baseline_svm.pkl`` is never opened).
    """

    def __init__(self, cache: Path | None, train_source: str, load_training):
        self.cache = Path(cache) if cache is not None else None
        self.train_source = str(train_source)
        self._load_training = load_training
        self.model, self.info = self._load() or self._fit()

    def _load(self):
        if self.cache is None or not self.cache.is_file():
            return None
        try:
            with np.load(self.cache, allow_pickle=False) as saved:
                arrays = {name: saved[name] for name in saved.files}
            meta = json.loads(bytes(arrays.pop("meta")).decode())
            if meta.get("format") != CACHE_FORMAT or meta.get("train_source") != self.train_source:
                return None
            return LinearTextPeer(arrays), dict(meta["info"])
        except Exception as err:  # noqa: BLE001 - a damaged or foreign cache is simply refitted
            log.warning("%s: unreadable baseline cache (%s), refitting", self.cache, str(err)[:120] or type(err).__name__)
            return None

    def _fit(self):
        examples = self._load_training()
        pipeline, info = fit_tfidf_svm(examples.texts, examples.labels)
        info["train_examples"] = len(examples)
        arrays = svm_parameters(pipeline)
        if self.cache is not None:
            self._save(arrays, info)
        return LinearTextPeer(arrays), info

    def _save(self, arrays: dict, info: dict) -> None:
        import io

        from tasks.common.io import write_bytes_atomic

        meta = {"format": CACHE_FORMAT, "train_source": self.train_source, "info": info}
        buffer = io.BytesIO()
        np.savez_compressed(buffer, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
        try:
            write_bytes_atomic(self.cache, buffer.getvalue())
        except OSError as err:
            log.warning("%s: cannot cache the baseline (%s)", self.cache, err.strerror or err)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.predict(texts)
