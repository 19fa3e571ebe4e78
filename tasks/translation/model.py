"""Seq2seq with Luong attention on ``lstm_core``.

Encoder: embedding -> ``Bidirectional(lstm_core.LSTM(units), return_sequences=True)`` (or one
``lstm_core.LSTM``). The decoder's initial (h, c) come from a Dense *bridge* over the encoder's
final outputs (forward: last real step, backward: first step), not from the encoder's (h, c):
the fused TFLite LSTM op exposes the output sequence but not the final cell state.

Decoder (Luong, "general" score, no input feeding): an ``lstm_core.LSTM`` over the target
tokens during training (teacher forcing, one fused loop), then attention over the encoder
outputs, ``tanh(W_c [context; h])`` and the output projection. Step-by-step decoding runs the
same weights through the layer's ``LSTMCell`` (``decoder_lstm.step``).

Three functional Keras models share the layers:
  * ``training``: ``(src_ids [B,S], tgt_in [B,T]) -> logits [B,T,V]``
  * ``encoder``:  ``src_ids [B,S] -> (memory [B,S,M], keys [B,S,H], h0 [B,H], c0 [B,H])``
  * ``step``:     ``(token [B], h, c, memory, keys, src_mask [B,S]) -> (logits [B,V], h, c)``
The encoder and step models are what ``export`` converts to TFLite.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from lstm_core import LSTM
from tasks.translation.artifacts import TranslationModelDir
from tasks.translation.config import ModelConfig
from tasks.translation.data import PAD_ID

NEG_INF = -1e9


# ----------------------------------------------------------------------------- layers
@keras.saving.register_keras_serializable(package="translation")
class SourceMask(keras.layers.Layer):
    """``ids != PAD`` as float [B, S] (1 = real token)."""

    def call(self, ids):
        return tf.cast(tf.not_equal(ids, PAD_ID), self.compute_dtype)

    def compute_output_shape(self, shape):
        return shape


@keras.saving.register_keras_serializable(package="translation")
class FinalEncoderState(keras.layers.Layer):
    """The encoder's final outputs: forward at the last real step, backward at step 0.

    Works on right-padded batches (``src_mask``) and on unpadded batch-1 inputs (TFLite).
    """

    def __init__(self, forward_units: int, bidirectional: bool, **kwargs):
        super().__init__(**kwargs)
        self.forward_units = forward_units
        self.bidirectional = bidirectional

    def call(self, memory, src_mask):
        lengths = tf.cast(tf.reduce_sum(src_mask, axis=1), tf.int32)
        last = tf.maximum(lengths - 1, 0)
        forward = tf.gather(memory[:, :, : self.forward_units], last, axis=1, batch_dims=1)
        if not self.bidirectional:
            return forward
        return tf.concat([forward, memory[:, 0, self.forward_units :]], axis=-1)

    def compute_output_shape(self, memory_shape, src_mask_shape):
        return (memory_shape[0], memory_shape[-1])

    def compute_mask(self, *args, **kwargs):
        return None

    def get_config(self):
        return {**super().get_config(), "forward_units": self.forward_units, "bidirectional": self.bidirectional}


@keras.saving.register_keras_serializable(package="translation")
class LuongAttention(keras.layers.Layer):
    """Luong attention over pre-projected keys ("general" score: ``q · W_a m``).

    ``call(query, keys, memory, src_mask)``: query [B, H] or [B, T, H]; keys [B, S, H];
    memory [B, S, M]; src_mask [B, S]. Returns the context [B, (T,) M].

    Args:
        mask_penalty: None adds -1e9 to padded scores (exact in float); a number sets padded
            scores to ``-mask_penalty`` instead, which keeps the int8 range of the scores
            small (the fixed-length TFLM export, whose sources are padded).
    """

    def __init__(self, mask_penalty: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.mask_penalty = mask_penalty

    def call(self, query, keys, memory, src_mask):
        single = len(query.shape) == 2
        q = query[:, None, :] if single else query
        scores = tf.matmul(q, keys, transpose_b=True)  # [B, T, S]
        mask = src_mask[:, None, :]
        if self.mask_penalty is None:
            scores += (1.0 - mask) * NEG_INF
        else:  # int8-friendly: padded positions get exactly -penalty, whatever their keys hold
            scores = scores * mask - (1.0 - mask) * self.mask_penalty
        weights = tf.nn.softmax(scores, axis=-1)
        context = tf.matmul(weights, memory)
        return context[:, 0, :] if single else context

    def compute_output_shape(self, query_shape, keys_shape, memory_shape, src_mask_shape):
        return tuple(query_shape[:-1]) + (memory_shape[-1],)

    def compute_mask(self, *args, **kwargs):
        return None

    def get_config(self):
        return {**super().get_config(), "mask_penalty": self.mask_penalty}


@keras.saving.register_keras_serializable(package="translation")
class SplitState(keras.layers.Layer):
    """[B, 2H] -> ([B, H], [B, H]) : the bridge output split into decoder (h0, c0)."""

    def call(self, x):
        return tf.split(x, 2, axis=-1)

    def compute_output_shape(self, shape):
        half = (shape[0], shape[-1] // 2)
        return half, half


@keras.saving.register_keras_serializable(package="translation")
class TiedEmbedding(keras.layers.Layer):
    """A target embedding table that also projects features to logits (tied input/output embeddings).

    ``layer(ids)`` looks tokens up ([..] int -> [.., D]); ``layer(features, project=True)`` returns
    ``features @ table^T`` ([.., D] -> [.., V]; Press & Wolf 2017). One weight, ``embeddings``,
    as in ``keras.layers.Embedding`` (so the TFLM export copies it into a plain embedding).

    Args:
        input_dim: vocabulary size.
        output_dim: embedding size.
    """

    def __init__(self, input_dim: int, output_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.embeddings = self.add_weight(shape=(self.input_dim, self.output_dim), name="embeddings",
                                          initializer="uniform")

    def call(self, inputs, project=False):
        if project:
            return tf.matmul(inputs, tf.cast(self.embeddings, inputs.dtype), transpose_b=True)
        return tf.gather(self.embeddings, tf.cast(inputs, tf.int32))

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim}


# ----------------------------------------------------------------------------- loss / metrics
@keras.saving.register_keras_serializable(package="translation")
class MaskedSmoothedCrossentropy(keras.losses.Loss):
    """Token-level cross-entropy on logits, label smoothing, padding (id 0) ignored.

    Returns the mean over real target tokens of the batch.
    """

    def __init__(self, label_smoothing: float = 0.0, name="masked_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.int32)
        mask = tf.cast(tf.not_equal(y_true, PAD_ID), y_pred.dtype)
        logp = tf.nn.log_softmax(y_pred, axis=-1)
        nll = -tf.gather(logp, y_true, axis=-1, batch_dims=2)
        eps = self.label_smoothing
        loss = (1.0 - eps) * nll - eps * tf.reduce_mean(logp, axis=-1) if eps else nll
        return tf.reduce_sum(loss * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="translation")
def masked_accuracy(y_true, y_pred):
    y_true = tf.cast(y_true, tf.int32)
    mask = tf.cast(tf.not_equal(y_true, PAD_ID), tf.float32)
    hit = tf.cast(tf.equal(tf.argmax(y_pred, axis=-1, output_type=tf.int32), y_true), tf.float32)
    return tf.reduce_sum(hit * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


# ----------------------------------------------------------------------------- models
@dataclasses.dataclass
class Seq2Seq:
    config: ModelConfig
    training: keras.Model
    encoder: keras.Model
    step: keras.Model


def build_training_model(config: ModelConfig) -> keras.Model:
    src = keras.Input((None,), dtype="int32", name="source_ids")
    tgt_in = keras.Input((None,), dtype="int32", name="target_in_ids")
    src_mask = SourceMask(name="source_mask")(src)
    memory = _encode(config, src)
    keys = keras.layers.Dense(config.decoder_units, use_bias=False, name="attention_keys")(memory)
    h0, c0 = _bridge(config, memory, src_mask)

    target_embedding = _target_embedding(config)
    y = target_embedding(tgt_in)
    y = _word_dropout(config, "target")(y)
    y = keras.layers.Dropout(config.dropout, name="target_dropout")(y)
    dec = LSTM(config.decoder_units, return_sequences=True, name="decoder_lstm")(y, initial_state=[h0, c0])
    logits = _attend_and_project(config, dec, keys, memory, src_mask, target_embedding)
    return keras.Model([src, tgt_in], logits, name="translation_seq2seq")


def _encode(config: ModelConfig, src):
    x = keras.layers.Embedding(config.src_vocab_size, config.embedding_dim, mask_zero=True, name="source_embedding")(src)
    x = _word_dropout(config, "source")(x)
    x = keras.layers.Dropout(config.dropout, name="source_dropout")(x)
    lstm = LSTM(config.units, return_sequences=True, name="encoder_lstm")
    if config.bidirectional:
        lstm = keras.layers.Bidirectional(lstm, merge_mode="concat", name="encoder")
    memory = lstm(x)
    return keras.layers.Dropout(config.dropout, name="memory_dropout")(memory)


def _target_embedding(config: ModelConfig):
    if config.tie_embeddings:
        return TiedEmbedding(config.tgt_vocab_size, config.embedding_dim, name="target_embedding")
    return keras.layers.Embedding(config.tgt_vocab_size, config.embedding_dim, name="target_embedding")


def _word_dropout(config: ModelConfig, side: str):
    """Word dropout: a whole token's embedding is zeroed (the rest rescaled), only while training."""
    return keras.layers.Dropout(config.word_dropout, noise_shape=(None, None, 1), name=f"{side}_word_dropout")


