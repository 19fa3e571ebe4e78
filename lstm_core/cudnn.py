"""cuDNN on a GPU: when ``lstm_core.LSTM`` may hand the whole sequence to cuDNN, and the call.

The rule is Keras 3's (``keras.layers.LSTM`` on the TensorFlow backend calls ``CudnnRNNV3``):
tanh activation, sigmoid recurrent activation, a bias, no recurrent dropout, no ``unroll``, and
either no mask or a right-padded one (cuDNN takes sequence lengths; any other mask falls back to
the TF loop, as in Keras). Exports never take this path: they trace ``mode="fused"``.

The call itself is Keras' own ``keras.src.backend.tensorflow.rnn.lstm``, which converts our
(Keras-layout) weights to cuDNN's canonical form (gate order i, f, c, o; cuDNN's second input
bias set to zero), so results equal the TF loop within float round-off.

Example:

```python
reason = cudnn_fallback_reason(layer)          # None: cuDNN may be used
if reason is None and gpu_available():
    outputs, h, c = cudnn_lstm(layer, sequences, h0, c0, mask)
```
"""

from __future__ import annotations

import functools

__all__ = ["gpu_available", "cudnn_fallback_reason", "mask_allows_cudnn", "cudnn_lstm"]


@functools.lru_cache(maxsize=1)
def gpu_available() -> bool:
    """Whether TensorFlow sees a GPU (fixed once TensorFlow has initialised its devices)."""
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def cudnn_fallback_reason(layer, *, training: bool = False) -> str | None:
    """Why ``layer`` cannot use cuDNN (a short phrase), or None when its arguments allow it.

    Args:
        layer: an ``lstm_core.LSTM``.
        training: whether this call trains (recurrent dropout only applies then).
    """
    import keras

    cell = layer.cell
    if layer.mode != "auto":
        return f"mode={layer.mode!r}"
    if cell.activation is not keras.activations.tanh:
        return "activation is not tanh"
    if cell.recurrent_activation is not keras.activations.sigmoid:
        return "recurrent_activation is not sigmoid"
    if not cell.use_bias:
        return "use_bias=False"
    if layer.unroll:
        return "unroll=True"
    if training and cell.recurrent_dropout > 0:
        return "recurrent_dropout > 0"
    if layer.compute_dtype not in ("float32", "float16"):
        return f"dtype {layer.compute_dtype}"
    return None


def mask_allows_cudnn(mask):
    """A boolean tensor: the mask is right-padded and no sequence is fully masked (or no mask)."""
    import tensorflow as tf

    if mask is None:
        return tf.constant(True)
    mask = tf.cast(mask, tf.bool)
    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    right_padded = tf.reduce_all(tf.equal(mask, tf.sequence_mask(lengths, maxlen=tf.shape(mask)[1])))
    return tf.logical_and(right_padded, tf.reduce_all(lengths > 0))


def cudnn_lstm(layer, sequences, h0, c0, mask=None):
    """The whole sequence through cuDNN: ``(outputs [B, T, H], h [B, H], c [B, H])``.

    Outputs are returned for every step; at masked (padded) steps they are zero and the states
    carry the last valid step, as Keras' cuDNN path gives.
    """
    from keras.src.backend.tensorflow import rnn as keras_tf_rnn

    cell = layer.cell
    _, outputs, (h, c) = keras_tf_rnn.lstm(
        sequences,
        h0,
        c0,
        mask,
        kernel=cell.kernel,
        recurrent_kernel=cell.recurrent_kernel,
        bias=cell.bias,
        activation=cell.activation,
        recurrent_activation=cell.recurrent_activation,
        return_sequences=True,
        go_backwards=layer.go_backwards,
        unroll=False,
    )
    return outputs, h, c
