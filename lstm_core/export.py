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
layers are traced as a plain ``GATHER`` (:mod:`lstm_core.embedding`). The LiteRT runner,
:class:`lstm_core.litert.TFLiteModel`, is importable from here too.
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

from lstm_core._capture import captured_output
from lstm_core._walk import all_layers
from lstm_core.atomic import atomic_path, write_bytes_atomic
from lstm_core.embedding import plain_gather_embeddings
from lstm_core.errors import ExportMismatchError
from lstm_core.layer import LSTM
from lstm_core.litert import TFLiteModel
from lstm_core.tflm.flatbuffer import model_ops
from lstm_core.tflm.quantization import align_lstm_quantization
from lstm_core.tflm.report import LSB_TOLERANCE, litert_only, tflm_report
from lstm_core.tflm.requantize import requantize_int16x8

__all__ = [
    "QUANTIZATIONS",
    "LITERT_ONLY_QUANTIZATIONS",
    "FUSED_LSTM_OP",
    "FORBIDDEN_OPS",
    "FLOAT_ATOL",
    "ExportMismatchError",
    "TFLiteModel",
    "TFLiteReport",
    "lstm_mode",
    "contains_lstm",
    "input_specs",
    "output_names",
    "serving_function",
    "export_saved_model",
    "convert_to_tflite",
    "export_tflite",
    "export_tflite_report",
]

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
    layers = [l for l in all_layers(model) if isinstance(l, LSTM)]
    previous = [l.mode for l in layers]
    for layer in layers:
        layer.mode = mode
    try:
        yield layers
    finally:
        for layer, old in zip(layers, previous):
            layer.mode = old


def contains_lstm(model) -> bool:
    """Whether ``model`` has an ``lstm_core.LSTM`` anywhere inside it."""
    return any(isinstance(l, LSTM) for l in all_layers(model))


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
    """Convert ``model`` to TFLite bytes with every ``lstm_core.LSTM`` fused, without checking
    or writing anything (:func:`export_tflite` does both).

    Args:
        model: a built Keras model.
        quantization: as in :func:`export_tflite_report`.
        representative_dataset: calibration samples, for ``"int8"`` / ``"int16x8"``.
        batch_size: the static batch size of the export.

    Returns:
        The ``.tflite`` flatbuffer (int8 exports already carry
        :func:`lstm_core.tflm.align_lstm_quantization`'s fixes).
    """
    return _convert(model, quantization, representative_dataset, batch_size)[0]


def _convert(model, quantization, representative_dataset, batch_size, scratch_dir=None) -> tuple[bytes, list[str]]:
    """``(flatbuffer, quantization fixes applied)``.

    The intermediate SavedModel goes to a temporary folder in ``scratch_dir`` (the export's own
    ``export.partial/`` when called from an exporter, so a killed export leaves nothing in
    ``$TMPDIR``); the converter's C++ chatter goes to the ``lstm_core`` logger (DEBUG), or to stderr on failure.
    """
    quantization = _checked_quantization(quantization, representative_dataset)
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
        _configure_quantization(converter, quantization, representative_dataset, specs)
        with captured_output(("stdout", "stderr")):
            flatbuffer = converter.convert()
    fixes: list[str] = []
    if quantization in ("int8", "int16x8"):
        flatbuffer, fixes = align_lstm_quantization(flatbuffer)
    if quantization == "int16x8":
        flatbuffer = requantize_int16x8(flatbuffer)
        fixes.append("int8 activations requantized to int16 (int64 biases)")
    return flatbuffer, fixes


def _checked_quantization(quantization, representative_dataset) -> str | None:
    """``quantization`` with ``"float"`` as ``None``; ValueError for an unknown one or a full
    integer one without calibration data."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    if quantization == "float":
        return None
    if quantization in ("int8", "int16x8") and representative_dataset is None:
        raise ValueError(f"quantization={quantization!r} needs a representative_dataset")
    return quantization


def _configure_quantization(converter, quantization, representative_dataset, specs) -> None:
    """Converter options for ``quantization``: weights-only for ``"dynamic"``; full integer
    (int8 builtins, int8 float inputs/outputs, calibration) for ``"int8"``/``"int16x8"`` (the
    int16 activations come afterwards, from :func:`lstm_core.tflm.requantize_int16x8`)."""
    if quantization is None:
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization not in ("int8", "int16x8"):
        return
    converter.representative_dataset = _calibration(representative_dataset, specs)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if any(s.dtype.is_floating for s in specs):
        converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8


def _calibration(representative_dataset, specs) -> Callable[[], Iterable[dict]]:
    """The converter's representative dataset: each sample as ``{input name: array}``."""
    names = [s.name for s in specs]

    def calibration():
        for sample in representative_dataset():
            if isinstance(sample, dict):
                yield sample
                continue
            if not isinstance(sample, (list, tuple)):
                sample = [sample]
            yield {n: np.asarray(v, dtype=s.dtype.as_numpy_dtype) for n, v, s in zip(names, sample, specs)}

    return calibration


