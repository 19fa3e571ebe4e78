"""The linear n-gram member: the Keras layer computes exactly what scikit-learn was fitted on."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.sentiment.model import average_members, ngram_model
from tasks.sentiment.ngram import (
    BIGRAM_BUCKETS, C_GRID, MAX_VOCABULARY, PieceNgramLogit, bigram_bucket, fit_ngram_weights, ngram_features,
)
from tasks.sentiment.data import pre_pad

RNG = np.random.default_rng(5)
VOCAB = 8000


def random_texts(n, vocab=VOCAB):
    return [list(RNG.integers(1, vocab, RNG.integers(1, 20))) for _ in range(n)]


def test_layer_logit_equals_the_fitted_linear_function():
    texts = random_texts(30)
    weights = {"unigram": RNG.standard_normal(VOCAB), "bigram": RNG.standard_normal(BIGRAM_BUCKETS), "bias": -0.4}
    layer = PieceNgramLogit(VOCAB)
    layer.set_fitted(weights)
    expected = ngram_features(texts, VOCAB) @ np.concatenate([weights["unigram"], weights["bigram"]]) + weights["bias"]
    for width in (None, 25):  # true lengths, then pre-padded to a fixed MCU width: same value
        got = np.concatenate([np.asarray(layer(pre_pad([t], width))).reshape(-1) for t in texts])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_hash_in_the_graph_matches_numpy_at_the_largest_ids():
    previous = np.array([MAX_VOCABULARY - 1, 0, 1, 4000, 8191])
    current = np.array([MAX_VOCABULARY - 1, 5, 0, 3999, 1])
    assert bigram_bucket(previous, current).max() < BIGRAM_BUCKETS
    assert int(previous.max()) * 2039 + int(current.max()) < 1 << 24  # the layer's int32 steps stay exact
    layer = PieceNgramLogit(MAX_VOCABULARY)
    bigram = np.zeros(BIGRAM_BUCKETS)
    bigram[bigram_bucket(8191, 8191)] = 1.0
    layer.set_fitted({"unigram": np.zeros(MAX_VOCABULARY), "bigram": bigram, "bias": 0.0})
    logit = float(np.asarray(layer(np.array([[0, 8191, 8191]], np.int32))).reshape(-1)[0])
    assert logit == pytest.approx(1 / np.sqrt(3))  # 2 pieces + 1 pair, the pair's bucket hit


def test_fit_learns_a_pattern_and_the_ensemble_averages_families():
    texts = random_texts(200, vocab=50)
    labels = np.array([int(7 in t or (3 in t and 4 in t)) for t in texts])
    fitted = fit_ngram_weights(texts, labels, 50, seed=1)
    assert fitted["C"] in C_GRID and fitted["cv_accuracy"] > 0.7
    member = ngram_model(50, fitted)
    p = np.asarray(member(pre_pad(texts))["probability"]).reshape(-1)
    assert ((p > 0.5) == labels).mean() > 0.85

    import keras

    ids = keras.Input(shape=(None,), dtype="int32")
    constant = keras.Model(ids, {"probability": keras.ops.ones_like(ids[:, :1], "float32") * 0.2})
    ensemble = average_members([constant, constant], member)
    averaged = np.asarray(ensemble(pre_pad(texts[:5]))["probability"]).reshape(-1)
    np.testing.assert_allclose(averaged, 0.5 * 0.2 + 0.5 * p[:5], rtol=1e-5)


def test_vocabulary_limit_is_enforced():
    with pytest.raises(ValueError, match="at most"):
        PieceNgramLogit(MAX_VOCABULARY + 1)
