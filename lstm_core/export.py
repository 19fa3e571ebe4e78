"""SavedModel and TFLite/LiteRT export, with the LSTM as the builtin fused op.

``export_tflite`` traces the model with every ``lstm_core.LSTM`` in ``mode="fused"``, saves a
SavedModel with a static batch size and converts it with ``TFLiteConverter.from_saved_model``:
the MLIR converter replaces each ``api_implements="lstm_*"`` function with
``UNIDIRECTIONAL_SEQUENCE_LSTM`` (Keras 3's own LSTM becomes a ``WHILE`` loop, tensorflow#73254).
Before anything is written the ``.tflite`` runs under LiteRT on sample inputs and is compared
with the Keras model; with ``tflm=True`` it also runs in TensorFlow Lite Micro
(:mod:`lstm_core.tflm`) and the report gets a ``tflm`` section.

Quantizations: ``None``/``"float"``; ``"dynamic"`` (weights-only int8: LiteRT-only, TFLM has no
hybrid kernels); ``"int8"`` (full integer; the LSTM quantization parameters are aligned with
:func:`lstm_core.tflm.align_lstm_quantization` so LiteRT and TFLM read them alike);
``"int16x8"`` (int16 activations, int8 weights, through TFLM's requantizer; TFLM-only: LiteRT's
LSTM has no int64-bias kernel, so the Keras comparison runs in TFLM). Keras ``Embedding``
layers are traced as a plain ``GATHER`` (:mod:`lstm_core.embedding`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf

from lstm_core.errors import ExportMismatchError
from lstm_core.atomic import atomic_path, write_bytes_atomic
from lstm_core.layer import LSTM

log = logging.getLogger(__name__)

QUANTIZATIONS = (None, "float", "dynamic", "int8", "int16x8")
LITERT_ONLY_QUANTIZATIONS = {"dynamic": "weights-only int8 ('dynamic'): TFLM has no hybrid (float x int8) kernels"}
FUSED_LSTM_OP = "UNIDIRECTIONAL_SEQUENCE_LSTM"
FORBIDDEN_OPS = ("WHILE", "FlexOp", "CUSTOM")
FLOAT_ATOL = 1e-4  # max |LiteRT - Keras| of a float export, unless a caller knows better


# ----------------------------------------------------------------------------- mode switch
@contextlib.contextmanager
def lstm_mode(model: keras.layers.Layer, mode: str):
    """Temporarily set ``mode`` on every ``lstm_core.LSTM`` inside ``model`` (nested too)."""
    layers = [l for l in _all_layers(model) if isinstance(l, LSTM)]
    previous = [l.mode for l in layers]
    for layer in layers:
        layer.mode = mode
    try:
        yield layers
    finally:
        for layer, old in zip(layers, previous):
            layer.mode = old


def _all_layers(obj):
    seen, stack, out = set(), [obj], []
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        out.append(layer)
        stack.extend(getattr(layer, "_layers", []) or [])
        for attr in ("forward_layer", "backward_layer", "layer"):
            child = getattr(layer, attr, None)
            if isinstance(child, keras.layers.Layer):
                stack.append(child)
    return out


def contains_lstm(model) -> bool:
    return any(isinstance(l, LSTM) for l in _all_layers(model))


# ----------------------------------------------------------------------------- signatures
def input_specs(model: keras.Model, batch_size: int | None) -> list[tf.TensorSpec]:
    """One ``tf.TensorSpec`` per model input, batch dimension set to ``batch_size``."""
    return [
        tf.TensorSpec((batch_size,) + tuple(t.shape[1:]), t.dtype, name=f"input_{i}")
        for i, t in enumerate(model.inputs)
    ]


def output_names(model: keras.Model) -> list[str]:
    """Positional names (``output_0`` ...): signature maps are unordered, positions are not."""
    return [f"output_{i}" for i in range(len(model.outputs))]


def _positional(names) -> list[str]:
    return sorted(names, key=lambda n: int(n.rsplit("_", 1)[1]) if n.rsplit("_", 1)[-1].isdigit() else 0)


def serving_function(model: keras.Model, specs: Sequence[tf.TensorSpec]) -> tf.types.experimental.ConcreteFunction:
    """Concrete function ``f(**inputs) -> {output_name: tensor}`` for ``model``."""
    names = output_names(model)

    def serve(*args):
        outputs = model(list(args) if len(args) > 1 else args[0], training=False)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        return {n: o for n, o in zip(names, outputs)}

    return tf.function(serve, input_signature=list(specs), autograph=False).get_concrete_function()


# ----------------------------------------------------------------------------- SavedModel
def _trackable(model: keras.Model, module: tf.Module | None = None) -> tf.Module:
    """A ``tf.Module`` that tracks the model's variables (as Keras' ExportArchive does), so
    SavedModel restores them and the TFLite converter can freeze them."""
    module = module or tf.Module()
    module.model_variables = [v.value for v in model.variables]
    return module


def export_saved_model(
    model: keras.Model,
    path,
    *,
    signatures: dict | None = None,
    module: tf.Module | None = None,
) -> Path:
    """Write a SavedModel at ``path`` atomically.

    Default signature ``serving_default`` takes the model inputs (dynamic batch) and returns a
    dict of named outputs. Tasks pass extra ``signatures`` (e.g. raw strings in, labels out)
    and a ``module`` holding any extra resources (tokenizer assets) those signatures use.
    """
    module = _trackable(model, module)
    if signatures is None:
        signatures = {"serving_default": serving_function(model, input_specs(model, None))}
    with atomic_path(path) as tmp:
        tf.saved_model.save(module, str(tmp), signatures=signatures)
    return Path(path)


# ----------------------------------------------------------------------------- TFLite
@dataclasses.dataclass
class TFLiteReport:
    """What ``export_tflite`` measured before writing the file."""

    path: str
    quantization: str | None
    size_bytes: int
    ops: list[str]
    max_abs_diff: float | None
    samples: int
    quantization_fixes: list[str] = dataclasses.field(default_factory=list)
    tflm: dict | None = None

    def as_dict(self):
        return dataclasses.asdict(self)


def convert_to_tflite(
    model: keras.Model,
    *,
    quantization: str | None = None,
    representative_dataset: Callable[[], Iterable] | None = None,
    batch_size: int = 1,
) -> bytes:
    """Convert ``model`` to TFLite bytes with every ``lstm_core.LSTM`` fused."""
    return _convert(model, quantization, representative_dataset, batch_size)[0]


def _convert(model, quantization, representative_dataset, batch_size, scratch_dir=None) -> tuple[bytes, list[str]]:
    """``(flatbuffer, quantization fixes applied)``.

    The intermediate SavedModel goes to a temporary folder in ``scratch_dir`` (the export's own
    ``export.partial/`` when called from an exporter, so a killed export leaves nothing in
    ``$TMPDIR``); the converter's C++ chatter goes to the ``lstm_core`` logger (DEBUG), or to stderr on failure.
    """
    from lstm_core.embedding import plain_gather_embeddings
    from lstm_core._capture import captured_output
    from lstm_core.tflm import align_lstm_quantization, requantize_int16x8

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    if quantization == "float":
        quantization = None
    if quantization in ("int8", "int16x8") and representative_dataset is None:
        raise ValueError(f"quantization={quantization!r} needs a representative_dataset")
    specs = input_specs(model, batch_size)
    if scratch_dir is not None:
        Path(scratch_dir).mkdir(parents=True, exist_ok=True)
    with lstm_mode(model, "fused"), plain_gather_embeddings(model), tempfile.TemporaryDirectory(
        prefix=".convert-", dir=scratch_dir
    ) as tmp:
        module = _trackable(model)
        fn = serving_function(model, specs)
        tf.saved_model.save(module, tmp, signatures={"serving_default": fn})
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if quantization is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization in ("int8", "int16x8"):
            names = [s.name for s in specs]
            float_inputs = [s.dtype.is_floating for s in specs]

            def calibration():
                for sample in representative_dataset():
                    if isinstance(sample, dict):
                        yield sample
                        continue
                    if not isinstance(sample, (list, tuple)):
                        sample = [sample]
                    yield {
                        n: np.asarray(v, dtype=s.dtype.as_numpy_dtype)
                        for n, v, s in zip(names, sample, specs)
                    }

            converter.representative_dataset = calibration
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if any(float_inputs):
                converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        with captured_output(("stdout", "stderr")):
            flatbuffer = converter.convert()
    fixes: list[str] = []
    if quantization in ("int8", "int16x8"):
        flatbuffer, fixes = align_lstm_quantization(flatbuffer)
    if quantization == "int16x8":
        flatbuffer = requantize_int16x8(flatbuffer)
        fixes.append("int8 activations requantized to int16 (int64 biases)")
    return flatbuffer, fixes


def export_tflite(model: keras.Model, path, **options) -> Path:
    """Convert, check under LiteRT (and TFLM if asked), then write ``path``; returns the path.

    Takes the options of :func:`export_tflite_report` (``quantization``,
    ``representative_dataset``, ``sample_inputs``, ``atol``, ``tflm`` ...): float exports must
    agree with Keras within ``atol``; quantized exports log their error.
    """
    export_tflite_report(model, path, **options)
    return Path(path)


def export_tflite_report(
    model: keras.Model,
    path,
    *,
    quantization: str | None = None,
    representative_dataset: Callable[[], Iterable] | None = None,
    batch_size: int = 1,
    sample_inputs: Sequence | None = None,
    atol: float = FLOAT_ATOL,
    require_fused: bool = True,
    tflm: bool | str = False,
    tflm_labels=None,
    tflm_lsb_tolerance: int | None = None,
    tflm_arena: bool = True,
) -> TFLiteReport:
    """Like :func:`export_tflite` but returns the :class:`TFLiteReport` it measured.

    Args:
        tflm: ``True``: also load the file in TensorFlow Lite Micro, run the samples, compare
            with LiteRT and measure the arena; the result is ``report.tflm`` (see
            :func:`lstm_core.tflm.tflm_report`; ``{"loads": False, "reason": ...}`` for a
            LiteRT-only model). ``"require"``: the same, and a model that does not load, or whose
            TFLM output differs from LiteRT's by more than ``tflm_lsb_tolerance`` LSB (default
            ``lstm_core.tflm.LSB_TOLERANCE``), raises ExportMismatchError; nothing is written.
            ``quantization="int16x8"`` always runs in TFLM (LiteRT cannot run it).
        tflm_labels: ``"argmax"``, ``"threshold"`` or a callable, for ``label_agreement``.
        tflm_arena: measure the tensor arena (about a second; ``False`` in quick tests).
    """
    from lstm_core import tflm as micro

    flatbuffer, fixes = _convert(model, quantization, representative_dataset, batch_size,
                                 scratch_dir=Path(path).parent)
    if quantization == "float":
        quantization = None
    ops = micro.model_ops(flatbuffer)
    bad = sorted({op for op in ops if op in FORBIDDEN_OPS or op.startswith("Flex")})
    if bad:
        raise ExportMismatchError(f"TFLite export of {model.name} contains unsupported ops {bad}")
    if require_fused and contains_lstm(model) and FUSED_LSTM_OP not in ops:
        raise ExportMismatchError(
            f"TFLite export of {model.name} has no {FUSED_LSTM_OP} op; ops are {sorted(set(ops))}"
        )
    samples = _default_samples(model, sample_inputs, representative_dataset, batch_size)
    expected_all = []
    for sample in samples:
        expected = model(sample if len(sample) > 1 else sample[0], training=False)
        expected_all.append([np.asarray(e) for e in (expected if isinstance(expected, (list, tuple)) else [expected])])
    tflm_section = None
    if quantization == "int16x8":
        # LiteRT's LSTM has no int16x8 kernel (int64 biases): TFLM is the check.
        tflm_section = micro.tflm_report(
            flatbuffer, samples, labels=tflm_labels, reference_outputs=expected_all, litert=False,
            arena=bool(tflm) and tflm_arena,
        )
        if not tflm_section["loads"]:
            raise ExportMismatchError(
                f"int16x8 export of {model.name} does not run on TFLM ({tflm_section['reason']}); "
                f"not written to {path}"
            )
        worst = tflm_section["max_abs_diff_vs_reference"]["tflm"]
        tflm_section["litert"] = "LiteRT cannot run int16x8 LSTM models (int64 biases); TFLM-only"
    else:
        runner = TFLiteModel(flatbuffer)
        worst = None
        for sample, expected in zip(samples, expected_all):
            got = runner(*sample)
            for e, g in zip(expected, got):
                diff = float(np.max(np.abs(e.astype(np.float64) - g.astype(np.float64)))) if e.size else 0.0
                worst = diff if worst is None else max(worst, diff)
    if quantization is None and worst is not None and not worst <= atol:
        raise ExportMismatchError(
            f"TFLite export of {model.name} differs from Keras by {worst:.3g} (> {atol}); "
            f"not written to {path}"
        )
    if tflm and tflm_section is None:
        if quantization in LITERT_ONLY_QUANTIZATIONS:
            tflm_section = micro.litert_only(LITERT_ONLY_QUANTIZATIONS[quantization], flatbuffer)
        else:
            tflm_section = micro.tflm_report(
                flatbuffer, samples, labels=tflm_labels, reference_outputs=expected_all, arena=tflm_arena
            )
    if tflm == "require":
        tolerance = micro.LSB_TOLERANCE if tflm_lsb_tolerance is None else tflm_lsb_tolerance
        if not tflm_section["loads"]:
            raise ExportMismatchError(
                f"TFLite export of {model.name} does not run on TFLM ({tflm_section['reason']}); "
                f"not written to {path}"
            )
        lsb = tflm_section.get("max_lsb_diff")
        if lsb is not None and lsb > tolerance:
            raise ExportMismatchError(
                f"TFLite export of {model.name}: TFLM differs from LiteRT by {lsb} LSB (> {tolerance}); "
                f"not written to {path}"
            )
    log.info("TFLite %s (%s): max |tflite - keras| = %s", path, quantization or "float", worst)
    for fix in fixes:
        log.info("TFLite %s: %s", path, fix)
    write_bytes_atomic(path, flatbuffer)
    return TFLiteReport(
        path=str(path),
        quantization=quantization,
        size_bytes=len(flatbuffer),
        ops=sorted(set(ops)),
        max_abs_diff=worst,
        samples=len(samples),
        quantization_fixes=fixes,
        tflm=tflm_section,
    )


def _default_samples(model, sample_inputs, representative_dataset, batch_size):
    if sample_inputs is not None:
        return [list(s) if isinstance(s, (list, tuple)) else [s] for s in sample_inputs]
    if representative_dataset is not None:
        out = []
        for s in representative_dataset():
            out.append(list(s) if isinstance(s, (list, tuple)) else [s])
            if len(out) == 8:
                break
        return out
    specs = input_specs(model, batch_size)
    if not all(s.dtype.is_floating for s in specs):
        return []
    rng = np.random.default_rng(0)

    def shape(spec):
        return [d if d is not None else 8 for d in spec.shape]

    return [[rng.standard_normal(shape(s)).astype(s.dtype.as_numpy_dtype) for s in specs] for _ in range(4)]


# ----------------------------------------------------------------------------- LiteRT runner
class TFLiteModel:
    """Runs a ``.tflite`` with ``ai_edge_litert`` (LiteRT).

    Inputs go in positional order of the model's serving signature; dynamic dimensions are
    resized per call; int8 inputs/outputs are (de)quantized so callers see float values; the
    fused LSTM's variable state tensors are reset before every call (on device: call
    ``ResetVariableTensors()`` between independent sequences).
    """

    def __init__(self, model: bytes | str | Path, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        if isinstance(model, (str, Path)):
            self.interpreter = Interpreter(model_path=str(model), num_threads=num_threads)
        else:
            self.interpreter = Interpreter(model_content=model, num_threads=num_threads)
        signatures = self.interpreter._get_full_signature_list()
        self.signature_key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
        signature = signatures[self.signature_key]
        self.input_names = _positional(signature["inputs"])
        self.output_names = _positional(signature["outputs"])
        by_index = {d["index"]: d for d in self.interpreter.get_input_details()}
        by_index.update({d["index"]: d for d in self.interpreter.get_output_details()})
        self.input_details = {n: by_index[signature["inputs"][n]] for n in self.input_names}
        self.output_details = {n: by_index[signature["outputs"][n]] for n in self.output_names}

    def op_names(self) -> list[str]:
        return [op["op_name"] for op in self.interpreter._get_ops_details()]

    def __call__(self, *inputs) -> list[np.ndarray]:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"expected {len(self.input_names)} inputs, got {len(inputs)}")
        feed = {}
        for name, value in zip(self.input_names, inputs):
            detail = self.input_details[name]
            value = np.asarray(value)
            if detail["dtype"] in (np.int8, np.int16, np.uint8) and not np.issubdtype(value.dtype, np.integer):
                scale, zero = detail["quantization"]
                info = np.iinfo(detail["dtype"])
                value = np.clip(np.round(value / scale + zero), info.min, info.max)
            feed[name] = value.astype(detail["dtype"])
        interp = self.interpreter
        for name, value in feed.items():
            index = self.input_details[name]["index"]
            interp.resize_tensor_input(index, value.shape, strict=False)
        interp.allocate_tensors()
        # The fused LSTM keeps its (h, c) in variable tensors that survive an invoke at the same
        # shape: reset them so every call starts from zero state, like the Keras model.
        interp.reset_all_variables()
        for name, value in feed.items():
            interp.set_tensor(self.input_details[name]["index"], value)
        interp.invoke()
        result = {n: interp.get_tensor(self.output_details[n]["index"]) for n in self.output_names}
        outputs = []
        for name in self.output_names:
            value, detail = result[name], self.output_details[name]
            if detail["dtype"] in (np.int8, np.int16, np.uint8):
                scale, zero = detail["quantization"]
                value = (value.astype(np.float32) - zero) * scale
            outputs.append(value)
        return outputs
