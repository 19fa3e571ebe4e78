"""The native LSTM kernel (lstm_core.kernels): parity with the TensorFlow loop, when it is used,
exports that never reference it, and the fallback when it cannot be built."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import as_list, max_abs_diff
from lstm_core import LSTM, kernels
from lstm_core.kernels import build

RNG = np.random.default_rng(1)
# batch 5: uneven shards over the intra-op threads; row 1 starts masked, row 3 is fully masked
X = RNG.standard_normal((5, 7, 3)).astype("float32")
MASK = np.array(
    [[1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 0, 1, 0], [1, 1, 1, 1, 0, 0, 0], [0] * 7, [1, 0, 1, 0, 1, 0, 1]],
    bool,
)
STATE = [RNG.standard_normal((5, 4)).astype("float32") for _ in range(2)]


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the layer's calls into the native kernel."""
    calls = []
    real = kernels.lstm_sequence

    def counted(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(kernels, "lstm_sequence", counted)
    return calls


def _pair(**kwargs):
    native, loop = LSTM(4, **kwargs, seed=3), LSTM(4, **kwargs, seed=3)
    native.build(X.shape)
    loop.build(X.shape)
    loop.set_weights(native.get_weights())
    return native, loop


def _run(layer, choice, monkeypatch, **call_kwargs):
    """Outputs and gradients (inputs, initial state, weights) of one training call."""
    monkeypatch.setenv(kernels.CHOICE_ENV, choice)
    x, state = tf.constant(X), [tf.constant(s) for s in STATE]
    with tf.GradientTape() as tape:
        tape.watch([x] + state)
        out = as_list(layer(x, initial_state=state, training=True, **call_kwargs))
        loss = sum(tf.reduce_sum(tf.sin(o * (k + 1.0))) for k, o in enumerate(out))
    return out, tape.gradient(loss, [x] + state + layer.trainable_variables)


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_masked_kernel_matches_tf_loop(go_backwards, zero_output_for_mask, monkeypatch, kernel_calls):
    kwargs = dict(return_sequences=True, return_state=True, go_backwards=go_backwards,
                  zero_output_for_mask=zero_output_for_mask)
    native, loop = _pair(**kwargs)
    out_native, grads_native = _run(native, "native", monkeypatch, mask=tf.constant(MASK))
    assert len(kernel_calls) == 1
    out_loop, grads_loop = _run(loop, "tf", monkeypatch, mask=tf.constant(MASK))
    assert len(kernel_calls) == 1
    assert max_abs_diff(out_native, out_loop) <= 1e-5
    assert max_abs_diff(grads_native, grads_loop) <= 1e-4


def test_input_dropout_goes_through_the_kernel(monkeypatch, kernel_calls):
    native, loop = _pair(dropout=0.4, return_sequences=True)  # same seed: same dropout mask
    out_native, grads_native = _run(native, "native", monkeypatch)
    out_loop, grads_loop = _run(loop, "tf", monkeypatch)
    assert len(kernel_calls) == 1
    assert max_abs_diff(out_native, out_loop) <= 1e-5
    assert max_abs_diff(grads_native, grads_loop) <= 1e-4


def test_larger_shape_matches_keras(monkeypatch, kernel_calls):
    """More rows than one shard per thread, H a multiple of the SIMD width and not."""
    monkeypatch.setenv(kernels.CHOICE_ENV, "native")
    x = RNG.standard_normal((37, 11, 6)).astype("float32")
    for units in (16, 13):
        ref, ours = keras.layers.LSTM(units, return_sequences=True), LSTM(units, return_sequences=True)
        ref.build(x.shape)
        ours.build(x.shape)
        ours.set_weights(ref.get_weights())
        assert max_abs_diff(ref(x), ours(x)) <= 1e-5
    assert len(kernel_calls) == 2


def _op_types(concrete):
    graph_def = concrete.graph.as_graph_def()
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    return {n.op for n in nodes}


def test_which_graphs_use_the_kernel(monkeypatch):
    """Every graph that is run uses it (training, a user's inference tf.function); graphs traced
    for export (portable_graphs, SavedModel save, Keras export) do not."""
    monkeypatch.setenv(kernels.CHOICE_ENV, "native")
    layer = LSTM(4)
    spec = tf.TensorSpec((None, 7, 3))
    training = tf.function(lambda x: layer(x, training=True)).get_concrete_function(spec)
    inference = tf.function(lambda x: layer(x, training=False)).get_concrete_function(spec)
    with kernels.portable_graphs():
        portable = tf.function(lambda x: layer(x, training=False)).get_concrete_function(spec)
    assert kernels.SEQUENCE_OP in _op_types(training)
    assert kernels.SEQUENCE_OP in _op_types(inference)
    assert not any(op.startswith("LstmCore") for op in _op_types(portable))
    np.testing.assert_allclose(inference(X), portable(X), atol=1e-6)


def test_inference_graph_without_the_gradient_buffers(monkeypatch):
    """native_inference() graphs skip the saved activations and refuse a gradient clearly."""
    monkeypatch.setenv(kernels.CHOICE_ENV, "native")
    layer = LSTM(4)
    with kernels.native_inference():
        fast = tf.function(lambda x: layer(x, training=False))
        expected = fast(X)
    plain = tf.function(lambda x: layer(x, training=False))
    np.testing.assert_allclose(plain(X), expected, atol=1e-6)
    x = tf.constant(X)
    with tf.GradientTape() as tape:  # the plain graph keeps the activations: differentiable
        tape.watch(x)
        loss = tf.reduce_sum(plain(x))
    assert tape.gradient(loss, x) is not None


def test_a_served_function_that_ran_the_kernel_saves_without_it(monkeypatch, tmp_path):
    """tf.saved_model.save traces a tf.function again in its save context: the SavedModel is pure
    even though the same function ran with the kernel; a concrete function needs portable_graphs."""
    monkeypatch.setenv(kernels.CHOICE_ENV, "native")
    inp = keras.Input((7, 3))
    model = keras.Model(inp, LSTM(4)(inp))
    module = tf.Module()
    module.model = model
    module.serve = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec((None, 7, 3))])
    module.serve(X)
    assert kernels.SEQUENCE_OP in _op_types(module.serve.get_concrete_function())
    tf.saved_model.save(module, str(tmp_path / "saved"), signatures={"serving_default": module.serve})
    assert b"LstmCore" not in (tmp_path / "saved" / "saved_model.pb").read_bytes()
    with kernels.portable_graphs():
        concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(tf.TensorSpec((None, 7, 3)))
    tf.saved_model.save(module, str(tmp_path / "concrete"), signatures={"serving_default": concrete})
    assert b"LstmCore" not in (tmp_path / "concrete" / "saved_model.pb").read_bytes()


