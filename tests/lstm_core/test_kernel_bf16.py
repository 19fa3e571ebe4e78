"""The kernel's bf16 GEMM (gemm_precision="bfloat16"): bf16 inputs, fp32 accumulation and state.

Where the CPU lacks avx512_bf16 these tests run the portable loop that computes what vdpbf16ps
computes; ``test_vdpbf16ps_equals_the_portable_loop`` checks the two agree bit for bit where the
CPU has the instruction.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lstm_core import LSTM, kernels

RNG = np.random.default_rng(7)
# Keras' own tolerance for results computed with bf16 matmuls (its RNN tests' tpu_atol/tpu_rtol,
# keras/src/layers/rnn/stacked_rnn_cells_test.py: TPUs run float32 matmuls in bf16 passes).
KERAS_BF16_TOL = {"atol": 1e-2, "rtol": 1e-2}


def to_bf16(a):
    """Round float32 to the nearest bf16 (ties to even), returned as float32."""
    bits = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32)


def numpy_lstm(x, w, u, b, h, c, gemm=lambda a: a):
    """Keras-order LSTM in float64 with ``gemm`` applied to each GEMM input (x_t, h, W, U)."""
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    outputs = []
    for t in range(x.shape[1]):
        z = gemm(x[:, t]).astype(np.float64) @ gemm(w) + gemm(h).astype(np.float64) @ gemm(u) + b
        i, f, g, o = np.split(z, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = (sigmoid(o) * np.tanh(c)).astype(np.float32)  # the kernel keeps h in float32
        outputs.append(h)
    return np.stack(outputs, 1), h, c


# B=7: a 6-row tile and a 1-row tile; 4H=36: a full 32-column panel and a 4-column edge;
# I + H odd (13) and even (12): the padded last k-pair and the exact case.
@pytest.mark.parametrize("inputs", [4, 3])
def test_bf16_gemm_computes_the_rounded_product(inputs):
    units, x = 9, RNG.standard_normal((7, 6, inputs)).astype("float32")
    w, u = (RNG.standard_normal(s).astype("float32") * 0.5 for s in ((inputs, 36), (units, 36)))
    b, h0, c0 = (RNG.standard_normal(s).astype("float32") for s in ((36,), (7, units), (7, units)))
    want = numpy_lstm(x, w, u, b, h0, c0, gemm=to_bf16)
    fp32 = numpy_lstm(x, w, u, b, h0, c0)
    for precision in ("bfloat16", "bfloat16_portable"):
        got = kernels.lstm_sequence(x, w, b, h0, c0, u, gemm_precision=precision)
        for g, w_, f in zip(got, want, fp32):
            np.testing.assert_allclose(g, w_, atol=2e-5)
            assert np.max(np.abs(f - w_)) > 1e-3  # the rounding is visible: the check can fail
    full = kernels.lstm_sequence(x, w, b, h0, c0, u)
    np.testing.assert_allclose(full[0], fp32[0], atol=2e-5)


def test_vdpbf16ps_equals_the_portable_loop():
    if not kernels.native_bf16_available():  # asked here, not at collection: that would build the kernel
        pytest.skip("this CPU has no avx512_bf16 (or the compiler no avx512bf16 target)")
    x = RNG.standard_normal((13, 20, 24)).astype("float32")
    w, u = RNG.standard_normal((24, 160)).astype("float32"), RNG.standard_normal((40, 160)).astype("float32")
    b, h0, c0 = np.zeros(160, "float32"), np.zeros((13, 40), "float32"), np.zeros((13, 40), "float32")
    native = kernels.lstm_sequence(x, w, b, h0, c0, u, gemm_precision="bfloat16")
    portable = kernels.lstm_sequence(x, w, b, h0, c0, u, gemm_precision="bfloat16_portable")
    # Not bit-exact: vdpbf16ps adds each pair of products in its own order (odd element first, FTZ/DAZ),
    # so float32 sums may differ in the last bits; bf16 rounding itself moves results by > 1e-3 (above).
    for a, p in zip(native, portable):
        np.testing.assert_allclose(a, p, rtol=1e-4, atol=1e-4)


@pytest.fixture
def mixed_bfloat16():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize("go_backwards", [False, True])
def test_layer_under_mixed_bfloat16_matches_keras(monkeypatch, mixed_bfloat16, go_backwards):
    """bf16 GEMM in the layer (forced on, so CPUs without the instruction test it too) agrees with
    keras.layers.LSTM under the same policy within Keras' bf16 tolerance, masks included."""
    monkeypatch.setenv(kernels.CHOICE_ENV, "native")
    monkeypatch.setenv(kernels.BF16_ENV, "on")
    precisions = []
    real = kernels.lstm_sequence
    monkeypatch.setattr(kernels, "lstm_sequence",
                        lambda *a, **k: precisions.append(k["gemm_precision"]) or real(*a, **k))
    x = RNG.standard_normal((6, 12, 5)).astype("float32")
    mask = np.ones((6, 12), bool)
    mask[2, 7:] = False
    ref = keras.layers.LSTM(16, return_sequences=True, go_backwards=go_backwards)
    ours = LSTM(16, return_sequences=True, go_backwards=go_backwards)
    ref.build(x.shape)
    ours.build(x.shape)
    ours.set_weights(ref.get_weights())
    got = ours(x, mask=mask)
    assert got.dtype == tf.bfloat16 and precisions == ["bfloat16"]
    want = ref(x, mask=mask)
    np.testing.assert_allclose(tf.cast(got, tf.float32), tf.cast(want, tf.float32), **KERAS_BF16_TOL)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.cast(ours(x, training=True), tf.float32))
    grads = tape.gradient(loss, ours.trainable_variables)
    assert all(g is not None and np.all(np.isfinite(g)) for g in grads)


def test_gemm_precision_choice(monkeypatch):
    monkeypatch.delenv(kernels.BF16_ENV, raising=False)
    auto = "bfloat16" if kernels.native_bf16_available() else "float32"
    assert kernels.gemm_precision_for("bfloat16") == auto
    assert kernels.gemm_precision_for("float32") == "float32"
    monkeypatch.setenv(kernels.BF16_ENV, "on")
    assert kernels.gemm_precision_for("bfloat16") == "bfloat16"
    assert kernels.gemm_precision_for("float16") == "float32"
    monkeypatch.setenv(kernels.BF16_ENV, "off")
    assert kernels.gemm_precision_for("bfloat16") == "float32"
    monkeypatch.setenv(kernels.BF16_ENV, "fast")
    with pytest.raises(ValueError, match=kernels.BF16_ENV):
        kernels.gemm_precision_for("bfloat16")
    with pytest.raises(ValueError, match="gemm_precision"):
        kernels.lstm_sequence(np.zeros((1, 1, 1), "float32"), np.zeros((1, 4), "float32"),
                              np.zeros(4, "float32"), *np.zeros((2, 1, 1), "float32"),
                              np.zeros((1, 4), "float32"), gemm_precision="half")
