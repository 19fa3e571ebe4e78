import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import as_list, assert_config_round_trip, assert_keras_save_round_trip, max_abs_diff
from lstm_core import LSTM

RNG = np.random.default_rng(0)
X = RNG.standard_normal((3, 6, 4)).astype("float32")
IDS = np.array([[3, 1, 4, 1, 0, 0], [5, 9, 2, 6, 5, 3], [5, 8, 0, 0, 0, 0]], "int32")


def paired(**kwargs):
    """A keras.layers.LSTM and an lstm_core.LSTM with the same weights."""
    ref, ours = keras.layers.LSTM(5, **kwargs), LSTM(5, **kwargs)
    ref.build(X.shape)
    ours.build(X.shape)
    ours.set_weights(ref.get_weights())
    return ref, ours


CASES = [
    {},
    {"return_sequences": True},
    {"return_state": True},
    {"return_sequences": True, "return_state": True},
    {"go_backwards": True},
    {"go_backwards": True, "return_sequences": True},
    {"use_bias": False},
    {"unroll": True, "return_sequences": True},
    {"activation": "relu", "recurrent_activation": "hard_sigmoid", "return_sequences": True},
]


@pytest.mark.parametrize("kwargs", CASES, ids=str)
def test_matches_keras_lstm(kwargs):
    ref, ours = paired(**kwargs)
    assert max_abs_diff(ref(X), ours(X)) <= 1e-5


@pytest.mark.parametrize("kwargs", [{"return_sequences": True}, {"return_state": True}, {"go_backwards": True, "return_sequences": True}], ids=str)
def test_initial_state_matches_keras(kwargs):
    ref, ours = paired(**kwargs)
    state = [RNG.standard_normal((3, 5)).astype("float32") for _ in range(2)]
    assert max_abs_diff(ref(X, initial_state=state), ours(X, initial_state=state)) <= 1e-5


@pytest.mark.parametrize(
    "kwargs",
    [{"return_sequences": True}, {"return_state": True}, {"go_backwards": True, "return_sequences": True},
     {"return_sequences": True, "zero_output_for_mask": True}, {"unroll": True, "return_sequences": True}],
    ids=str,
)
def test_masked_batch_matches_keras(kwargs):
    emb = keras.layers.Embedding(10, 4, mask_zero=True)
    x, mask = emb(IDS), emb.compute_mask(IDS)
    ref, ours = paired(**kwargs)
    assert max_abs_diff(ref(x, mask=mask), ours(x, mask=mask)) <= 1e-5


def _functional(layer_cls, bidirectional=True, merge_mode="concat"):
    inp = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(10, 4, mask_zero=True)(inp)
    lstm = layer_cls(5, return_sequences=True)
    x = keras.layers.Bidirectional(lstm, merge_mode=merge_mode)(x) if bidirectional else lstm(x)
    x = layer_cls(3)(x)
    return keras.Model(inp, keras.layers.Dense(2)(x))


@pytest.mark.parametrize("merge_mode", ["concat", "sum"])
def test_bidirectional_masked_model_matches_keras(merge_mode):
    ref, ours = _functional(keras.layers.LSTM, merge_mode=merge_mode), _functional(LSTM, merge_mode=merge_mode)
    ours.set_weights(ref.get_weights())
    assert max_abs_diff(ref(IDS), ours(IDS)) <= 1e-5


def _grads(model_or_layer, inputs, **call_kwargs):
    inputs = tf.constant(inputs)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        out = as_list(model_or_layer(inputs, training=True, **call_kwargs))
        loss = sum(tf.reduce_sum(tf.sin(o * (k + 1.0))) for k, o in enumerate(out))
    return tape.gradient(loss, [inputs] + model_or_layer.trainable_variables)


@pytest.mark.parametrize("kwargs", [{"return_sequences": True}, {"return_state": True, "go_backwards": True}, {"unroll": True}], ids=str)
def test_gradients_match_keras(kwargs):
    ref, ours = paired(**kwargs)
    assert max_abs_diff(_grads(ref, X), _grads(ours, X)) <= 1e-4


def test_gradients_match_keras_masked_bidirectional():
    ref, ours = _functional(keras.layers.LSTM), _functional(LSTM)
    ours.set_weights(ref.get_weights())
    with tf.GradientTape(persistent=True) as tape:
        a, b = tf.reduce_sum(tf.sin(ref(IDS))), tf.reduce_sum(tf.sin(ours(IDS)))
    ga = tape.gradient(a, ref.trainable_variables)
    gb = tape.gradient(b, ours.trainable_variables)
    assert max_abs_diff([tf.convert_to_tensor(g) for g in ga], [tf.convert_to_tensor(g) for g in gb]) <= 1e-4


def test_dropout_trains_and_is_off_at_inference():
    layer = LSTM(5, dropout=0.3, recurrent_dropout=0.3, seed=0)
    a, b = layer(X, training=False), layer(X, training=False)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, layer(X, training=True))
    grads = _grads(layer, X)
    assert all(g is not None and np.isfinite(np.asarray(g)).all() for g in grads)