def export_tflite(model: keras.Model, path, **options) -> Path:
    """Convert ``model`` to a ``.tflite`` with every ``lstm_core.LSTM`` as the fused
    ``UNIDIRECTIONAL_SEQUENCE_LSTM`` op, check it under LiteRT (and TFLM if asked), then write it.

    Nothing is written when a check fails; the file itself is written atomically.

    Args:
        model: a built Keras model (``lstm_core.LSTM`` layers, Keras ``Embedding`` ... ).
        path: the ``.tflite`` file to write.
        **options: the keyword arguments of :func:`export_tflite_report` (``quantization``,
            ``representative_dataset``, ``batch_size``, ``sample_inputs``, ``atol``,
            ``require_fused``, ``tflm``, ``tflm_labels``, ``tflm_lsb_tolerance``,
            ``tflm_arena``). Float exports must agree with Keras within ``atol``; quantized
            exports log their error.

    Returns:
        ``Path(path)``.

    Raises:
        ExportMismatchError: forbidden ops (``WHILE``, Flex, custom), no fused LSTM op, a float
            export further than ``atol`` from Keras, or a failed TFLM requirement.
        ValueError: an unknown ``quantization``, or int8/int16x8 without
            ``representative_dataset``.

    Example:

    ```python
    inputs = keras.Input((20, 4))
    model = keras.Model(inputs, keras.layers.Dense(1)(lstm_core.LSTM(16)(inputs)))
    export_tflite(model, "model.tflite")
    export_tflite(model, "model_int8.tflite", quantization="int8",
                  representative_dataset=lambda: (np.random.rand(1, 20, 4) for _ in range(50)))
    ```
    """
    export_tflite_report(model, path, **options)
    return Path(path)


