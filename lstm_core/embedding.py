"""An embedding lookup that TensorFlow Lite Micro can run: a plain ``GATHER``.

Keras 3's ``Embedding`` calls ``ops.take``, which on the TensorFlow backend wraps the indices in
a negative-index guard (``tf.where(i < 0, i + vocab, i)``). The TFLite converter keeps it as
``LESS`` + ``ADD`` + ``SELECT``/``SELECT_V2`` on int32, and TFLM has no ``SELECT`` (and refuses
``SELECT_V2`` on int32), so every model with a Keras ``Embedding`` fails to load there. Token
ids are never negative, so the guard buys nothing: :class:`Embedding` keeps Keras' layer (same
config, same ``embeddings`` weight of shape ``[input_dim, output_dim]``, ``mask_zero``, loads
Keras' weights) and only replaces the lookup with ``tf.gather``. :func:`plain_gather_embeddings`
applies the same lookup to the plain Keras layers of an existing model, for the duration of an
export trace (``lstm_core.export.convert_to_tflite`` uses it).
"""

from __future__ import annotations

import contextlib

import keras
from keras import ops

from lstm_core._walk import all_layers

__all__ = ["Embedding", "plain_gather_embeddings"]


def _gather(embeddings, inputs):
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.gather(embeddings, inputs, axis=0)
    return ops.take(embeddings, inputs, axis=0)


@keras.saving.register_keras_serializable(package="lstm_core")
class Embedding(keras.layers.Embedding):
    """Turns non-negative integer ids into dense vectors with one ``GATHER`` (TFLM can run it).

    Same arguments, config and weights as ``keras.layers.Embedding``; negative ids are not
    supported (Keras' layer would count them from the end of the table; TFLite/TFLM's
    ``GATHER`` rejects them).

    Args:
        input_dim: vocabulary size (largest id + 1).
        output_dim: size of each embedding vector.
        mask_zero: id 0 is padding and gives a mask (``lstm_core.LSTM`` in fused mode, as in
            TFLite, ignores masks: pre-pad sequences so the last step is a real token).
        **kwargs: the other ``keras.layers.Embedding`` arguments.

    Example:

    ```python
    inputs = keras.Input((40,), dtype="int32")
    x = lstm_core.embedding.Embedding(8000, 32)(inputs)
    x = lstm_core.LSTM(32)(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    ```
    """

    def call(self, inputs):
        if self.quantization_mode is not None:  # Keras' own int8/int4 embeddings
            return super().call(inputs)
        if inputs.dtype not in ("int32", "int64"):
            inputs = ops.cast(inputs, "int32")
        return ops.cast(_gather(self.embeddings, inputs), self.compute_dtype)

    @classmethod
    def from_keras(cls, layer: keras.layers.Embedding) -> "Embedding":
        """A copy of a built ``keras.layers.Embedding`` (config and weights)."""
        clone = cls.from_config(layer.get_config())
        clone.build(None)
        clone.set_weights(layer.get_weights())
        return clone


@contextlib.contextmanager
def plain_gather_embeddings(model: keras.layers.Layer):
    """Within the block, every ``keras.layers.Embedding`` inside ``model`` looks up with a
    plain ``GATHER`` (no negative-index guard), as :class:`Embedding` always does."""
    patched = [
        layer
        for layer in all_layers(model)
        if isinstance(layer, keras.layers.Embedding) and not isinstance(layer, Embedding)
        and layer.quantization_mode is None
    ]
    for layer in patched:
        layer.call = Embedding.call.__get__(layer)
    try:
        yield patched
    finally:
        for layer in patched:
            del layer.call
