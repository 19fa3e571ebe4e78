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


SCOPE_PIECES = ["<pad>", "<unk>", "\u2581not", "\u2581bad", ".", "\u2581good", "\u2581was", "n", "'", "t", ",",
                "\u2581at", "\u2581don", "\u2581never"]


def test_negation_scope_runs_from_a_negator_to_the_next_punctuation():
    from tasks.sentiment.ngram import mark_negation_scope, negation_scope, scope_flags

    flags = scope_flags(SCOPE_PIECES)
    assert flags[2, 0] == 1 and flags[4, 1] == 1 and flags[10, 1] == 1 and flags[8, 3] == 1 and flags[9, 4] == 1
    assert flags[12, 2] == 1 and flags[7, 2] == 1 and not flags[[0, 1, 3, 5]].any()
    # "not bad at all. good" / "was n ' t good, bad" / "don ' t" at the end / "never" then "not" in its scope
    cases = {(2, 3, 11, 4, 5): [0, 1, 1, 0, 0], (6, 7, 8, 9, 5, 10, 3): [0, 0, 0, 0, 1, 0, 0],
             (3, 12, 8, 9): [0, 0, 0, 0], (13, 2, 3): [0, 1, 1], (8, 9, 3): [0, 0, 0]}
    for ids, expected in cases.items():
        assert negation_scope(ids, flags).astype(int).tolist() == expected, ids
    marked = mark_negation_scope([[2, 3]], flags, len(SCOPE_PIECES))[0]
    assert marked.tolist() == [2, 3 + len(SCOPE_PIECES)]


def test_negation_scope_in_the_graph_equals_the_fitted_features():
    from tasks.sentiment.ngram import mark_negation_scope, scope_flags

    flags = scope_flags(SCOPE_PIECES)
    vocab = len(SCOPE_PIECES)
    texts = [list(RNG.integers(2, vocab, RNG.integers(1, 15))) for _ in range(40)]
    weights = {"unigram": RNG.standard_normal(2 * vocab), "bigram": RNG.standard_normal(BIGRAM_BUCKETS),
               "bias": 0.3, "scope_flags": flags}
    layer = PieceNgramLogit(vocab, negation_scope=True)
    layer.set_fitted(weights)
    marked = mark_negation_scope(texts, flags, vocab)
    expected = ngram_features(marked, 2 * vocab) @ np.concatenate([weights["unigram"], weights["bigram"]]) + 0.3
    got = np.asarray(layer(pre_pad(texts, 16))).reshape(-1)  # pre-padded, as the MCU input
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    largest = bigram_bucket(2 * MAX_VOCABULARY - 1, 2 * MAX_VOCABULARY - 1)
    assert (2 * MAX_VOCABULARY - 1) * 2040 < 1 << 25 and largest < BIGRAM_BUCKETS


def test_fit_with_negation_scope_tells_not_bad_from_bad():
    from tasks.sentiment.ngram import scope_flags

    flags = scope_flags(SCOPE_PIECES)
    texts = [[3, 4], [5, 4], [2, 3, 4], [2, 5, 4], [6, 3, 4], [6, 7, 8, 9, 3, 4]] * 20
    labels = np.array([0, 1, 1, 0, 0, 1] * 20)
    fitted = fit_ngram_weights(texts, labels, len(SCOPE_PIECES), seed=1, flags=flags)
    assert fitted["unigram"].shape == (2 * len(SCOPE_PIECES),)
    member = ngram_model(len(SCOPE_PIECES), fitted, negation_scope=True)
    p = np.asarray(member(pre_pad([[2, 3, 4], [3, 4], [6, 7, 8, 9, 3, 4]]))["probability"]).reshape(-1)
    assert p[0] > 0.5 > p[1] and p[2] > 0.5