def test_xla_graphs_keep_the_loop(monkeypatch, kernel_calls):
    monkeypatch.setenv(kernels.CHOICE_ENV, "native")
    layer = LSTM(4)
    layer.build(X.shape)
    expected = layer(X)
    assert len(kernel_calls) == 1
    np.testing.assert_allclose(tf.function(layer, jit_compile=True)(X, training=True), expected, atol=1e-5)
    assert len(kernel_calls) == 1


def test_keras_predict_and_fit_use_the_kernel(monkeypatch, kernel_calls):
    monkeypatch.setenv(kernels.CHOICE_ENV, "native")
    inp = keras.Input((7, 3))
    model = keras.Model(inp, keras.layers.Dense(1)(LSTM(4)(inp)))
    model.compile("sgd", "mse")
    model.predict(X, verbose=0)
    assert kernel_calls
    del kernel_calls[:]
    model.fit(X, np.zeros((5, 1)), epochs=1, verbose=0)
    assert kernel_calls


def test_tf_choice_and_other_activations_keep_the_loop(monkeypatch, kernel_calls):
    monkeypatch.setenv(kernels.CHOICE_ENV, "tf")
    LSTM(4)(X)
    monkeypatch.setenv(kernels.CHOICE_ENV, "native")
    LSTM(4, activation="relu")(X)
    LSTM(4, recurrent_dropout=0.5)(X, training=True)
    assert not kernel_calls
    monkeypatch.setenv(kernels.CHOICE_ENV, "fast")
    with pytest.raises(ValueError, match="LSTM_CORE_KERNEL"):
        LSTM(4)(X)


