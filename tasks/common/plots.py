"""Figures written next to evaluation results (matplotlib, headless)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from tasks.common.io import write_bytes_atomic


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Counts ``cm[true, pred]``."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def confusion_matrix_png(cm: np.ndarray, labels, title: str = "") -> bytes:
    plt = _pyplot()
    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 + 0.6 * n), max(3.5, 1.0 + 0.55 * n)), dpi=100)
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    peak = cm.max() if cm.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > peak / 2 else "black", fontsize=8)
    fig.tight_layout()
    return figure_png(fig)


def figure_png(fig) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def save_png(path, png: bytes) -> Path:
    return write_bytes_atomic(path, png)