def project_to_logits(get_layer, config: ModelConfig, features):
    """The output projection: the ``logits`` Dense, or the tied target embedding table."""
    if config.tie_embeddings:
        return get_layer("target_embedding")(features, project=True)
    return get_layer("logits")(features)


def _bridge(config: ModelConfig, memory, src_mask):
    final = FinalEncoderState(config.units, config.bidirectional, name="final_encoder_state")(memory, src_mask)
    state = keras.layers.Dense(2 * config.decoder_units, activation="tanh", name="bridge")(final)
    return SplitState(name="split_state")(state)


def _attend_and_project(config: ModelConfig, query, keys, memory, src_mask, target_embedding):
    context = LuongAttention(name="attention")(query, keys, memory, src_mask)
    combined = keras.layers.Concatenate(name="attention_concat")([context, query])
    width = config.embedding_dim if config.tie_embeddings else config.decoder_units
    attn = keras.layers.Dense(width, activation="tanh", name="attention_combine")(combined)
    attn = keras.layers.Dropout(config.dropout, name="output_dropout")(attn)
    if config.tie_embeddings:
        return target_embedding(attn, project=True)
    return keras.layers.Dense(config.tgt_vocab_size, name="logits")(attn)


def inference_models(training: keras.Model, config: ModelConfig) -> Seq2Seq:
    """Encoder and one-step decoder models sharing ``training``'s layers (and weights)."""
    layer = training.get_layer
    src = keras.Input((None,), dtype="int32", name="source_ids")
    src_mask = layer("source_mask")(src)
    x = layer("source_embedding")(src)
    memory = layer("encoder" if config.bidirectional else "encoder_lstm")(x)
    keys = layer("attention_keys")(memory)
    final = layer("final_encoder_state")(memory, src_mask)
    h0, c0 = layer("split_state")(layer("bridge")(final))
    encoder = keras.Model(src, [memory, keys, h0, c0], name="translation_encoder")

    token = keras.Input((), dtype="int32", name="token")
    h = keras.Input((config.decoder_units,), name="h")
    c = keras.Input((config.decoder_units,), name="c")
    memory_in = keras.Input((None, config.memory_dim), name="memory")
    keys_in = keras.Input((None, config.decoder_units), name="keys")
    mask_in = keras.Input((None,), name="source_mask")
    y = layer("target_embedding")(token)
    dec_lstm = layer("decoder_lstm")
    h_new, (_, c_new) = dec_lstm.step(y, [h, c])
    context = layer("attention")(h_new, keys_in, memory_in, mask_in)
    combined = layer("attention_concat")([context, h_new])
    logits = project_to_logits(layer, config, layer("attention_combine")(combined))
    step = keras.Model([token, h, c, memory_in, keys_in, mask_in], [logits, h_new, c_new], name="translation_decoder_step")
    return Seq2Seq(config, training, encoder, step)


