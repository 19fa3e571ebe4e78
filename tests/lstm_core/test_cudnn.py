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
