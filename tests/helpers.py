"""Shared round-trip checks for layers and models (keras-hub style test helpers)."""

from __future__ import annotations

import numpy as np
import keras

from lstm_core.export import FUSED_LSTM_OP, TFLiteModel, export_tflite_report


def load_tool(name: str):
    """Import ``tools/<name>.py`` (a script folder, not a package) as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def max_abs_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(as_list(a), as_list(b)))


def assert_config_round_trip(layer):
    """``from_config(get_config())`` gives an equal config."""
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    return clone


def assert_keras_save_round_trip(model, inputs, tmp_path, atol=1e-6):
    """``.keras`` save/load keeps the outputs."""
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert max_abs_diff(model(inputs), loaded(inputs)) <= atol
    return loaded


def assert_tflite_round_trip(model, inputs, tmp_path, quantization=None, representative=None, atol=1e-4):
    """Export through lstm_core.export, run with LiteRT, compare with Keras; returns the report."""
    path = tmp_path / f"model_{quantization or 'float'}.tflite"
    report = export_tflite_report(
        model,
        path,
        quantization=quantization,
        representative_dataset=representative,
        sample_inputs=[as_list(inputs)],
        atol=atol,
    )
    assert path.exists()
    ops = TFLiteModel(path).op_names()
    assert FUSED_LSTM_OP in ops
    assert not {"WHILE", "CUSTOM"} & set(ops) and not any(op.startswith("Flex") for op in ops)
    return report


def _representative_like(inputs, count=16, seed=0):
    """Calibration samples shaped and typed like ``inputs`` (floats ~ N(0, 1); ids in the
    range seen in ``inputs``)."""
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(x) for x in as_list(inputs)]

    def sample(x):
        if np.issubdtype(x.dtype, np.integer):
            return rng.integers(0, int(x.max()) + 1, x.shape).astype(x.dtype)
        return rng.standard_normal(x.shape).astype(x.dtype)

    samples = [[sample(x) for x in arrays] for _ in range(count)]
    return lambda: iter(samples)


def _assert_one_fit_step_trains(layer_factory, arrays, apply):
    """One SGD ``fit`` step on a model ``inputs -> layer -> Dense(1)``: the loss is finite and
    every trainable weight of the layer moves (so gradients reach all of them)."""
    keras.utils.set_random_seed(0)
    symbolic = [keras.Input(x.shape[1:], dtype=str(x.dtype), batch_size=x.shape[0]) for x in arrays]
    layer = layer_factory()
    outputs = as_list(apply(layer, symbolic if len(arrays) > 1 else symbolic[0]))
    flat = [keras.layers.Flatten()(keras.ops.cast(o, "float32")) for o in outputs]
    head = keras.layers.Dense(1)(flat[0] if len(flat) == 1 else keras.layers.Concatenate()(flat))
    model = keras.Model(symbolic if len(arrays) > 1 else symbolic[0], head)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    before = [np.array(w) for w in layer.trainable_weights]
    target = np.random.default_rng(0).standard_normal((arrays[0].shape[0], 1)).astype("float32")
    history = model.fit(arrays if len(arrays) > 1 else arrays[0], target, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]), history.history
    still = [w.path for w, old in zip(layer.trainable_weights, before) if np.array_equal(np.array(w), old)]
    assert not still, f"one fit step left these trainable weights unchanged: {still}"


# one piece: long through its numbered docstring; the body runs the steps in order (exports in _check_exports).
def run_layer_test(
    layer_factory,
    inputs,
    tmp_path,
    *,
    expected_num_trainable_weights,
    expected_num_non_trainable_weights,
    expected_output_shape=None,
    quantizations=(None, "int8"),
    atol=1e-4,
    tflm=True,
    max_lsb_diff=2,
    custom_objects=None,
    positional=False,
):
    """keras-hub style checks of one layer (issue 12 item 8), returns the export reports.

    1. ``get_config`` / ``from_config`` give an equal config;
    2. the built layer has ``expected_num_trainable_weights`` trainable and
       ``expected_num_non_trainable_weights`` non-trainable weights (as keras-hub's harness checks);
    3. the symbolic call's output shape equals the eager output's (and ``expected_output_shape``);
    4. a ``.keras`` round trip of a model around the layer keeps the outputs;
    5. one ``fit`` step of a tiny model around a fresh layer (its outputs flattened into a
       ``Dense(1)``) runs, gives a finite loss and changes every trainable weight of the layer;
    6. TFLite export (every ``quantizations`` entry, through ``lstm_core.export``): float within
       ``atol`` of Keras under LiteRT; quantized exports load and run;
    7. with ``tflm``: every export also runs in TFLite Micro, float within ``atol`` of LiteRT and
       int8 within ``max_lsb_diff`` LSB.

    ``layer_factory()`` returns a fresh layer; ``inputs`` is one array or a list (batch 1: the
    TFLite/TFLM exports have a static batch of 1). ``positional=True`` passes a list of inputs as
    separate arguments (``call(self, query, keys, ...)``) instead of one list.
    """
    layer = layer_factory()
    arrays = [np.asarray(x) for x in as_list(inputs)]
    call_input = arrays if len(arrays) > 1 else arrays[0]

    def apply(target, values):
        return target(*values) if positional and isinstance(values, list) else target(values)

    eager = apply(layer, call_input)
    assert_config_round_trip(layer)
    counts = (len(layer.trainable_weights), len(layer.non_trainable_weights))
    assert counts == (expected_num_trainable_weights, expected_num_non_trainable_weights), (
        f"{type(layer).__name__}: (trainable, non-trainable) weights {counts}, expected "
        f"{(expected_num_trainable_weights, expected_num_non_trainable_weights)}"
    )

    symbolic_inputs = [keras.Input(x.shape[1:], dtype=str(x.dtype), batch_size=x.shape[0]) for x in arrays]
    model_layer = layer_factory()
    outputs = apply(model_layer, symbolic_inputs if len(arrays) > 1 else symbolic_inputs[0])
    for symbolic, real in zip(as_list(outputs), as_list(eager)):
        assert tuple(symbolic.shape) == tuple(np.asarray(real).shape), (symbolic.shape, np.asarray(real).shape)
    if expected_output_shape is not None:  # one output: its shape
        assert tuple(np.asarray(as_list(eager)[0]).shape) == tuple(expected_output_shape)
    model = keras.Model(symbolic_inputs if len(arrays) > 1 else symbolic_inputs[0], outputs)
    path = tmp_path / "layer_test.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, custom_objects=custom_objects)
    assert max_abs_diff(model(call_input), loaded(call_input)) <= 1e-6
    _assert_one_fit_step_trains(layer_factory, arrays, apply)

    return _check_exports(model, arrays, tmp_path, quantizations, atol, tflm, max_lsb_diff)


def _check_exports(model, arrays, tmp_path, quantizations, atol, tflm, max_lsb_diff):
    """Steps 6 and 7 of :func:`run_layer_test`: each quantization through LiteRT (and TFLM)."""
    from lstm_core.export import export_tflite_report

    reports = {}
    representative = _representative_like(arrays)
    for quantization in quantizations:
        name = quantization or "float"
        report = export_tflite_report(
            model,
            tmp_path / f"layer_test_{name}.tflite",
            quantization=quantization,
            representative_dataset=representative if quantization in ("int8", "int16x8") else None,
            sample_inputs=[arrays],
            atol=atol,
            tflm=tflm,
            tflm_arena=False,  # measured in tests/lstm_core/test_tflm.py
        )
        if quantization is None:
            assert report.max_abs_diff <= atol
        if tflm and quantization not in ("dynamic",):
            section = report.tflm
            assert section["loads"], section
            if quantization is None:
                assert section["max_abs_diff_vs_litert"] <= atol, section
            elif quantization == "int8":
                assert section["max_lsb_diff"] <= max_lsb_diff, section
        reports[name] = report
    return reports


def last_json(out: str) -> dict:
    """The JSON object on the last line of ``out`` (what ``evaluate`` prints last on stdout)."""
    import json

    return json.loads(out.strip().splitlines()[-1])


def run_cli(*argv, capsys=None, cwd=None):
    """``lstm-suite ARGV`` -> ``subprocess.CompletedProcess`` (``returncode``, ``stdout``, ``stderr``).

    With ``capsys`` it runs in this process (TensorFlow is loaded once for the whole test run;
    a ``SystemExit``, as argparse raises, gives its code); without, in a fresh
    ``python -m tasks.common.cli`` started in ``cwd`` (default: the repository root), for what
    only a new process shows (imports, start-up time, the environment).
    """
    import subprocess
    import sys
    from pathlib import Path

    argv = [str(arg) for arg in argv]
    if capsys is None:
        root = Path(__file__).resolve().parents[1]
        result = subprocess.run([sys.executable, "-m", "tasks.common.cli", *argv], capture_output=True, text=True,
                                cwd=cwd or root, timeout=300)
        assert_no_lock_left(argv, cwd or root)
        return result
    from tasks.common import cli

    try:
        code = cli.main(argv)
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    assert_no_lock_left(argv)
    return subprocess.CompletedProcess(argv, code, captured.out, captured.err)


LOCKED_FLAGS = ("--out", "--model")


def assert_no_lock_left(argv, cwd=None) -> None:
    """No lock file nobody holds (``.<dir>.lock``, what train and export take) is left beside the
    directories ``argv`` names with ``--out``/``--model``, after success, failure or bad input (issue 27).

    A lock another live process holds is not a leftover (the tests that make two runs meet).
    """
    import fcntl
    import os
    from pathlib import Path

    folders = {Path(cwd or os.getcwd())}
    for flag, value in zip(argv, argv[1:]):
        if flag in LOCKED_FLAGS:
            path = Path(value) if Path(value).is_absolute() else Path(cwd or os.getcwd()) / value
            folders.add(Path(os.path.abspath(path)).parent)
    left = []
    for folder in folders:
        for lock in folder.glob(".*.lock") if folder.is_dir() else ():
            if lock.is_symlink() or not lock.is_file() or lock.stat().st_nlink != 1:
                continue  # planted by a test of the lock's own refusals
            fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                left.append(str(lock))  # nobody holds it: left behind
            except BlockingIOError:
                pass
            finally:
                os.close(fd)
    assert not left, f"lstm-suite {' '.join(argv[:2])} left lock files behind: {left}"


# Lines TensorFlow, absl, XLA, LiteRT or the converter print on their own (C++ or Python); none may
# reach a terminal without -v (issue 27). Written independently of tasks.common.quiet.NOISE.
FOREIGN_LINE = (
    r"^[IWEF]\d{4} \d\d:\d\d:|^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] "  # absl / TensorFlow C++ logs
    r"|^(INFO|WARNING|ERROR): |^(WARNING|INFO|ERROR):(absl|tensorflow):"  # LiteRT's logger; absl/TF Python logs
    r"|oneDNN|XNNPACK|absl::|cudart|cuda_|tensorflow/|tsl/|xla/"
    r"|LSTM op \d+:|max \|tflite - keras\||^\S+\.py:\d+: \w*Warning: "  # converter notes; Python warnings
)


def run_cli_fd(*argv):
    """``lstm-suite ARGV`` in this process with descriptors 1 and 2 captured, as a terminal would see them.

    Unlike ``capsys`` this also gets what C++ code (TensorFlow, LiteRT, TFLM) writes to the
    descriptors. Returns a ``subprocess.CompletedProcess`` like :func:`run_cli`.
    """
    import io
    import os
    import subprocess
    import sys
    import tempfile

    from tasks.common import cli

    argv = [str(arg) for arg in argv]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        saved, streams = (os.dup(1), os.dup(2)), (sys.stdout, sys.stderr)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.stdout, sys.stderr = (io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), line_buffering=True,
                                                   write_through=True) for fd in (1, 2))
        try:
            code = cli.main(argv)
        except SystemExit as exit:
            code = exit.code
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = streams
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)
        out.seek(0)
        err.seek(0)
        assert_no_lock_left(argv)
        return subprocess.CompletedProcess(argv, code, out.read().decode(errors="replace"),
                                           err.read().decode(errors="replace"))


def assert_quiet(result):
    """No line of ``result`` (stdout and stderr) comes from TensorFlow, absl or LiteRT; returns it."""
    import re

    foreign = [line for text in (result.stdout, result.stderr) for line in text.splitlines()
               if re.search(FOREIGN_LINE, line)]
    assert not foreign, f"{' '.join(result.args[:3])}: lines from TensorFlow/absl/LiteRT without -v:\n" + "\n".join(foreign[:20])
    return result


def quiet_cli(*argv):
    """:func:`run_cli_fd` that must succeed and print nothing from TensorFlow/absl/LiteRT (issue 27)."""
    result = run_cli_fd(*argv)
    assert result.returncode == 0, result.stderr[-3000:]
    return assert_quiet(result)
