"""A linear n-gram member for the sentiment ensemble: piece unigrams and hashed bigrams.

Why: the LSTM members and a linear bag-of-n-grams model make different mistakes. Averaging
many LSTMs levels off near 0.82 on dev (9 ensembles pooled: 0.822), while the mean of an LSTM
ensemble and this linear model scores 0.826–0.831 (3 seeds), although the linear model alone
scores only 0.80. It is fitted by scikit-learn's ``LogisticRegression`` (convex, C by 5-fold
cross-validation on the training file) on the same sentencepiece ids the LSTMs read, and the
fitted weights are loaded into :class:`PieceNgramLogit`, so the member is part of the Keras
model and of every export.

Features of a text with ``n`` real pieces: each piece and each adjacent pair counts
``1/sqrt(n + n - 1)`` (pairs hashed into ``BIGRAM_BUCKETS``). Pads (id 0) count for nothing,
so the pre-padded MCU input gives the same value. The hash is ``(previous · 2039 + current) mod
2^18``, computed on int32 with only ``MUL``, ``ADD``, ``GREATER_EQUAL``, ``CAST`` and ``SUB``,
because TFLM has no int32 ``FLOOR_MOD`` and no int32 ``GATHER``. Every intermediate value stays
below 2^24.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from lstm_core.embedding import Embedding

BIGRAM_BUCKETS = 1 << 18
BIGRAM_MULTIPLIER = 2039  # odd; previous · 2039 + current < 2^24 for vocabularies up to 8,192
MAX_VOCABULARY = 8192
C_GRID = (10.0, 30.0, 100.0, 300.0)


def bigram_bucket(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    """The hashed bucket of each (previous, current) piece pair (NumPy, as the layer computes it)."""
    return (np.asarray(previous, np.int64) * BIGRAM_MULTIPLIER + np.asarray(current, np.int64)) % BIGRAM_BUCKETS


def ngram_features(ids: Sequence[Sequence[int]], vocab_size: int):
    """``[N, vocab_size + BIGRAM_BUCKETS]`` sparse features, as :class:`PieceNgramLogit` weighs them."""
    import scipy.sparse

    rows, cols, values = [], [], []
    for row, pieces in enumerate(ids):
        pieces = np.asarray([p for p in pieces if p != 0], np.int64)
        if pieces.size == 0:
            continue
        columns = np.concatenate([pieces, vocab_size + bigram_bucket(pieces[:-1], pieces[1:])])
        rows.extend([row] * columns.size)
        cols.extend(columns.tolist())
        values.extend([1.0 / np.sqrt(columns.size)] * columns.size)
    matrix = scipy.sparse.csr_matrix((values, (rows, cols)), shape=(len(ids), vocab_size + BIGRAM_BUCKETS))
    matrix.sum_duplicates()
    return matrix


def fit_ngram_weights(ids: Sequence[Sequence[int]], labels: np.ndarray, vocab_size: int, seed: int = 0) -> dict:
    """Fit the logistic regression; returns its weights and the cross-validated choice of C.

    Returns:
        ``{"unigram": [V], "bigram": [BIGRAM_BUCKETS], "bias": float, "C": float, "cv_accuracy": float}``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    if vocab_size > MAX_VOCABULARY:
        raise ValueError(f"the n-gram member's int32 hash needs a vocabulary of at most {MAX_VOCABULARY} pieces")
    features = ngram_features(ids, vocab_size)
    # Only the columns that occur: an L2-penalised weight of a feature that is always 0 is 0, and
    # L-BFGS over the 2^18 hashed columns costs ~40x more per iteration (50 s on 36 texts).
    used = np.unique(features.indices)
    compact = features[:, used]
    labels = np.asarray(labels).astype(int)
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    scores = {c: cross_val_score(LogisticRegression(C=c, max_iter=3000), compact, labels, cv=folds).mean()
              for c in C_GRID}
    best = max(scores, key=scores.get)
    fitted = LogisticRegression(C=best, max_iter=3000).fit(compact, labels)
    weights = np.zeros(features.shape[1], np.float32)
    weights[used] = fitted.coef_[0]
    return {"unigram": weights[:vocab_size], "bigram": weights[vocab_size:], "bias": float(fitted.intercept_[0]),
            "C": best, "cv_accuracy": float(scores[best])}