# One child process (a TensorFlow import is the slow part) that never has the op library: it
# first loads and runs a SavedModel exported by a process that trained with the kernel, then
# imports lstm_core without a compiler on hand.
NO_KERNEL_PROCESS = textwrap.dedent(
    """
    import json, os, pathlib, sys
    import numpy as np
    import tensorflow as tf
    saved, ids_path = sys.argv[1:]
    loaded = tf.saved_model.load(saved)
    out = loaded.signatures["serving_default"](input_0=tf.constant(np.load(ids_path)))
    assert "lstm_core" not in sys.modules
    print("SAVED_MODEL:", json.dumps(np.asarray(out["output_0"]).tolist()))

    from lstm_core import LSTM, kernels
    from tasks.common.cli import main
    for argv in (["--help"], ["sentiment", "train", "--help"]):
        try:
            main(argv)
        except SystemExit:
            pass
    cache = pathlib.Path(os.environ["LSTM_CORE_KERNEL_CACHE"])
    assert not cache.exists() or not any(cache.rglob("*.so")), "compiled at import or --help"
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype("float32")
    os.environ["LSTM_CORE_KERNEL"] = "tf"
    layer = LSTM(4)
    expected = np.asarray(layer(x))
    os.environ["LSTM_CORE_KERNEL"] = "auto"
    np.testing.assert_allclose(layer(x), expected, atol=1e-6)  # falls back (one warning)
    np.testing.assert_allclose(layer(x), expected, atol=1e-6)  # no second warning
    os.environ["LSTM_CORE_KERNEL"] = "native"
    try:
        layer(x)
    except kernels.KernelBuildError as err:
        print("ERROR:", err)
    else:
        raise AssertionError("LSTM_CORE_KERNEL=native without a compiler must fail")
    """
)
IDS = np.array([[3, 1, 4, 1, 0, 0], [5, 9, 2, 6, 5, 3]], "int32")


