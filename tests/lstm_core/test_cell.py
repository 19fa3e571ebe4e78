import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import assert_config_round_trip
from lstm_core import LSTMCell


def test_weights_match_keras_cell_layout_and_step():
    x = np.random.default_rng(0).standard_normal((3, 5)).astype("float32")
    h = np.random.default_rng(1).standard_normal((3, 4)).astype("float32")
    c = np.random.default_rng(2).standard_normal((3, 4)).astype("float32")
    ours, ref = LSTMCell(4), keras.layers.LSTMCell(4)
    ours.build((None, 5))
    ref.build((None, 5))
    assert [w.shape for w in ours.get_weights()] == [(5, 16), (4, 16), (16,)]
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in ref.get_weights()]
    ours.set_weights(ref.get_weights())
    out, (h1, c1) = ours(x, [h, c])
    ref_out, (ref_h, ref_c) = ref(x, [h, c])
    np.testing.assert_allclose(out, ref_out, atol=1e-6)
    np.testing.assert_allclose(c1, ref_c, atol=1e-6)
    # and back: keras takes our weights
    ref.set_weights([w * 0.5 for w in ours.get_weights()])
    ours.set_weights(ref.get_weights())
    np.testing.assert_allclose(ours(x, [h, c])[0], ref(x, [h, c])[0], atol=1e-6)


def test_textbook_equations():
    cell = LSTMCell(2, unit_forget_bias=False, bias_initializer="zeros")
    cell.build((None, 3))
    x = np.ones((1, 3), "float32")
    h = np.zeros((1, 2), "float32")
    c = np.full((1, 2), 0.5, "float32")
    W, U, b = cell.get_weights()
    z = x @ W + h @ U + b
    def sigmoid(v):
        return 1 / (1 + np.exp(-v))

    i, f, g, o = sigmoid(z[:, :2]), sigmoid(z[:, 2:4]), np.tanh(z[:, 4:6]), sigmoid(z[:, 6:])
    c_expected = f * c + i * g
    out, (_, c1) = cell(x, [h, c])
    np.testing.assert_allclose(c1, c_expected, atol=1e-6)
    np.testing.assert_allclose(out, o * np.tanh(c_expected), atol=1e-6)


def test_unit_forget_bias_initialises_forget_gate_to_one():
    cell = LSTMCell(3)
    cell.build((None, 2))
    np.testing.assert_array_equal(cell.bias.numpy()[3:6], 1.0)
    np.testing.assert_array_equal(cell.bias.numpy()[:3], 0.0)


def test_config_round_trip():
    cell = LSTMCell(7, activation="relu", dropout=0.1, kernel_regularizer="l2", seed=3)
    clone = assert_config_round_trip(cell)
    assert clone.units == 7 and clone.dropout == 0.1


def test_rejects_bad_units():
    with pytest.raises(ValueError, match="units"):
        LSTMCell(0)


def test_dropout_only_in_training():
    cell = LSTMCell(4, dropout=0.5, recurrent_dropout=0.5, seed=1)
    x = tf.ones((2, 3))
    s = [tf.ones((2, 4)), tf.ones((2, 4))]
    a, _ = cell(x, s, training=False)
    b, _ = cell(x, s, training=False)
    np.testing.assert_array_equal(a, b)
    c, _ = cell(x, s, training=True)
    assert not np.allclose(a, c)
