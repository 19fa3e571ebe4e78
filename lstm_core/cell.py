"""The LSTM cell: one time step of the textbook LSTM, in the weight layout of Keras.

The weights (``kernel``, ``recurrent_kernel``, ``bias``; gate order i, f, c, o) are laid out
exactly as in ``keras.layers.LSTMCell`` so weights move between the two with
``set_weights(other.get_weights())``. This is the only place the per-step gate math lives;
``lstm_core.layer.LSTM`` reuses :func:`lstm_step` inside its fused sequence loop.
"""

from __future__ import annotations

import keras
import tensorflow as tf

__all__ = ["LSTMCell", "lstm_step"]


def lstm_step(z, c_prev, activation, recurrent_activation):
    """Gate math for one step given the pre-activations ``z = x·W + h·U + b``.

    Returns ``(h, c)``. Gate order is i, f, c (candidate), o, as in Keras.
    """
    z_i, z_f, z_c, z_o = tf.split(z, 4, axis=-1)
    i = recurrent_activation(z_i)
    f = recurrent_activation(z_f)
    g = activation(z_c)
    o = recurrent_activation(z_o)
    c = f * c_prev + i * g
    h = o * activation(c)
    return h, c


@keras.saving.register_keras_serializable(package="lstm_core")
class LSTMCell(keras.layers.Layer):
    """A single LSTM step: ``call(x_t, [h, c]) -> (h_t, [h_t, c_t])``.

    Use it directly for step-by-step decoding (seq2seq decoders, streaming inference) and
    through :class:`lstm_core.LSTM` for whole sequences. Weights and config are those of
    ``keras.layers.LSTMCell`` (``kernel (I, 4H)``, ``recurrent_kernel (H, 4H)``, ``bias
    (4H,)``, gates i, f, c, o), so weights move between the two with ``set_weights``.

    Args:
        units: size of ``h`` and ``c`` (H).
        activation: for the candidate and the cell output (default ``"tanh"``).
        recurrent_activation: for the input, forget and output gates (default ``"sigmoid"``).
        use_bias: add a bias to the gate pre-activations.
        kernel_initializer, recurrent_initializer, bias_initializer: initializers of the
            three weights.
        unit_forget_bias: start the forget-gate bias at 1 (Jozefowicz et al., 2015).
        kernel_regularizer, recurrent_regularizer, bias_regularizer: weight regularizers.
        kernel_constraint, recurrent_constraint, bias_constraint: weight constraints.
        dropout: fraction of the inputs dropped while training.
        recurrent_dropout: fraction of ``h`` dropped while training.
        seed: seed of the dropout masks.
        **kwargs: base ``keras.layers.Layer`` arguments.

    Returns:
        ``cell(x_t, [h, c], training=False)`` returns ``(h_t, [h_t, c_t])``, each ``(B, H)``.

    Example:

    ```python
    cell = lstm_core.LSTMCell(16)
    h = c = tf.zeros((1, 16))
    for x_t in frames:                      # each (1, I)
        y, (h, c) = cell(x_t, [h, c])
    ```
    """

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if units <= 0:
            raise ValueError(f"`units` must be a positive integer, got {units}.")
        self.units = int(units)
        self.activation = keras.activations.get(activation)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.unit_forget_bias = unit_forget_bias
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.dropout = min(1.0, max(0.0, float(dropout)))
        self.recurrent_dropout = min(1.0, max(0.0, float(recurrent_dropout)))
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.state_size = [self.units, self.units]
        self.output_size = self.units

    def build(self, input_shape):
        input_dim = input_shape[-1]
        self.kernel = self.add_weight(
            shape=(input_dim, 4 * self.units),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, 4 * self.units),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        if self.use_bias:
            if self.unit_forget_bias:
                units, base = self.units, self.bias_initializer

                def bias_initializer(_, *args, **kwargs):
                    return tf.concat(
                        [
                            base((units,), *args, **kwargs),
                            keras.initializers.get("ones")((units,), *args, **kwargs),
                            base((units * 2,), *args, **kwargs),
                        ],
                        axis=0,
                    )

            else:
                bias_initializer = self.bias_initializer
            self.bias = self.add_weight(
                shape=(4 * self.units,),
                name="bias",
                initializer=bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None

    def zero_bias(self):
        """The bias as a tensor (zeros when ``use_bias=False``), for the fused kernels."""
        if self.bias is not None:
            return tf.convert_to_tensor(self.bias)
        return tf.zeros((4 * self.units,), dtype=self.compute_dtype)

    def get_initial_state(self, batch_size=None):
        return [
            tf.zeros((batch_size, self.units), dtype=self.compute_dtype),
            tf.zeros((batch_size, self.units), dtype=self.compute_dtype),
        ]

    def call(self, inputs, states, training=False):
        h_prev, c_prev = states[0], states[1]
        if training and 0.0 < self.dropout < 1.0:
            inputs = keras.random.dropout(inputs, self.dropout, seed=self.seed_generator)
        if training and 0.0 < self.recurrent_dropout < 1.0:
            h_prev = keras.random.dropout(
                h_prev, self.recurrent_dropout, seed=self.seed_generator
            )
        z = tf.matmul(inputs, self.kernel) + tf.matmul(h_prev, self.recurrent_kernel)
        if self.use_bias:
            z = z + self.bias
        h, c = lstm_step(z, c_prev, self.activation, self.recurrent_activation)
        return h, [h, c]

    def get_config(self):
        s = keras.saving.serialize_keras_object
        config = {
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "recurrent_activation": keras.activations.serialize(self.recurrent_activation),
            "use_bias": self.use_bias,
            "kernel_initializer": s(self.kernel_initializer),
            "recurrent_initializer": s(self.recurrent_initializer),
            "bias_initializer": s(self.bias_initializer),
            "unit_forget_bias": self.unit_forget_bias,
            "kernel_regularizer": s(self.kernel_regularizer),
            "recurrent_regularizer": s(self.recurrent_regularizer),
            "bias_regularizer": s(self.bias_regularizer),
            "kernel_constraint": s(self.kernel_constraint),
            "recurrent_constraint": s(self.recurrent_constraint),
            "bias_constraint": s(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }
        return {**super().get_config(), **config}