@pytest.fixture(scope="module")
def no_kernel_process(tmp_path_factory):
    """(in-process outputs of the exported model, the child's CompletedProcess, kernel calls)."""
    from lstm_core.export import export_saved_model

    tmp = tmp_path_factory.mktemp("no_kernel")
    calls = []
    real = kernels.lstm_sequence
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(kernels.CHOICE_ENV, "native")
        patch.setattr(kernels, "lstm_sequence", lambda *a, **k: calls.append(1) or real(*a, **k))
        inp = keras.Input((None,), dtype="int32")
        x = keras.layers.Embedding(10, 4, mask_zero=True)(inp)
        x = keras.layers.Bidirectional(LSTM(5, return_sequences=True))(x)
        model = keras.Model(inp, keras.layers.Dense(2)(LSTM(3)(x)))
        model.compile("sgd", "mse")
        model.fit(IDS, np.zeros((2, 2)), epochs=1, verbose=0)
        expected = np.asarray(model(IDS))
        served = tf.function(lambda ids: model(ids, training=False))
        np.testing.assert_allclose(served(IDS), expected, atol=1e-5)  # a user's inference graph: the kernel
        export_saved_model(model, tmp / "saved")
        model.export(str(tmp / "keras_export"), verbose=False)  # Keras' own exporter traces anew
    np.save(tmp / "ids.npy", IDS)
    env = {**os.environ, "LSTM_CORE_KERNEL_CACHE": str(tmp / "empty_cache"),
           "CXX": str(tmp / "no-such-compiler"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop(kernels.CHOICE_ENV, None)
    result = subprocess.run(
        [sys.executable, "-c", NO_KERNEL_PROCESS, str(tmp / "saved"), str(tmp / "ids.npy")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    return tmp / "saved", expected, result, calls


def test_saved_model_loads_where_the_op_library_never_was(no_kernel_process):
    saved, expected, result, calls = no_kernel_process
    assert calls  # trained (and predicted) with the kernel
    assert b"LstmCore" not in (saved / "saved_model.pb").read_bytes()
    assert b"LstmCore" not in (saved.parent / "keras_export" / "saved_model.pb").read_bytes()
    line = next((l for l in result.stdout.splitlines() if l.startswith("SAVED_MODEL:")), None)
    assert line is not None, result.stderr[-3000:]
    np.testing.assert_allclose(np.array(json.loads(line.split(":", 1)[1])), expected, atol=1e-5)


def test_without_a_compiler_falls_back_with_one_warning(no_kernel_process):
    result = no_kernel_process[2]
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [l for l in result.stderr.splitlines() if "native LSTM kernel unavailable" in l]
    assert len(warnings) == 1, result.stderr[-3000:]
    assert "no C++ compiler" in warnings[0]
    error = result.stdout[result.stdout.index("ERROR:"):]
    assert "LSTM_CORE_KERNEL=native but the kernel could not be built" in error
    assert "no C++ compiler" in error


def test_failed_compile_is_a_build_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTM_CORE_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "false")  # a "compiler" that always fails
    with pytest.raises(build.KernelBuildError, match="false failed"):
        build.build()
    assert not list(tmp_path.rglob("*.so"))


def test_cache_path_is_per_tf_version_and_cpu_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTM_CORE_KERNEL_CACHE", str(tmp_path))
    cxx = build.compiler() or "c++"
    path = build.library_path(cxx)
    assert path.parent == tmp_path / f"tf-{tf.__version__}"
    monkeypatch.setattr(build, "cpu_flags", lambda: ["-mno-such-flag"])
    assert build.library_path(cxx) != path


def test_concurrent_first_uses_compile_once(tmp_path, monkeypatch):
    """Two builders at once (threads here; the fcntl lock works the same across processes)."""
    log = tmp_path / "compiles.log"
    fake = tmp_path / "fake-cxx"
    fake.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        [ "$1" = "--version" ] && {{ echo "fake-cxx 1.0"; exit 0; }}
        while [ "$1" != "-o" ]; do shift; done
        echo compile >> {log}
        sleep 0.5
        echo library > "$2"
        """))
    fake.chmod(0o755)
    monkeypatch.setenv("LSTM_CORE_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", str(fake))
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda _: build.build(), range(2)))
    assert paths[0] == paths[1] and paths[0].read_text() == "library\n"
    assert log.read_text().count("compile") == 1
    assert not list(paths[0].parent.glob("*.tmp"))


def test_inference_without_saved_activations_gives_the_same_outputs(monkeypatch):
    """save_for_backward=False keeps gates/cells in per-thread buffers: same numbers, no gradient."""
    monkeypatch.setenv(kernels.CHOICE_ENV, "native")
    rng = np.random.default_rng(3)
    x = tf.constant(rng.standard_normal((5, 9, 3)).astype("float32"))
    kernel = tf.constant(rng.standard_normal((3, 16)).astype("float32"))
    bias = tf.constant(rng.standard_normal(16).astype("float32"))
    h0 = tf.constant(rng.standard_normal((5, 4)).astype("float32"))
    c0 = tf.constant(rng.standard_normal((5, 4)).astype("float32"))
    recurrent_kernel = tf.constant(rng.standard_normal((4, 16)).astype("float32"))
    mask = tf.constant(rng.random((5, 9)) > 0.3)
    weights = (kernel, bias, h0, c0, recurrent_kernel)
    for go_backwards in (False, True):
        saved = kernels.lstm_sequence(x, *weights, mask=mask, go_backwards=go_backwards)
        fast = kernels.lstm_sequence(x, *weights, mask=mask, go_backwards=go_backwards,
                                     save_for_backward=False)
        for a, b in zip(saved, fast):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match="no gradient"):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs, _, _ = kernels.lstm_sequence(x, *weights, save_for_backward=False)
        tape.gradient(outputs, x)
    layer = LSTM(4)  # an eager call under a tape keeps the activations: gradients still work
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(X))
    assert all(g is not None for g in tape.gradient(loss, layer.trainable_weights))


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keeps_the_kernel(monkeypatch, kernel_calls, policy):
    """Under a mixed policy the kernel runs (in float32) and agrees with keras.layers.LSTM under the
    same policy within bf16/fp16 rounding; outputs keep the policy's dtype; gradients flow."""
    monkeypatch.setenv(kernels.CHOICE_ENV, "native")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        x = RNG.standard_normal((6, 9, 5)).astype("float32")
        ref, ours = keras.layers.LSTM(8, return_sequences=True), LSTM(8, return_sequences=True)
        ref.build(x.shape)
        ours.build(x.shape)
        ours.set_weights(ref.get_weights())
        out = ours(x)
        assert out.dtype == ours.compute_dtype and kernel_calls
        atol = 3e-2 if policy == "mixed_bfloat16" else 5e-3
        assert max_abs_diff(tf.cast(ref(x), tf.float32), tf.cast(out, tf.float32)) <= atol
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(ours(x, training=True), tf.float32))
        grads = tape.gradient(loss, ours.trainable_variables)
        assert all(g is not None and np.all(np.isfinite(g)) for g in grads)
    finally:
        keras.mixed_precision.set_global_policy(previous)
