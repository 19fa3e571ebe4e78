"""Model construction, the adversarial trainer, and stdin texts for predict."""

from __future__ import annotations

import dataclasses
import io
import sys

import keras
import numpy as np
import pytest

from tasks.common.errors import UserError
from lstm_core.export import lstm_mode
from tasks.sentiment.config import ModelConfig
from tasks.sentiment.model import SentimentTrainer, build_model, inference_model, probability_of

CONFIG = ModelConfig(vocab_size=50, embedding_dim=8, units=4)


def test_outputs_and_inference_model():
    model = build_model(ModelConfig(vocab_size=50, embedding_dim=8, units=4, rating_head=True), seed=0)
    ids = np.array([[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]], np.int32)
    outputs = model(ids)
    assert set(outputs) == {"probability", "rating"} and outputs["rating"].shape == (2, 1)
    probability = np.asarray(inference_model(model)(ids))
    assert probability.shape == (2, 1) and np.all((probability > 0) & (probability < 1))
    np.testing.assert_allclose(probability_of(outputs), probability[:, 0], atol=1e-6)


def test_keras_computes_what_the_fused_export_computes():
    """No mask: the training graph and the fused TFLite LSTM see the same pre-padded steps."""
    model = inference_model(build_model(CONFIG, seed=0))
    ids = np.array([[0, 0, 0, 5, 6, 7], [9, 8, 7, 6, 5, 4]], np.int32)
    expected = np.asarray(model(ids))
    with lstm_mode(model, "fused"):
        np.testing.assert_allclose(np.asarray(model(ids)), expected, atol=1e-6)
    # the last step is what counts most: changing the last real token changes the output
    assert not np.allclose(np.asarray(model(np.array([[0, 0, 0, 5, 6, 8]], np.int32))), expected[:1], atol=1e-7)


def test_wide_term_ignores_leading_pads_and_reaches_the_logit():
    from tasks.sentiment.model import BagOfPieces

    layer = BagOfPieces(50)
    layer.build((None, None))
    rng = np.random.default_rng(0)
    layer.weights[0].assign(rng.standard_normal((50, 1)).astype("float32"))
    short, padded = np.array([[5, 6, 7]], np.int32), np.array([[0, 0, 0, 0, 5, 6, 7]], np.int32)
    np.testing.assert_allclose(np.asarray(layer(padded)), np.asarray(layer(short)), atol=1e-6)
    expected = layer.weights[0].numpy()[[5, 6, 7], 0].mean()
    assert float(np.asarray(layer(short))[0, 0]) == pytest.approx(expected, abs=1e-5)
    assert float(np.asarray(layer(np.zeros((1, 4), np.int32)))[0, 0]) == 0.0  # all pads: nothing

    model = build_model(dataclasses.replace(CONFIG, wide=True), seed=0)
    wide = model.get_layer("wide")
    assert np.all(np.asarray(wide(short)) == 0)  # starts as the LSTM alone
    wide.weights[0].assign(rng.standard_normal((50, 1)).astype("float32"))
    probability = inference_model(model)
    logit = keras.Model(model.input, model.get_layer("logit").output)
    for ids in (short, padded):  # P = sigmoid(LSTM logit + wide term), the wide term the same for both
        np.testing.assert_allclose(np.asarray(probability(ids)),
                                   1 / (1 + np.exp(-(np.asarray(logit(ids)) + np.asarray(wide(short))))), atol=1e-5)


def test_max_pooling_skips_pads():
    from tasks.sentiment.model import LastAndMaxPool

    outputs = np.array([[[0.9, 0.9], [-0.5, 0.2], [-0.7, -0.1]]], np.float32)  # the pad step has the largest
    features = np.asarray(LastAndMaxPool()(outputs, np.array([[0, 4, 5]], np.int32)))
    np.testing.assert_allclose(features, [[-0.7, -0.1, -0.5, 0.2]], atol=1e-6)  # last output, max over real steps
    config = dataclasses.replace(CONFIG, pooling=("last", "last+max"))
    for member, pooled in enumerate([False, True, False]):  # the members take the kinds in turn
        model = build_model(config, seed=0, member=member)
        assert model.get_layer("lstm").return_sequences == pooled
        assert model.get_layer("dropout").output.shape[-1] == (8 if pooled else 4)


@pytest.mark.parametrize("epsilon,variant", [(0.0, {}), (1.0, {}), (1.0, {"wide": True}),
                                             (1.0, {"pooling": ("last+max",)})])
def test_trainer_fits_and_shares_the_model_weights(epsilon, variant):
    keras.utils.set_random_seed(1)
    model = build_model(dataclasses.replace(CONFIG, **variant), seed=1)
    trainer = SentimentTrainer(model, adversarial_epsilon=epsilon)
    trainer(np.zeros((1, 2), np.int32))
    trainer.compile(optimizer=keras.optimizers.Adam(0.05), loss={"probability": keras.losses.BinaryCrossentropy()},
                    metrics={"probability": [keras.metrics.BinaryAccuracy(name="accuracy")]})
    rng = np.random.default_rng(0)
    ids = rng.integers(2, 50, size=(64, 6)).astype(np.int32)
    labels = (ids[:, -1] > 25).astype(np.float32)  # the last token decides
    before = [np.array(w) for w in model.weights]
    history = trainer.fit(ids, {"probability": labels}, epochs=15, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.8
    assert any(not np.allclose(b, np.array(w)) for b, w in zip(before, model.weights))
    assert len(trainer.trainable_weights) == len(model.trainable_weights)


def test_stdin_texts(monkeypatch):
    from tasks.sentiment.evaluate import read_stdin_texts

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("good film\n\n  \nbad film\n".encode())))
    assert read_stdin_texts() == ["good film", "bad film"]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ok\n\xff\n")))
    with pytest.raises(UserError, match="<stdin>:2"):
        read_stdin_texts()