# one piece: long only through its signature and Args docs; the body is a few checks, each a helper.
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
        model: a built Keras model.
        path: the ``.tflite`` file to write (its folder also holds the converter's scratch files).
        quantization: ``None``/``"float"``, ``"dynamic"`` (weights-only int8, LiteRT-only),
            ``"int8"`` (full integer) or ``"int16x8"`` (int16 activations, TFLM-only).
        representative_dataset: ``callable() -> iterable`` of input samples (an array, a list of
            arrays or a dict per sample); required for ``"int8"`` and ``"int16x8"``.
        batch_size: the static batch size of the export (TFLM needs 1).
        sample_inputs: input sets to compare with Keras (each an array or a list of arrays);
            default: 8 calibration samples, or 4 random ones for float inputs.
        atol: largest allowed |LiteRT - Keras| of a float export.
        require_fused: raise when a model with an ``lstm_core.LSTM`` exports without the fused op.
        tflm: ``True``: also load the file in TensorFlow Lite Micro, run the samples, compare
            with LiteRT and measure the arena; the result is ``report.tflm`` (see
            :func:`lstm_core.tflm.tflm_report`; ``{"loads": False, "reason": ...}`` for a
            LiteRT-only model). ``"require"``: the same, and a model that does not load, or whose
            TFLM output differs from LiteRT's by more than ``tflm_lsb_tolerance`` LSB (default
            ``lstm_core.tflm.LSB_TOLERANCE``), raises ExportMismatchError; nothing is written.
            ``quantization="int16x8"`` always runs in TFLM (LiteRT cannot run it).
        tflm_labels: ``"argmax"``, ``"threshold"`` or a callable, for ``label_agreement``.
        tflm_lsb_tolerance: see ``tflm``.
        tflm_arena: measure the tensor arena (about a second; ``False`` in quick tests).

    Returns:
        A :class:`TFLiteReport` (``report.as_dict()`` is JSON-ready): path, quantization,
        size, ops, ``max_abs_diff`` vs Keras, samples, quantization fixes, ``tflm`` section.

    Raises:
        ExportMismatchError: see :func:`export_tflite`; nothing is written.

    Example:

    ```python
    report = export_tflite_report(model, "export/model_int8.tflite", quantization="int8",
                                  representative_dataset=calibration, tflm="require",
                                  tflm_labels="argmax")
    print(report.max_abs_diff, report.tflm["arena_recommended_bytes"])
    ```
    """
    flatbuffer, fixes = _convert(model, quantization, representative_dataset, batch_size,
                                 scratch_dir=Path(path).parent)
    if quantization == "float":
        quantization = None
    ops = model_ops(flatbuffer)
    _check_ops(model, ops, require_fused)
    samples = _default_samples(model, sample_inputs, representative_dataset, batch_size)
    expected_all = _keras_outputs(model, samples)
    if quantization == "int16x8":
        tflm_section = _int16x8_on_tflm(model, path, flatbuffer, samples, expected_all, tflm_labels,
                                        arena=bool(tflm) and tflm_arena)
        worst = tflm_section["max_abs_diff_vs_reference"]["tflm"]
    else:
        tflm_section, worst = None, _max_diff_vs_litert(flatbuffer, samples, expected_all)
    if quantization is None and worst is not None and not worst <= atol:
        raise ExportMismatchError(
            f"TFLite export of {model.name} differs from Keras by {worst:.3g} (> {atol}); "
            f"not written to {path}"
        )
    if tflm and tflm_section is None:
        if quantization in LITERT_ONLY_QUANTIZATIONS:
            tflm_section = litert_only(LITERT_ONLY_QUANTIZATIONS[quantization], flatbuffer)
        else:
            tflm_section = tflm_report(
                flatbuffer, samples, labels=tflm_labels, reference_outputs=expected_all, arena=tflm_arena
            )
    if tflm == "require":
        _require_tflm(model, path, tflm_section, tflm_lsb_tolerance)
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


def _check_ops(model, ops: Sequence[str], require_fused: bool) -> None:
    """ExportMismatchError for ops the export must not have, or a missing fused LSTM op."""
    bad = sorted({op for op in ops if op in FORBIDDEN_OPS or op.startswith("Flex")})
    if bad:
        raise ExportMismatchError(f"TFLite export of {model.name} contains unsupported ops {bad}")
    if require_fused and contains_lstm(model) and FUSED_LSTM_OP not in ops:
        raise ExportMismatchError(
            f"TFLite export of {model.name} has no {FUSED_LSTM_OP} op; ops are {sorted(set(ops))}"
        )


def _keras_outputs(model, samples) -> list[list[np.ndarray]]:
    """The Keras model's outputs for each sample, as lists of arrays."""
    outputs = []
    for sample in samples:
        expected = model(sample if len(sample) > 1 else sample[0], training=False)
        outputs.append([np.asarray(e) for e in (expected if isinstance(expected, (list, tuple)) else [expected])])
    return outputs


def _max_diff_vs_litert(flatbuffer: bytes, samples, expected_all) -> float | None:
    """Largest |LiteRT - Keras| over every sample and output (``None`` without samples)."""
    runner = TFLiteModel(flatbuffer)
    worst = None
    for sample, expected in zip(samples, expected_all):
        got = runner(*sample)
        for e, g in zip(expected, got):
            diff = float(np.max(np.abs(e.astype(np.float64) - g.astype(np.float64)))) if e.size else 0.0
            worst = diff if worst is None else max(worst, diff)
    return worst


def _int16x8_on_tflm(model, path, flatbuffer, samples, expected_all, labels, *, arena: bool) -> dict:
    """The TFLM section of an int16x8 export, which is also its check against Keras: LiteRT's
    LSTM has no int16x8 kernel (int64 biases). ExportMismatchError when TFLM cannot run it."""
    section = tflm_report(
        flatbuffer, samples, labels=labels, reference_outputs=expected_all, litert=False, arena=arena,
    )
    if not section["loads"]:
        raise ExportMismatchError(
            f"int16x8 export of {model.name} does not run on TFLM ({section['reason']}); "
            f"not written to {path}"
        )
    section["litert"] = "LiteRT cannot run int16x8 LSTM models (int64 biases); TFLM-only"
    return section


def _require_tflm(model, path, section: dict, lsb_tolerance: int | None) -> None:
    """``tflm="require"``: ExportMismatchError unless TFLM loads the model and agrees with
    LiteRT within ``lsb_tolerance`` LSB."""
    tolerance = LSB_TOLERANCE if lsb_tolerance is None else lsb_tolerance
    if not section["loads"]:
        raise ExportMismatchError(
            f"TFLite export of {model.name} does not run on TFLM ({section['reason']}); "
            f"not written to {path}"
        )
    lsb = section.get("max_lsb_diff")
    if lsb is not None and lsb > tolerance:
        raise ExportMismatchError(
            f"TFLite export of {model.name}: TFLM differs from LiteRT by {lsb} LSB (> {tolerance}); "
            f"not written to {path}"
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