def build(config: ModelConfig) -> Seq2Seq:
    return inference_models(build_training_model(config), config)


def load_seq2seq(model_dir: TranslationModelDir) -> Seq2Seq:
    """The trained model of ``model_dir`` with its encoder and one-step decoder."""
    training = model_dir.keras_model(compile=False)
    return inference_models(training, model_dir.model)


def compile_model(model: keras.Model, config: ModelConfig, optimizer) -> None:
    model.compile(
        optimizer=optimizer,
        loss=MaskedSmoothedCrossentropy(config.label_smoothing),
        metrics=[masked_accuracy],
    )


# ----------------------------------------------------------------------------- TFLM (fixed length)
MCU_MASK_PENALTY = 16.0  # padded attention scores on TFLM: e^-16 of a zero score, int8-friendly


def _forward_copy(lstm: LSTM) -> LSTM:
    """A forward-running copy of ``lstm`` (its weights, ``go_backwards=False``)."""
    config = {**lstm.get_config(), "go_backwards": False, "return_sequences": True, "name": lstm.name + "_mcu"}
    copy = LSTM.from_config(config)
    copy.build((None, None, lstm.cell.kernel.shape[0]))
    copy.set_weights(lstm.get_weights())
    return copy


def _mcu_embedding(embedding: keras.layers.Embedding, name: str):
    """The same table looked up with one ``GATHER`` and no mask.

    Keras' negative-index guard needs SELECT_V2, which TFLM rejects; the mask is dropped
    because the fused LSTM ignores it anyway (padding is handled by ``order``/``source_mask``).
    """
    from lstm_core.embedding import Embedding

    copy = Embedding.from_config({**embedding.get_config(), "name": name, "mask_zero": False})
    copy.build(None)
    copy.set_weights(embedding.get_weights())
    return copy


