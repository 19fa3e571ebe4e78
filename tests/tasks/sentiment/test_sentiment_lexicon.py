"""The fixed VADER prior: the per-piece table and the model's non-trainable lookup."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from lstm_core.export import lstm_mode
from tasks.sentiment.config import ModelConfig
from tasks.sentiment.lexicon import PRIOR_COLUMNS, prior_table
from tasks.sentiment.model import PRIOR_LAYER, SentimentTrainer, build_model, inference_model

PIECES = ["<pad>", "<unk>", "\u2581good", "\u2581not", "\u2581very", "\u2581barely", "\u2581dull", "goo", "\u2581the"]


def test_prior_table_marks_whole_words_only():
    table = prior_table(PIECES)
    assert table.shape == (len(PIECES), len(PRIOR_COLUMNS)) and table.dtype == np.float32
    valence, negation, intensifier = table.T
    assert valence[2] > 0 > valence[6]  # "good" positive, "dull" negative
    assert negation[3] == 1 and negation[2] == 0  # "not" is a negator
    assert intensifier[4] == 1 and intensifier[5] == -1  # "very" boosts, "barely" dampens
    assert not table[[0, 1, 7, 8]].any()  # specials, a word fragment and a neutral word: no prior
    with pytest.raises(ValueError, match="unknown lexicon"):
        prior_table(PIECES, "afinn")


def test_prior_stays_fixed_while_the_model_trains():
    keras.utils.set_random_seed(2)
    vocab = 40
    prior = np.zeros((vocab, len(PRIOR_COLUMNS)), np.float32)
    prior[10:20, 0] = 0.5  # "positive words"
    prior[20:30, 0] = -0.5
    config = ModelConfig(vocab_size=vocab, embedding_dim=4, units=4, lexicon="vader")
    model = build_model(config, seed=2, prior=prior)
    lookup = model.get_layer(PRIOR_LAYER)
    np.testing.assert_array_equal(lookup.get_weights()[0], prior)
    assert not lookup.trainable and all(w is not lookup.embeddings for w in model.trainable_weights)
    with pytest.raises(ValueError, match="rows"):
        build_model(config, prior=prior[:5])

    trainer = SentimentTrainer(model, adversarial_epsilon=1.0)
    trainer(np.zeros((1, 2), np.int32))
    trainer.compile(optimizer=keras.optimizers.Adam(0.05), loss={"probability": keras.losses.BinaryCrossentropy()},
                    metrics={"probability": [keras.metrics.BinaryAccuracy(name="accuracy")]})
    rng = np.random.default_rng(0)
    ids = rng.integers(10, 30, size=(64, 5)).astype(np.int32)
    labels = (ids[:, -1] < 20).astype(np.float32)  # the last token's prior decides
    learned = np.array(model.get_layer("embedding").embeddings)
    history = trainer.fit(ids, {"probability": labels}, epochs=10, batch_size=16, verbose=0)
    assert history.history["accuracy"][-1] > 0.8
    np.testing.assert_array_equal(lookup.get_weights()[0], prior)
    assert not np.allclose(learned, np.array(model.get_layer("embedding").embeddings))

    classifier = inference_model(model)  # the fused (exported) path computes the same
    padded = np.array([[0, 0, 12, 25, 15]], np.int32)
    expected = np.asarray(classifier(padded))
    with lstm_mode(classifier, "fused"):
        np.testing.assert_allclose(np.asarray(classifier(padded)), expected, atol=1e-6)