def test_stateful_carries_state_across_calls():
    inp = keras.Input(batch_shape=(3, 3, 4))
    layer = LSTM(5, stateful=True)
    model = keras.Model(inp, layer(inp))
    ref_layer = keras.layers.LSTM(5)
    ref_layer.build(X.shape)
    ref_layer.set_weights([w for w in layer.get_weights()[:3]])
    first = model(X[:, :3])
    second = model(X[:, 3:])
    np.testing.assert_allclose(second, ref_layer(X), atol=1e-5)
    layer.reset_states()
    np.testing.assert_allclose(model(X[:, :3]), first, atol=1e-6)


def test_stateful_needs_fixed_batch():
    with pytest.raises(ValueError, match="batch"):
        LSTM(2, stateful=True)(keras.Input((3, 4)))


def test_config_round_trip_and_keras_file(tmp_path):
    layer = LSTM(5, return_sequences=True, go_backwards=True, dropout=0.1, kernel_regularizer="l2")
    assert_config_round_trip(layer)
    model = _functional(LSTM)
    loaded = assert_keras_save_round_trip(model, IDS, tmp_path)
    assert isinstance(loaded.layers[2].forward_layer, LSTM)


def test_fused_mode_ignores_mask():
    emb = keras.layers.Embedding(10, 4, mask_zero=True)
    padded, mask = np.asarray(emb(IDS[:1])), emb.compute_mask(IDS[:1])  # numpy: no _keras_mask
    auto = LSTM(5)
    auto.build(padded.shape)
    fused = LSTM.from_config({**auto.get_config(), "mode": "fused"})
    fused.build(padded.shape)
    fused.set_weights(auto.get_weights())
    # auto honours the mask (= running the 4 real tokens), fused runs over the padding too
    np.testing.assert_allclose(auto(padded, mask=mask), auto(padded[:, :4]), atol=1e-6)
    np.testing.assert_allclose(fused(padded, mask=mask), auto(padded), atol=1e-6)
    assert not np.allclose(fused(padded, mask=mask), auto(padded, mask=mask), atol=1e-4)


def test_bad_mode_and_fused_activation_are_rejected():
    with pytest.raises(ValueError, match="mode"):
        LSTM(3, mode="streaming")
    with pytest.raises(ValueError, match="tanh"):
        LSTM(3, activation="relu", mode="fused")(X)


def test_step_equals_sequence():
    layer = LSTM(5, return_sequences=True)
    seq = layer(X)
    h = c = tf.zeros((3, 5))
    for t in range(X.shape[1]):
        out, (h, c) = layer.step(X[:, t], [h, c])
        np.testing.assert_allclose(out, seq[:, t], atol=1e-5)


def test_one_graph_with_two_shapes_keeps_traces_apart():
    """Regression: traces sharing an api_implements name had their bodies swapped by grappler."""
    layer = LSTM(4, return_sequences=True)
    a, b = tf.ones((2, 3, 5)), tf.random.normal((3, 7, 5))

    @tf.function
    def both(a, b):
        return layer(a), layer(b)

    out_a, out_b = both(a, b)
    assert out_a.shape == (2, 3, 4) and out_b.shape == (3, 7, 4)
    np.testing.assert_allclose(out_b, layer(b), atol=1e-6)
    single = tf.function(lambda x: layer(x))
    for batch in (2, 3, 2):
        assert single(tf.ones((batch, 3, 5))).shape == (batch, 3, 4)


def test_step_of_two_layers_in_one_functional_model(tmp_path):
    """Each layer names its cell after itself, so two ``step`` calls can share a functional graph."""
    first, second = LSTM(5, name="first"), LSTM(5, name="second")
    for layer in (first, second):
        layer.build(X.shape)
    x_t, h, c = keras.Input((4,)), keras.Input((5,)), keras.Input((5,))
    out_a, _ = first.step(x_t, [h, c])
    out_b, _ = second.step(x_t, [h, c])
    model = keras.Model([x_t, h, c], [out_a, out_b])
    zeros = np.zeros((3, 5), "float32")
    got_a, got_b = model([X[:, 0], zeros, zeros])
    np.testing.assert_allclose(got_a, first(X[:, :1]), atol=1e-6)
    np.testing.assert_allclose(got_b, second(X[:, :1]), atol=1e-6)
    # weights are saved by attribute path, not by the cell's name: files written by earlier
    # versions (cell named "lstm_cell") load unchanged; here a renamed layer round-trips
    seq = _functional(LSTM)
    assert_keras_save_round_trip(seq, IDS, tmp_path)


def test_auto_jit_compile_stays_off():
    """XLA train steps of this loop are ~10x slower: Keras' "auto" must not pick XLA."""
    from keras.src.trainers.trainer import model_supports_jit

    inp = keras.Input((6, 4))
    model = keras.Model(inp, keras.layers.Dense(1)(LSTM(5)(inp)))
    assert not model_supports_jit(model)