def mcu_models(seq2seq: Seq2Seq, source_length: int, mask_penalty: float = MCU_MASK_PENALTY):
    """Encoder and one-step decoder with a fixed source length ``S`` for TensorFlow Lite Micro.

    TFLM has no dynamic shapes, so sources are right-padded to ``S``. The fused LSTM ignores
    masks, so the backward direction would read the padding first; instead the app passes
    ``order`` [1, S] int32, ``order[p] = L - 1 - p`` for the ``L`` real tokens and ``p`` after
    them: the backward weights run forward over the reversed embeddings (``GATHER`` by
    ``order``; TFLM's GATHER takes float/int8 values, not int32 ids) and their outputs are put
    back in place with the same index map. The results equal the Keras
    encoder on the real positions (what attention sees).

      * encoder: ``source_ids [1, S], order [1, S] -> memory, keys, h0, c0``
      * step: ``token [1], h, c, memory [1, S, M], keys [1, S, H], source_mask [1, S] ->
        logits, h, c`` (padded scores are ``-mask_penalty``: a small int8 range)
    """
    config = seq2seq.config
    layer = seq2seq.training.get_layer
    ids = keras.Input(batch_shape=(1, source_length), dtype="int32", name="source_ids")
    order = keras.Input(batch_shape=(1, source_length), dtype="int32", name="order")
    embedded = _mcu_embedding(layer("source_embedding"), "source_embedding_mcu")(ids)
    last = Take(name="take_last")(order)
    # each LSTM output has one consumer: the converter's int8 LSTM wants its output scale to
    # come from a single use
    if config.bidirectional:
        encoder = layer("encoder")
        forward = _forward_copy(encoder.forward_layer)(embedded)
        backward_reversed = _forward_copy(encoder.backward_layer)(Reorder(name="reverse")(embedded, order))
        backward = Reorder(name="backward_in_place")(backward_reversed, order)
        memory = keras.layers.Concatenate(name="memory")([forward, backward])
    else:
        memory = _forward_copy(layer("encoder_lstm"))(embedded)
    final = FinalFromMemory(config.units, config.bidirectional, name="final_encoder_state_mcu")(memory, last)
    keys = layer("attention_keys")(memory)
    h0, c0 = layer("split_state")(layer("bridge")(final))
    encoder_model = keras.Model([ids, order], [memory, keys, h0, c0], name="translation_encoder_mcu")

    token = keras.Input(batch_shape=(1,), dtype="int32", name="token")
    h = keras.Input(batch_shape=(1, config.decoder_units), name="h")
    c = keras.Input(batch_shape=(1, config.decoder_units), name="c")
    memory_in = keras.Input(batch_shape=(1, source_length, config.memory_dim), name="memory")
    keys_in = keras.Input(batch_shape=(1, source_length, config.decoder_units), name="keys")
    mask_in = keras.Input(batch_shape=(1, source_length), name="source_mask")
    y = _mcu_embedding(layer("target_embedding"), "target_embedding_mcu")(token)
    h_new, (_, c_new) = layer("decoder_lstm").step(y, [h, c])
    context = LuongAttention(mask_penalty=mask_penalty, name="attention_mcu")(h_new, keys_in, memory_in, mask_in)
    combined = layer("attention_concat")([context, h_new])
    logits = project_to_logits(layer, config, layer("attention_combine")(combined))
    step_model = keras.Model([token, h, c, memory_in, keys_in, mask_in], [logits, h_new, c_new],
                             name="translation_decoder_step_mcu")
    return encoder_model, step_model


