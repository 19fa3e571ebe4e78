"""The benchmark's reference rows compute the same function as lstm_core (else the ratios lie)."""

import numpy as np

from helpers import load_tool
from lstm_core import LSTM

bench = load_tool("benchmark_lstm")


def test_block_lstm_reference_equals_lstm_core():
    x = np.random.default_rng(0).standard_normal((4, 7, 3)).astype("float32")
    ref = bench.BlockLSTMReference(6)
    ref.build(x.shape)
    ours = LSTM(6, return_sequences=True)
    ours.build(x.shape)
    kernel, bias = ref.get_weights()
    ours.set_weights([kernel[:3], kernel[3:], bias])
    np.testing.assert_allclose(ref(x), ours(x), atol=1e-5)


def test_flop_count_and_matmul_chain_run():
    assert bench.lstm_flops(10, 2, 3, 4, train=False) == 2.0 * 10 * 2 * 7 * 16
    assert bench.lstm_flops(10, 2, 3, 4, train=True) == 3 * bench.lstm_flops(10, 2, 3, 4, train=False)
    assert bench.recurrent_matmul_chain(5, 2, 4)().shape == (2, 4)
