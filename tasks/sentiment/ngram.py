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

With ``negation_scope`` (Das & Chen 2001, Pang, Lee & Vaithyanathan 2002) a piece between a negator
(VADER's list, "not", "never", "nothing", ..., and "n't", which sentencepiece may split into ``n ' t``)
and the next punctuation mark (``. , ; : ! ?``) counts as a different feature, its id plus the
vocabulary size ("not bad": ``bad`` becomes ``NOT_bad``), for unigrams and bigrams alike. The scope is
computed in the graph from a fixed per-piece table (:func:`scope_flags`) with ``CUMSUM``,
``EQUAL``, ``LESS`` and ``SUM`` over a ``[B, T, T]`` pair grid (all run on TFLM); marked ids stay below 2^14, so
the hash stays below 2^25.
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
SCOPE_FLAGS = ("negator", "punctuation", "ends_in_n", "apostrophe", "t")
SCOPE_PUNCTUATION = frozenset(".,;:!?")


def scope_flags(pieces: Sequence[str]) -> np.ndarray:
    """``[len(pieces), 5]`` float32 0/1 per piece: the :data:`SCOPE_FLAGS` the negation scope is read from.

    A negator is a whole word of VADER's negator list (or "n't"); "n't" split by sentencepiece is
    recognised as a piece ending in "n", then an apostrophe, then "t" ("▁don ' t", "▁was n ' t").
    """
    from tasks.sentiment.lexicon import WORD_BOUNDARY, vader_lists

    negators = vader_lists()[1] | {"n't"}
    flags = np.zeros((len(pieces), len(SCOPE_FLAGS)), np.float32)
    for index, piece in enumerate(pieces):
        word = piece.replace(WORD_BOUNDARY, "").strip().lower()
        if not word or (word.startswith("<") and word.endswith(">")):
            continue
        flags[index] = (word in negators, set(word) <= SCOPE_PUNCTUATION, word.endswith("n"),
                        word in ("'", "\u2019"), word == "t")
    return flags


def negation_scope(ids: Sequence[int], flags: np.ndarray) -> np.ndarray:
    """Per piece of one text: True between a negator and the next punctuation (NumPy reference)."""
    ids = np.asarray(ids, np.int64)
    f = flags[ids] > 0.5
    negator = f[:, 0].copy()
    if ids.size > 2:
        negator[2:] |= f[:-2, 2] & f[1:-1, 3] & f[2:, 4]
    scope, inside = np.zeros(ids.size, bool), False
    for t in range(ids.size):
        if f[t, 1]:
            inside = False
            continue
        scope[t] = inside
        inside = inside or bool(negator[t])
    return scope


def mark_negation_scope(ids: Sequence[Sequence[int]], flags: np.ndarray, vocab_size: int) -> list[np.ndarray]:
    """Each text's ids with the pieces in a negation scope moved up by ``vocab_size`` (pads stay 0)."""
    return [np.asarray(t, np.int64) + vocab_size * negation_scope(t, flags) for t in ids]


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


def fit_ngram_weights(ids: Sequence[Sequence[int]], labels: np.ndarray, vocab_size: int, seed: int = 0,
                      flags: np.ndarray | None = None) -> dict:
    """Fit the logistic regression; returns its weights and the cross-validated choice of C.

    Args:
        flags: :func:`scope_flags` of the vocabulary: features with negation scope (unigram weights
            for ``2 · vocab_size`` ids); None: without.

    Returns:
        ``{"unigram": [V] (with flags: [2V]), "bigram": [BIGRAM_BUCKETS], "bias": float, "C": float,
        "cv_accuracy": float}`` (with flags also ``"scope_flags"``).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    if vocab_size > MAX_VOCABULARY:
        raise ValueError(f"the n-gram member's int32 hash needs a vocabulary of at most {MAX_VOCABULARY} pieces")
    width = vocab_size
    if flags is not None:
        ids, width = mark_negation_scope(ids, flags, vocab_size), 2 * vocab_size
    features = ngram_features(ids, width)
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
    result = {"unigram": weights[:width], "bigram": weights[width:], "bias": float(fitted.intercept_[0]),
              "C": best, "cv_accuracy": float(scores[best])}
    return result if flags is None else {**result, "scope_flags": np.asarray(flags, np.float32)}


@keras.saving.register_keras_serializable(package="sentiment")
class PieceNgramLogit(keras.layers.Layer):
    """The linear n-gram member's logit: ``int32 ids [B, T]`` (pre-padded) → ``[B, 1]``.

    Args:
        vocab_size: pieces of the tokenizer (at most ``MAX_VOCABULARY``).
        negation_scope: pieces between a negator and the next punctuation mark are separate
            features (see the module docstring); adds ``GREATER``, ``CUMSUM``, ``EQUAL``, ``LESS``,
            ``LOGICAL_AND``, ``CONCATENATION``, ``MAXIMUM``.

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

    def __init__(self, vocab_size: int, negation_scope: bool = False, **kwargs):
        super().__init__(**kwargs)
        if vocab_size > MAX_VOCABULARY:
            raise ValueError(f"vocab_size must be at most {MAX_VOCABULARY}, got {vocab_size}")
        self.vocab_size = int(vocab_size)
        self.negation_scope = bool(negation_scope)
        # lstm_core's Embedding: a plain GATHER in every export, as for the other sentiment tables
        rows = self.vocab_size * (2 if self.negation_scope else 1)
        self.unigram = Embedding(rows, 1, embeddings_initializer="zeros", trainable=False, name="unigram")
        if self.negation_scope:
            self.flags = Embedding(self.vocab_size, len(SCOPE_FLAGS), embeddings_initializer="zeros",
                                   trainable=False, name="scope_flags")
        self.bigram = Embedding(BIGRAM_BUCKETS, 1, embeddings_initializer="zeros", trainable=False, name="bigram")

    def build(self, input_shape):
        self.unigram.build(input_shape)
        self.bigram.build(input_shape)
        if self.negation_scope:
            self.flags.build(input_shape)
        self.bias = self.add_weight(shape=(1,), initializer="zeros", name="bias", trainable=False)

    def set_fitted(self, fitted: dict) -> None:
        """Load :func:`fit_ngram_weights`' result."""
        if not self.built:
            self.build((None, None))
        self.unigram.embeddings.assign(np.asarray(fitted["unigram"], np.float32).reshape(-1, 1))
        self.bigram.embeddings.assign(np.asarray(fitted["bigram"], np.float32).reshape(-1, 1))
        self.bias.assign(np.asarray([fitted["bias"]], np.float32))
        if self.negation_scope:
            self.flags.embeddings.assign(np.asarray(fitted["scope_flags"], np.float32))

    def _scope(self, ids):
        """int32 ``[B, T]``: 1 where a negator precedes the piece within its stretch between punctuation.

        Counted in float32 (small integers, exact), as TFLM runs ``CUMSUM`` and ``SUM`` on float32 and
        int8 only; comparisons, not casts, turn counts into flags (an int8 table holds ~1, not 1).
        """
        flags = keras.ops.cast(keras.ops.greater(self.flags(ids), 0.5), "float32")
        negator, punctuation, ends_in_n, apostrophe, t = (flags[..., i] for i in range(len(SCOPE_FLAGS)))
        split = ends_in_n[:, :-2] * apostrophe[:, 1:-1] * t[:, 2:]  # "n ' t": the "t" is the negator
        negator = keras.ops.maximum(negator, keras.ops.concatenate([keras.ops.zeros_like(negator[:, :2]), split], 1))
        stretch = keras.ops.cumsum(punctuation, axis=1)  # which stretch between punctuation marks
        position = keras.ops.cumsum(keras.ops.ones_like(negator), axis=1)
        same = keras.ops.equal(stretch[:, :, None], stretch[:, None, :])
        earlier = keras.ops.less(position[:, None, :], position[:, :, None])  # [b, t, s]: s before t
        pairs = keras.ops.cast(keras.ops.logical_and(same, earlier), "float32")
        count = keras.ops.sum(pairs * negator[:, None, :], axis=2)
        return keras.ops.cast(keras.ops.greater(count, 0.5), "int32")

    def call(self, ids):
        ids = keras.ops.cast(ids, "int32")
        if self.negation_scope:
            ids = ids + self.vocab_size * self._scope(ids)
        previous, current = ids[:, :-1], ids[:, 1:]
        bucket = previous * BIGRAM_MULTIPLIER + current
        top = 24 if self.negation_scope else 23  # marked ids < 2^14: bucket < 2^25
        for bit in range(top, 17, -1):  # bucket mod 2^18 by conditional subtraction
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
        return {**super().get_config(), "vocab_size": self.vocab_size, "negation_scope": self.negation_scope}