@keras.saving.register_keras_serializable(package="translation")
class Reorder(keras.layers.Layer):
    """``values[0][indices[0]]`` along the time axis (batch 1): one ``GATHER``, which TFLM runs."""

    def call(self, values, indices):
        return tf.gather(values[0], indices[0], axis=0)[None]

    def compute_output_shape(self, values_shape, indices_shape):
        return (1, indices_shape[-1]) + tuple(values_shape[2:])


@keras.saving.register_keras_serializable(package="translation")
class FinalFromMemory(keras.layers.Layer):
    """:class:`FinalEncoderState` on the fixed-length memory: forward half at ``last``, backward half at 0."""

    def __init__(self, forward_units: int, bidirectional: bool, **kwargs):
        super().__init__(**kwargs)
        self.forward_units, self.bidirectional = forward_units, bidirectional

    def call(self, memory, last):
        forward = tf.gather(memory[0], last[0], axis=0)[:, : self.forward_units]  # [1, H]
        if not self.bidirectional:
            return forward
        return tf.concat([forward, memory[:, 0, self.forward_units :]], axis=-1)

    def compute_output_shape(self, memory_shape, last_shape):
        return (1, memory_shape[-1])

    def get_config(self):
        return {**super().get_config(), "forward_units": self.forward_units, "bidirectional": self.bidirectional}


@keras.saving.register_keras_serializable(package="translation")
class Take(keras.layers.Layer):
    """The first column of an index map: ``order[:, :1]`` (= the last real position)."""

    def call(self, order):
        return order[:, :1]

    def compute_output_shape(self, shape):
        return (shape[0], 1)
