"""Keyword-spotting metrics: accuracy, per word, per speaker, confusion matrix (+ its picture)."""

from __future__ import annotations

import numpy as np

from tasks.common import plots


def classification_metrics(labels_true, labels_predicted, words, speakers=None, max_speakers: int = 50) -> dict:
    """Accuracy, per-word and per-speaker accuracy and the confusion matrix, JSON-ready.

    Args:
        labels_true: true word indices ``[N]``.
        labels_predicted: predicted word indices ``[N]``.
        words: the label names (index order).
        speakers: the speaker of each clip (``[N]``), or None.
        max_speakers: per-speaker accuracy only up to this many speakers (else the JSON explodes).
    """
    labels_true = np.asarray(labels_true)
    labels_predicted = np.asarray(labels_predicted)
    cm = plots.confusion_matrix(labels_true, labels_predicted, len(words))
    result = {
        "accuracy": float(np.mean(labels_true == labels_predicted)) if len(labels_true) else float("nan"),
        "per_class_accuracy": {w: float(cm[i, i] / cm[i].sum()) for i, w in enumerate(words) if cm[i].sum()},
        "confusion_matrix": cm.tolist(),
        "labels": list(words),
    }
    if speakers is not None:
        speakers = np.asarray(speakers, dtype=object)
        names = sorted(set(speakers))
        if len(names) <= max_speakers:
            result["per_speaker_accuracy"] = {
                name: float(np.mean(labels_predicted[speakers == name] == labels_true[speakers == name]))
                for name in names
            }
    return result


def confusion_png(metrics: dict, title: str) -> bytes:
    """The confusion matrix of :func:`classification_metrics` as a PNG."""
    return plots.confusion_matrix_png(np.asarray(metrics["confusion_matrix"]), metrics["labels"], title=title)
