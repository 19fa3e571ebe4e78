"""The sentiment model and its predictors (Keras, LiteRT).

Model: ``int32 token ids [B, T]`` (pre-padded with 0) → ``Embedding`` → ``SpatialDropout1D`` →
``lstm_core.LSTM`` (last output = the text's last real token; with ``last+max`` pooling also
the maximum of its outputs over the real tokens, :class:`LastAndMaxPool`) → ``Dropout`` → ``Dense(1)`` →
sigmoid = P(positive) (with ``wide``, :class:`BagOfPieces` of the ids is added to the logit
first); with ``rating_head`` a second ``Dense(1)`` regresses the (standardised)
rating, an auxiliary loss only. No mask: the model is trained on exactly what the fused TFLite
LSTM computes, so a fixed-length export only adds leading zeros. With ``lexicon`` a second,
non-trainable embedding (:mod:`tasks.sentiment.lexicon`: VADER valence, negator, intensifier
per piece) is concatenated to the learned one: one more ``GATHER`` and a ``CONCATENATION``.

:class:`SentimentTrainer` wraps the model for ``fit`` and adds adversarial training on the
embeddings (Miyato, Dai & Goodfellow 2017): each batch is also scored with the embeddings moved
by ``epsilon`` along the loss gradient's direction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from lstm_core import LSTM
from lstm_core.embedding import Embedding
from tasks.sentiment.config import ModelConfig
from tasks.sentiment.artifacts import Tokenizer
from tasks.sentiment.data import pre_pad
from tasks.sentiment.lexicon import PRIOR_COLUMNS
from tasks.sentiment.ngram import PieceNgramLogit  # noqa: F401 (registered for loading model.keras)

ENCODER_LAYERS = ("embedding_dropout", "lstm", "pool", "dropout")
PRIOR_LAYER = "lexicon_prior"
CONCAT_LAYER = "embedding_and_prior"
HEAD_LAYERS = ("logit", "wide", "wide_and_deep", "probability", "rating")


@keras.saving.register_keras_serializable(package="sentiment")
class BagOfPieces(keras.layers.Layer):
    """The wide term beside the LSTM (wide & deep, fastText-style): the mean of a learned weight
    per piece over a text's real tokens. Pads (id 0) count for nothing, so leading zeros
    (pre-padding, the fixed-length MCU input) leave it unchanged. Starts at zero: the LSTM alone.

    Input ``int32 ids [B, T]``, output ``[B, 1]`` (added to the classifier's logit). TFLite ops
    (all run on TFLM, float and int8): ``GATHER``, ``STRIDED_SLICE``, ``NOT_EQUAL``, ``CAST``,
    ``MUL``, ``SUM``, ``MAXIMUM``, ``DIV``. (Hashed bigrams would need ``FLOOR_MOD`` or a
    ``GATHER`` on int32, which TFLM does not run.)
    """

    def __init__(self, vocab_size: int, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        self.unigram = Embedding(self.vocab_size, 1, embeddings_initializer="zeros", name="unigram")

    def build(self, input_shape):
        self.unigram.build(input_shape)

    def call(self, ids):
        ids = keras.ops.cast(ids, "int32")
        real = keras.ops.cast(keras.ops.not_equal(ids, 0), self.compute_dtype)
        total = keras.ops.sum(self.unigram(ids)[..., 0] * real, axis=1, keepdims=True)
        return total / keras.ops.maximum(keras.ops.sum(real, axis=1, keepdims=True), 1.0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size}


@keras.saving.register_keras_serializable(package="sentiment")
class LastAndMaxPool(keras.layers.Layer):
    """The LSTM's last output beside the maximum of its outputs over the text's real tokens
    (max pooling, as in InferSent's BiLSTM-max): ``[outputs [B, T, U], ids [B, T]] -> [B, 2U]``.

    Pad steps (id 0) are lowered below any real output (LSTM outputs lie in (-1, 1)), so they
    never win the maximum. TFLite ops: ``STRIDED_SLICE``, ``NOT_EQUAL``, ``CAST``, ``MUL``,
    ``ADD``, ``REDUCE_MAX``, ``CONCATENATION`` (all run on TFLM, float and int8).
    """

    def call(self, outputs, ids):
        real = keras.ops.cast(keras.ops.not_equal(ids, 0), outputs.dtype)[..., None]
        pooled = keras.ops.max(outputs * real + (real - 1.0) * 2.0, axis=1)
        return keras.ops.concatenate([outputs[:, -1, :], pooled], axis=-1)

    def compute_output_shape(self, outputs_shape, ids_shape=None):
        return (outputs_shape[0], 2 * outputs_shape[-1])


def _encode(layers: dict, ids, embedded, training=None):
    """Embeddings → features of the classifier: dropout, LSTM, (pooling), dropout."""
    x = layers["embedding_dropout"](embedded, training=training)
    x = layers["lstm"](x, training=training)
    if "pool" in layers:
        x = layers["pool"](x, ids)
    return layers["dropout"](x, training=training)


def build_model(config: ModelConfig, seed: int | None = None, name: str = "sentiment_lstm",
                prior: np.ndarray | None = None, member: int = 0) -> keras.Model:
    """One member: token ids → ``{"probability": P(positive) [B, 1]}`` (+ ``"rating" [B, 1]``).

    Args:
        config: the architecture.
        seed: seed of the initializers and dropouts.
        name: the model's name.
        prior: with ``config.lexicon``, the fixed ``[vocab_size, k]`` per-token table
            (:func:`tasks.sentiment.lexicon.prior_table`); None: zeros (a model whose weights
            are loaded next).
        member: the member's index (it takes ``config.pooling[member % len(config.pooling)]``).

    Example:

    ```python
    model = build_model(ModelConfig(vocab_size=8000), seed=1)
    model(np.array([[0, 0, 17, 42]], np.int32))[0]  # P(positive) of a 2-token text
    ```
    """
    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    embedded = keras.layers.Embedding(config.vocab_size, config.embedding_dim, name="embedding")(ids)
    if config.lexicon:
        width = len(PRIOR_COLUMNS) if prior is None else int(prior.shape[1])
        lookup = keras.layers.Embedding(config.vocab_size, width, embeddings_initializer="zeros", trainable=False,
                                        name=PRIOR_LAYER)
        known = lookup(ids)
        if prior is not None:
            if prior.shape[0] != config.vocab_size:
                raise ValueError(f"prior table has {prior.shape[0]} rows for a vocabulary of {config.vocab_size}")
            lookup.set_weights([np.asarray(prior, np.float32)])
        embedded = keras.layers.Concatenate(name=CONCAT_LAYER)([embedded, known])
    kinds = config.pooling or ("last",)
    pooled = kinds[member % len(kinds)] == "last+max"
    layers = {
        "embedding_dropout": keras.layers.SpatialDropout1D(config.embedding_dropout, seed=seed,
                                                           name="embedding_dropout"),
        "lstm": LSTM(config.units, seed=seed, return_sequences=pooled, name="lstm"),
        "dropout": keras.layers.Dropout(config.dropout, seed=seed, name="dropout"),
    }
    if pooled:
        layers["pool"] = LastAndMaxPool(name="pool")
    heads = {"logit": keras.layers.Dense(1, name="logit"),
             "probability": keras.layers.Activation("sigmoid", name="probability")}
    if config.wide:
        heads["wide"] = BagOfPieces(config.vocab_size, name="wide")
        heads["wide_and_deep"] = keras.layers.Add(name="wide_and_deep")
    if config.rating_head:
        heads["rating"] = keras.layers.Dense(1, name="rating")
    return keras.Model(ids, _heads(heads, ids, _encode(layers, ids, embedded)), name=name)


def ngram_model(vocab_size: int, fitted: dict | None = None, negation_scope: bool = False) -> keras.Model:
    """The linear n-gram member (:mod:`tasks.sentiment.ngram`): ids → ``{"probability": [B, 1]}``."""
    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    layer = PieceNgramLogit(vocab_size, negation_scope=negation_scope, name="ngram_logit")
    probability = keras.layers.Activation("sigmoid", name="probability")(layer(ids))
    if fitted is not None:
        layer.set_fitted(fitted)
    return keras.Model(ids, {"probability": probability}, name="ngram_member")


def average_members(members: Sequence[keras.Model], ngram: keras.Model | None = None) -> keras.Model:
    """The ensemble: the mean of the members' P(positive), as ``{"probability": [B, 1]}``.

    With ``ngram`` (:func:`ngram_model`) the served probability is the mean of the LSTMs' mean and
    the n-gram member's: two model families, weighted equally. One member alone is returned as it is.
    """
    if len(members) == 1 and ngram is None:
        return members[0]
    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    probabilities = [member(ids)["probability"] for member in members]
    if ngram is None:
        average = keras.layers.Average(name="probability")(probabilities)
    else:
        lstm = probabilities[0] if len(members) == 1 else keras.layers.Average(name="lstm_members")(probabilities)
        average = keras.layers.Average(name="probability")([lstm, ngram(ids)["probability"]])
    return keras.Model(ids, {"probability": average}, name="sentiment_ensemble")


def _heads(heads: dict, ids, features) -> dict:
    """``{"probability"[, "rating"]}`` from the LSTM's features (and, with a wide term, the ids)."""
    logit = heads["logit"](features)
    if "wide" in heads:
        logit = heads["wide_and_deep"]([logit, heads["wide"](ids)])
    outputs = {"probability": heads["probability"](logit)}
    if "rating" in heads:
        outputs["rating"] = heads["rating"](features)
    return outputs


def inference_model(model: keras.Model) -> keras.Model:
    """The P(positive) output only (what is exported and served)."""
    return keras.Model(model.input, model.get_layer("probability").output, name="sentiment_classifier")


class SentimentTrainer(keras.Model):
    """``fit`` wrapper around a :func:`build_model` model, with optional adversarial training.

    Args:
        model: the model to train (its layers are shared; save ``model``, not the trainer).
        adversarial_epsilon: L2 norm (per text) of the adversarial move of the embeddings; 0: off.
    """

    def __init__(self, model: keras.Model, adversarial_epsilon: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.adversarial_epsilon = float(adversarial_epsilon)
        self.embedding = model.get_layer("embedding")
        names = {layer.name for layer in model.layers}
        self.prior = model.get_layer(PRIOR_LAYER) if PRIOR_LAYER in names else None
        self.concat = model.get_layer(CONCAT_LAYER) if CONCAT_LAYER in names else None
        self.encoder = {layer.name: layer for layer in model.layers if layer.name in ENCODER_LAYERS}
        self.heads = {layer.name: layer for layer in model.layers if layer.name in HEAD_LAYERS}

    def call(self, ids, training=False):
        return self.model(ids, training=training)

    def _embed(self, ids):
        """The encoder's input: learned embeddings (+ the fixed prior columns); perturbed as one."""
        embedded = self.embedding(ids)
        return embedded if self.prior is None else self.concat([embedded, self.prior(ids)])

    def _from_embeddings(self, ids, embedded, training):
        return _heads(self.heads, ids, _encode(self.encoder, ids, embedded, training=training))

    def train_step(self, data):
        if self.adversarial_epsilon <= 0:
            return super().train_step(data)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            embedded = self._embed(x)
            with tf.GradientTape() as inner:
                inner.watch(embedded)
                y_pred = self._from_embeddings(x, embedded, training=True)
                clean = self._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            direction = tf.stop_gradient(tf.math.l2_normalize(inner.gradient(clean, embedded), axis=[1, 2]))
            moved = self._from_embeddings(x, embedded + self.adversarial_epsilon * direction, training=True)
            adversarial = self._compute_loss(x=x, y=y, y_pred=moved, sample_weight=sample_weight, training=True)
            loss = clean + adversarial
        self._loss_tracker.update_state(clean, sample_weight=tf.shape(x)[0])
        gradients = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def probability_of(outputs) -> np.ndarray:
    """P(positive) ``[B]`` from a model's outputs (dict, list or tensor)."""
    if isinstance(outputs, dict):
        outputs = outputs["probability"]
    elif isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    return np.asarray(outputs, dtype=np.float32).reshape(-1)


# ----------------------------------------------------------------------------- predictors
class KerasPredictor:
    """P(positive) with the Keras model; texts of one length are batched together, unpadded.

    Args:
        model: the Keras model (any of :func:`build_model`'s outputs layouts).
        tokenizer: the model's tokenizer.
        batch_size: texts per call.
        width: pre-pad every text to this length (what a fixed-length MCU export sees);
            None: each text at its true length (what the variable-length LiteRT export sees).
    """

    def __init__(self, model: keras.Model, tokenizer: Tokenizer, batch_size: int = 64, width: int | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.width = width
        self._fn = tf.function(lambda ids: model(ids, training=False),
                               input_signature=[tf.TensorSpec([None, None], tf.int32)])

    def predict_ids(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        lengths = np.array([self.width or len(x) for x in ids])
        probs = np.zeros(len(ids), dtype=np.float32)
        for length in np.unique(lengths):
            same = np.flatnonzero(lengths == length)
            for start in range(0, len(same), self.batch_size):
                chunk = same[start:start + self.batch_size]
                probs[chunk] = probability_of(self._fn(pre_pad([ids[i] for i in chunk], int(length))))
        return probs

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_ids(self.tokenizer.encode_many(texts))


class TFLitePredictor:
    """P(positive) with a LiteRT model, one text per call (batch 1).

    Args:
        path: the ``.tflite`` file.
        tokenizer: the model's tokenizer.
        width: the model's fixed input length (MCU exports; texts are pre-padded to it), or None
            for a variable-length model (each text at its true length).
    """

    def __init__(self, path, tokenizer: Tokenizer, width: int | None = None, num_threads: int | None = None):
        from lstm_core.export import TFLiteModel

        self.path = Path(path)
        self.runner = TFLiteModel(self.path, num_threads=num_threads)
        self.tokenizer = tokenizer
        self.width = width

    def predict_ids(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        out = np.zeros(len(ids), dtype=np.float32)
        for i, row in enumerate(ids):
            (prob,) = self.runner(pre_pad([row], self.width))
            out[i] = float(np.reshape(prob, -1)[0])
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_ids(self.tokenizer.encode_many(texts))


class TFLMPredictor(TFLitePredictor):
    """P(positive) with TensorFlow Lite Micro on the fixed-length export (texts pre-padded to ``width``)."""

    def __init__(self, path, tokenizer: Tokenizer, width: int | None):
        from lstm_core.tflm import TFLMModel

        self.path = Path(path)
        self.runner = TFLMModel(self.path)
        self.tokenizer = tokenizer
        self.width = width or int(self.runner.input_details[0]["shape"][-1])


def fixed_length_model(model: keras.Model, width: int) -> keras.Model:
    """``model`` on inputs of exactly ``width`` tokens (what a microcontroller allocates)."""
    ids = keras.Input(shape=(width,), batch_size=1, dtype="int32", name="token_ids")
    return keras.Model(ids, model(ids), name=f"{model.name}_{width}")