@keras.saving.register_keras_serializable(package="sentiment")
class PieceNgramLogit(keras.layers.Layer):
    """The linear n-gram member's logit: ``int32 ids [B, T]`` (pre-padded) → ``[B, 1]``.

    Args:
        vocab_size: pieces of the tokenizer (at most ``MAX_VOCABULARY``).

    Its weights are not trained by Keras: :func:`fit_ngram_weights` fits them and
    :meth:`set_fitted` loads them. TFLite ops (all run on TFLM, float and int8): ``STRIDED_SLICE``,
    ``MUL``, ``ADD``, ``GREATER_EQUAL``, ``CAST``, ``SUB``, ``GATHER``, ``NOT_EQUAL``, ``SUM``,
    ``MAXIMUM``, ``RSQRT``.

    Example:

    ```python
    layer = PieceNgramLogit(8000)
    layer.set_fitted(fit_ngram_weights(ids, labels, 8000))
    logit = layer(np.array([[0, 0, 17, 42]], np.int32))
    ```
    """

    def __init__(self, vocab_size: int, **kwargs):
        super().__init__(**kwargs)
        if vocab_size > MAX_VOCABULARY:
            raise ValueError(f"vocab_size must be at most {MAX_VOCABULARY}, got {vocab_size}")
        self.vocab_size = int(vocab_size)
        # lstm_core's Embedding: a plain GATHER in every export, as for the other sentiment tables
        self.unigram = Embedding(self.vocab_size, 1, embeddings_initializer="zeros", trainable=False,
                                 name="unigram")
        self.bigram = Embedding(BIGRAM_BUCKETS, 1, embeddings_initializer="zeros", trainable=False, name="bigram")

    def build(self, input_shape):
        self.unigram.build(input_shape)
        self.bigram.build(input_shape)
        self.bias = self.add_weight(shape=(1,), initializer="zeros", name="bias", trainable=False)

    def set_fitted(self, fitted: dict) -> None:
        """Load :func:`fit_ngram_weights`' result."""
        if not self.built:
            self.build((None, None))
        self.unigram.embeddings.assign(np.asarray(fitted["unigram"], np.float32).reshape(-1, 1))
        self.bigram.embeddings.assign(np.asarray(fitted["bigram"], np.float32).reshape(-1, 1))
        self.bias.assign(np.asarray([fitted["bias"]], np.float32))

    def call(self, ids):
        ids = keras.ops.cast(ids, "int32")
        previous, current = ids[:, :-1], ids[:, 1:]
        bucket = previous * BIGRAM_MULTIPLIER + current
        for bit in range(23, 17, -1):  # bucket mod 2^18 by conditional subtraction (value < 2^24)
            bucket = bucket - keras.ops.cast(keras.ops.greater_equal(bucket, 1 << bit), "int32") * (1 << bit)
        real = keras.ops.cast(keras.ops.not_equal(ids, 0), self.compute_dtype)
        real_pairs = real[:, :-1]  # pre-padded: a real previous piece means a real current one
        total = (keras.ops.sum(self.unigram(ids)[..., 0] * real, axis=1, keepdims=True)
                 + keras.ops.sum(self.bigram(bucket)[..., 0] * real_pairs, axis=1, keepdims=True))
        count = keras.ops.sum(real, axis=1, keepdims=True) + keras.ops.sum(real_pairs, axis=1, keepdims=True)
        return total * keras.ops.rsqrt(keras.ops.maximum(count, 1.0)) + self.bias

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size}
