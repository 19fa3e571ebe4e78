"""The ``tflm`` section of an export report: does TFLM load the model, and does it agree with LiteRT?

TFLM runs in a subprocess (:mod:`lstm_core.tflm.child`), so a crashing kernel cannot take the
exporter down; LiteRT (:class:`lstm_core.litert.TFLiteModel`) runs here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from lstm_core.litert import TFLiteModel
from lstm_core.tflm.arena import measure_arena
from lstm_core.tflm.child import run_samples
from lstm_core.tflm.flatbuffer import dynamic_inputs, hybrid_ops, model_bytes, model_ops
from lstm_core.tflm.sources import missing_kernels, op_resolver_methods

__all__ = ["LSB_TOLERANCE", "litert_only", "litert_only_reason", "tflm_report"]

LSB_TOLERANCE = 4  # TFLM vs LiteRT on one int8 file: rounding differences, compounded over layers


def litert_only(reason: str, model=None) -> dict:
    """The ``tflm`` report section of a model TFLM cannot run (documented as LiteRT-only):
    ``{"loads": False, "reason", "error"}`` (+ ``"ops"`` when ``model`` is given)."""
    section = {"loads": False, "reason": reason, "error": reason}
    if model is not None:
        section["ops"] = sorted(set(model_ops(model)))
    return section


def litert_only_reason(model) -> str | None:
    """Why TFLM cannot run ``model`` without trying (hybrid ops, an op without a TFLM kernel, a
    dynamic input shape), or ``None``."""
    hybrid = hybrid_ops(model)
    if hybrid:
        return (
            "weights-only int8 ('dynamic') quantization: TFLM has no hybrid kernels "
            f"(float activations x int8 weights in {', '.join(hybrid)})"
        )
    missing = missing_kernels(model_ops(model))
    if missing:
        return f"TFLM has no kernel for {', '.join(missing)}"
    dynamic = dynamic_inputs(model)
    if dynamic:
        return f"dynamic input shape {dynamic[0]}: TFLM has no resize; export a fixed length for MCUs"
    return None


# one piece: long only through its documentation; the body is ~35 lines (comparison in _compare).
def tflm_report(
    model, sample_inputs, *, labels=None, reference_outputs=None, arena: bool = True, litert: bool = True
) -> dict:
    """Load ``model`` in TFLM (in a subprocess), run ``sample_inputs`` and compare with LiteRT.

    Args:
        model: ``.tflite`` bytes or path.
        sample_inputs: list of input sets, each a list with one array per model input (as
            ``lstm_core.export.export_tflite``'s ``sample_inputs``).
        labels: for classifiers, how outputs become labels: ``"argmax"`` (last axis of output
            0), ``"threshold"`` (one sigmoid unit > 0.5) or ``callable(outputs) -> labels``;
            gives ``label_agreement`` (fraction of samples whose TFLM label equals LiteRT's).
        reference_outputs: optional per-sample float outputs (e.g. the Keras model's); adds
            ``max_abs_diff_vs_reference = {"tflm": ..., "litert": ...}``.
        arena: measure the smallest arena (:func:`lstm_core.tflm.measure_arena`).
        litert: compare with LiteRT (``False`` for models LiteRT cannot run, e.g. int16x8;
            the LiteRT figures are then ``None``).

    Returns:
        ``{"loads", "arena_bytes", "arena_recommended_bytes", "ops", "op_resolver",
        "max_abs_diff_vs_litert", "max_lsb_diff", "label_agreement", "samples", "error"}``;
        for a model TFLM cannot run ``{"loads": False, "reason", "error", "ops"}``.

    Example:

    ```python
    report = tflm_report("export/model_int8.tflite", [[features]], labels="argmax")
    assert report["loads"] and report["max_lsb_diff"] <= 2
    ```
    """
    data, source = model_bytes(model)
    reason = litert_only_reason(data)
    if reason:
        return litert_only(reason, data)
    samples = _as_samples(sample_inputs)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "model.tflite").write_bytes(data)
        result = run_samples(work, samples, None)
    if not result.get("ok"):
        return litert_only(result.get("error", "unknown error").replace("<tflite bytes>", source), data)
    litert_runner = TFLiteModel(data) if litert else None
    label_fn = _label_function(labels)
    worst, agree = _compare(samples, result, litert_runner, reference_outputs, label_fn)
    ops = model_ops(data)
    report = {
        "loads": True,
        "arena_bytes": None,
        "arena_recommended_bytes": None,
        "ops": sorted(set(ops)),
        "op_resolver": op_resolver_methods(ops),
        "max_abs_diff_vs_litert": worst["float"],
        "max_lsb_diff": worst["lsb"],
        "label_agreement": (agree / len(samples)) if label_fn is not None and samples and litert_runner else None,
        "samples": len(samples),
        "error": None,
    }
    if reference_outputs is not None:
        report["max_abs_diff_vs_reference"] = {"tflm": worst["tflm"], "litert": worst["litert"]}
    if arena:
        measured = measure_arena(data)
        report["arena_bytes"] = measured["arena_bytes"]
        report["arena_recommended_bytes"] = measured["arena_recommended_bytes"]
    return report


def _compare(samples, result: dict, litert_runner, reference_outputs, label_fn) -> tuple[dict, float]:
    """Worst differences over all samples (``{"float", "lsb"}`` vs LiteRT, ``{"tflm", "litert"}``
    vs the reference; ``None`` where nothing was compared) and the summed label agreement."""
    quantization = result["quantization"]
    worst = {"float": None, "lsb": None, "tflm": None, "litert": None}
    agree = 0.0
    for index, (sample, raw) in enumerate(zip(samples, result["outputs"])):
        tflm_float = _dequantized(raw, quantization)
        expected = [np.asarray(v, np.float64) for v in litert_runner(*sample)] if litert_runner else []
        float_diff, lsb = _versus_litert(raw, tflm_float, expected, quantization)
        worst["float"], worst["lsb"] = _larger(worst["float"], float_diff), _larger(worst["lsb"], lsb)
        if reference_outputs is not None:
            reference = [np.asarray(v, np.float64) for v in _listify(reference_outputs[index])]
            for key, outs in (("tflm", tflm_float), ("litert", expected)):
                if outs:
                    diff = max(float(np.max(np.abs(o.reshape(r.shape) - r))) for o, r in zip(outs, reference))
                    worst[key] = _larger(worst[key], diff)
        if label_fn is not None and expected:
            agree += float(np.mean(np.asarray(label_fn(tflm_float)) == np.asarray(label_fn(expected))))
    return worst, agree


def _dequantized(raw, quantization) -> list[np.ndarray]:
    """TFLM's raw outputs as float64 (integer outputs dequantized with their scale/zero point)."""
    values = []
    for value, quant in zip(raw, quantization):
        if quant is not None and np.issubdtype(value.dtype, np.integer):
            value = (value.astype(np.float64) - quant[1]) * quant[0]
        values.append(np.asarray(value, np.float64))
    return values


def _versus_litert(raw, tflm_float, expected, quantization) -> tuple[float | None, int | None]:
    """Largest |TFLM - LiteRT| over the outputs of one sample, in float and in LSB of the
    integer outputs (LiteRT's float output requantized with the same parameters)."""
    worst_float = worst_lsb = None
    for position, (got, want) in enumerate(zip(tflm_float, expected)):
        if got.size == 0:
            continue
        worst_float = _larger(worst_float, float(np.max(np.abs(got - want.reshape(got.shape)))))
        quant = quantization[position]
        if quant is not None and np.issubdtype(raw[position].dtype, np.integer):
            litert_raw = np.round(want.reshape(got.shape) / quant[0] + quant[1])
            lsb = int(np.max(np.abs(raw[position].astype(np.int64) - litert_raw.astype(np.int64))))
            worst_lsb = _larger(worst_lsb, lsb)
    return worst_float, worst_lsb


def _larger(current, new):
    """``max`` where ``None`` means "nothing measured yet"."""
    if new is None:
        return current
    return new if current is None else max(current, new)


def _label_function(labels) -> Callable | None:
    if labels is None or callable(labels):
        return labels
    if labels == "argmax":
        return lambda outputs: np.argmax(outputs[0].reshape(outputs[0].shape[0], -1), axis=-1)
    if labels == "threshold":  # one sigmoid unit
        return lambda outputs: (outputs[0].reshape(-1) > 0.5).astype(int)
    raise ValueError(f"labels must be None, 'argmax', 'threshold' or a callable, got {labels!r}")


def _as_samples(sample_inputs) -> list[list[np.ndarray]]:
    return [
        [np.asarray(v) for v in (s if isinstance(s, (list, tuple)) else [s])] for s in sample_inputs
    ]


def _listify(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]
