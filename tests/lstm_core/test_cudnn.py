"""The cuDNN dispatch rule of lstm_core.LSTM, unit-tested on the CPU (the GPU run is tools/gpu_check.py)."""

import numpy as np
import pytest
import tensorflow as tf

from lstm_core import LSTM
from lstm_core.cudnn import cudnn_fallback_reason, gpu_available, mask_allows_cudnn


def built(**kwargs):
    layer = LSTM(4, **kwargs)
    layer(np.zeros((2, 3, 5), "float32"))
    return layer


@pytest.mark.parametrize(
    "kwargs, training, reason",
    [
        ({}, False, None),
        ({}, True, None),
        ({"dropout": 0.3}, True, None),  # input dropout is applied before the sequence op
        ({"recurrent_dropout": 0.2}, False, None),  # inference: no recurrent dropout
        ({"recurrent_dropout": 0.2}, True, "recurrent_dropout > 0"),
        ({"activation": "relu"}, False, "activation is not tanh"),
        ({"recurrent_activation": "hard_sigmoid"}, False, "recurrent_activation is not sigmoid"),
        ({"use_bias": False}, False, "use_bias=False"),
        ({"unroll": True}, False, "unroll=True"),
    ],
)
def test_which_arguments_qualify(kwargs, training, reason):
    assert cudnn_fallback_reason(built(**kwargs), training=training) == reason


def test_export_mode_never_uses_cudnn():
    layer = built()
    layer.mode = "fused"
    assert cudnn_fallback_reason(layer) == "mode='fused'"


@pytest.mark.parametrize(
    "mask, allowed",
    [
        (None, True),
        ([[1, 1, 1, 0], [1, 1, 1, 1]], True),  # right-padded: sequence lengths
        ([[0, 1, 1, 1], [1, 1, 1, 1]], False),  # left-padded: TF loop
        ([[1, 0, 1, 0], [1, 1, 1, 1]], False),  # holes
        ([[0, 0, 0, 0], [1, 1, 1, 1]], False),  # a fully masked sequence (cuDNN errors on it)
    ],
)
def test_masks_that_qualify(mask, allowed):
    value = mask_allows_cudnn(None if mask is None else tf.constant(np.array(mask, bool)))
    assert bool(value.numpy()) is allowed


def test_no_gpu_here_means_the_tf_loop():
    assert not gpu_available()


class FakeCudnn:
    """Stands in for cuDNN on the CPU: records the calls, answers with the TF loop's result."""

    def __init__(self):
        self.calls = 0

    def __call__(self, layer, sequences, h0, c0, mask=None):
        self.calls += 1
        _, outputs, h, c = layer._tf_loop(sequences, h0, c0, mask, None)
        return outputs, h, c


@pytest.fixture
def fake_gpu(monkeypatch):
    from lstm_core import cudnn

    fake = FakeCudnn()
    monkeypatch.setattr(cudnn, "gpu_available", lambda: True)
    monkeypatch.setattr(cudnn, "cudnn_lstm", fake)
    return fake


def test_layer_dispatches_to_cudnn_when_allowed(fake_gpu):
    x = np.random.default_rng(0).standard_normal((2, 4, 3)).astype("float32")
    layer = LSTM(5, return_sequences=True)
    reference = LSTM(5, return_sequences=True, use_cudnn=False)
    layer(x)
    reference(x)
    reference.set_weights(layer.get_weights())
    calls = fake_gpu.calls
    np.testing.assert_allclose(layer(x), reference(x), atol=1e-6)
    assert fake_gpu.calls == calls + 1
    right_padded = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)
    layer(x, mask=right_padded)
    assert fake_gpu.calls == calls + 2
    layer(x, mask=np.array([[0, 1, 1, 1], [1, 1, 1, 1]], bool))  # left-padded: the TF loop
    assert fake_gpu.calls == calls + 2


def test_layer_keeps_the_tf_loop_when_cudnn_cannot_run(fake_gpu):
    x = np.zeros((2, 4, 3), "float32")
    LSTM(5, recurrent_dropout=0.5)(x, training=True)
    LSTM(5, use_cudnn=False)(x)
    LSTM(5, activation="relu")(x)
    assert fake_gpu.calls == 0
    with pytest.raises(ValueError, match="use_cudnn=True, but cuDNN cannot run this layer: activation is not tanh"):
        LSTM(5, activation="relu", use_cudnn=True)(x)


def test_use_cudnn_round_trips_in_config():
    layer = LSTM(3, use_cudnn=False)
    assert LSTM.from_config(layer.get_config()).use_cudnn is False
    with pytest.raises(ValueError, match="use_cudnn"):
        LSTM(3, use_cudnn="sometimes")
