"""TensorFlow Lite Micro (TFLM): run, check and package ``.tflite`` exports for microcontrollers.

TFLM (PyPI ``tflite-micro``) runs the same reference kernels that MCU firmware builds use. Its
limits shape everything here: batch 1 and static shapes (no resize), no hybrid (weights-only
int8) kernels, only the ops its resolver knows, state of the fused LSTM in variable tensors
(reset between sequences), and a fixed tensor arena whose size the firmware must declare.

Public API:

- ``TFLMModel(model, arena_size=None)``: runner with :class:`lstm_core.export.TFLiteModel`'s call
  convention: ``runner(*inputs) -> list[np.ndarray]``, float inputs quantized and outputs
  dequantized for int8/int16 models, state reset before every call (``reset()``). Inputs with a
  batch larger than the model's batch of 1 run row by row. Load or invoke failures raise
  :class:`lstm_core.errors.TFLMError` naming the op TFLM could not run.
  ``run_quantized(*inputs)`` returns the raw int8/int16 outputs; ``input_details`` /
  ``output_details`` (TFLM's dicts, positional order), ``op_names()``.
- ``tflm_report(model, sample_inputs, *, labels=None, reference_outputs=None, arena=True,
  litert=True)``: the ``tflm`` section of ``export_report.json``: ``{"loads", "arena_bytes",
  "arena_recommended_bytes", "ops", "op_resolver", "max_abs_diff_vs_litert", "max_lsb_diff",
  "label_agreement", "samples", "error"}`` (+ ``"max_abs_diff_vs_reference": {"tflm", "litert"}``
  when ``reference_outputs``, e.g. Keras', are given). ``labels``: ``"argmax"``,
  ``"threshold"`` (one sigmoid unit) or ``callable(outputs) -> labels``. TFLM runs in a
  subprocess, so a crashing kernel cannot take the exporter down. A model TFLM cannot run
  (hybrid ops, an op without a TFLM kernel, a dynamic input shape, a load/invoke error) gives
  ``{"loads": False, "reason": ..., "error": ..., "ops": [...]}``: document it as LiteRT-only.
- ``lstm_core.export.export_tflite_report(..., tflm=True | "require", tflm_labels=None,
  tflm_lsb_tolerance=None, tflm_arena=True)`` calls :func:`tflm_report` before writing and puts
  the section in ``report.tflm`` (``report.as_dict()["tflm"]``); ``"require"`` raises
  ``ExportMismatchError`` (nothing written) when the model does not load or differs from LiteRT
  by more than ``LSB_TOLERANCE`` (4) LSB. ``quantization="dynamic"`` gets the LiteRT-only section.
- ``litert_only(reason, model=None)``: that "LiteRT-only" section, for models an exporter knows
  TFLM cannot run.
- ``hybrid_ops(model)``, ``dynamic_inputs(model)``: why a model is LiteRT-only.
- ``measure_arena(model) -> dict``: the smallest tensor arena that loads and runs the model
  (bisection in subprocesses: a too-small arena can crash TFLM), ``{"arena_bytes",
  "arena_recommended_bytes", "largest_failing_bytes", "subprocesses"}``;
  ``arena_works(model, size) -> bool`` tries one size in a subprocess.
- ``model_ops(model)``, ``op_resolver_methods(ops)``, ``op_resolver_code(model)``: the builtin op
  names and the exact ``tflite::MicroMutableOpResolver<N>`` registration the firmware needs.
- ``write_c_array(tflite_path, out_dir, name="g_model", arena_bytes=None)``: ``model_data.cc`` /
  ``model_data.h`` (a 16-byte aligned ``const unsigned char`` array and its length, as in the TFLM
  examples) and ``model_ops.h`` (the resolver registration); returns the written paths.
- ``requantize_int16x8(int8_model) -> bytes``: int8-activation LSTM model to int16 activations /
  int8 weights / int64 biases, as TFLM's ``requantize_flatbuffer.py`` does (the TF converter
  refuses 16x8 for the LSTM op). Used by ``lstm_core.export`` for ``quantization="int16x8"``
  (TFLM-only: LiteRT's LSTM has no int64-bias kernel).
- ``align_lstm_quantization(model) -> (bytes, changes)``: the int8 LSTM fix every int8 export
  gets (hidden state takes the output's scale; cell scale >= 2^-15), so LiteRT and TFLM agree.
- ``python -m lstm_core.tflm MODEL.tflite [--c-array DIR] [--name g_model]``: the same facts
  (ops, resolver lines, arena) for one file.

``model`` arguments are ``.tflite`` bytes or a path. Nothing here imports TensorFlow except the
LiteRT comparison in :func:`tflm_report` (through ``lstm_core.export``).

Example:

```python
from lstm_core.tflm import TFLMModel, tflm_report, write_c_array

runner = TFLMModel("export/model_int8.tflite")
scores = runner(features)[0]              # features: float32 [1, steps, channels]
report = tflm_report("export/model_int8.tflite", [[features]], labels="argmax")
assert report["loads"] and report["max_lsb_diff"] <= 2
write_c_array("export/model_int8.tflite", "export/mcu", name="g_model",
              arena_bytes=report["arena_recommended_bytes"])
```
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from lstm_core.errors import InvalidModelError, TFLMError

ARENA_ALIGNMENT = 16  # TFLM aligns arena allocations to 16 bytes
HOST_ARENA_BYTES = 16 << 20  # arena of the host runner: memory is cheap off the device
MAX_ARENA_BYTES = 256 << 20
LSB_TOLERANCE = 4  # TFLM vs LiteRT on one int8 file: rounding differences, compounded over layers

# TFLite builtin op -> tflite::MicroMutableOpResolver method, checked against tflite-micro's
# tensorflow/lite/micro/micro_mutable_op_resolver.h (main, commit 90b983c2b). Ops missing here
# have no TFLM builtin kernel.
RESOLVER_METHODS = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin", "ASSIGN_VARIABLE": "AddAssignVariable",
    "AVERAGE_POOL_2D": "AddAveragePool2D", "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd", "BROADCAST_ARGS": "AddBroadcastArgs",
    "BROADCAST_TO": "AddBroadcastTo", "CALL_ONCE": "AddCallOnce", "CAST": "AddCast",
    "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice", "REDUCE_ALL": "AddReduceAll",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup", "ELU": "AddElu", "EQUAL": "AddEqual",
    "EXP": "AddExp", "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv", "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected", "GATHER": "AddGather", "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual", "HARD_SWISH": "AddHardSwish",
    "IF": "AddIf", "L2_NORMALIZATION": "AddL2Normalization", "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog", "LOGICAL_AND": "AddLogicalAnd", "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr", "LOGISTIC": "AddLogistic", "LOG_SOFTMAX": "AddLogSoftmax",
    "MAXIMUM": "AddMaximum", "MAX_POOL_2D": "AddMaxPool2D", "MIRROR_PAD": "AddMirrorPad",
    "MEAN": "AddMean", "MINIMUM": "AddMinimum", "MUL": "AddMul", "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack", "PAD": "AddPad", "PADV2": "AddPadV2",
    "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize", "READ_VARIABLE": "AddReadVariable",
    "REDUCE_MAX": "AddReduceMax", "REDUCE_MIN": "AddReduceMin", "RELU": "AddRelu",
    "RELU6": "AddRelu6", "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "REVERSE_V2": "AddReverseV2",
    "ROUND": "AddRound", "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape",
    "SIN": "AddSin", "SLICE": "AddSlice", "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQUEEZE": "AddSqueeze", "SQRT": "AddSqrt",
    "SQUARE": "AddSquare", "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "STRIDED_SLICE": "AddStridedSlice", "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf",
    "TANH": "AddTanh", "TRANSPOSE_CONV": "AddTransposeConv", "TRANSPOSE": "AddTranspose",
    "UNPACK": "AddUnpack", "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "VAR_HANDLE": "AddVarHandle", "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
}
_WEIGHTED_OPS = ("FULLY_CONNECTED", "UNIDIRECTIONAL_SEQUENCE_LSTM", "CONV_2D", "DEPTHWISE_CONV_2D")


# ----------------------------------------------------------------------------- flatbuffer
def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated

    return schema_py_generated


def _model_bytes(model) -> tuple[bytes, str]:
    """``(bytes, name for messages)`` of a ``.tflite`` given as bytes or a path."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), "<tflite bytes>"
    path = Path(model)
    try:
        return path.read_bytes(), str(path)
    except OSError as error:
        raise InvalidModelError(f"{path}: cannot read the .tflite file ({error.strerror})") from None


def _parse(data: bytes, source: str):
    schema = _schema()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise InvalidModelError(f"{source}: not a TFLite flatbuffer (no TFL3 identifier)")
    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))


def _op_name(model_object, opcode_index: int) -> str:
    schema = _schema()
    code = model_object.operatorCodes[opcode_index]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == schema.BuiltinOperator.CUSTOM:
        return (code.customCode or b"CUSTOM").decode()
    return _enum_names(schema.BuiltinOperator)[builtin]


def _enum_names(enum) -> dict[int, str]:
    return {value: name for name, value in vars(enum).items() if not name.startswith("_")}


def model_ops(model) -> list[str]:
    """Builtin op names of every subgraph of ``model``, in execution order."""
    data, source = _model_bytes(model)
    parsed = _parse(data, source)
    return [_op_name(parsed, op.opcodeIndex) for sg in parsed.subgraphs for op in (sg.operators or [])]


def hybrid_ops(model) -> list[str]:
    """Ops that take float activations with int8 weights ("dynamic" quantization); TFLM has
    no such kernels."""
    data, source = _model_bytes(model)
    parsed = _parse(data, source)
    schema = _schema()
    found = []
    for sg in parsed.subgraphs:
        for op in sg.operators or []:
            name = _op_name(parsed, op.opcodeIndex)
            if name not in _WEIGHTED_OPS or len(op.inputs) < 2:
                continue
            types = [sg.tensors[i].type for i in op.inputs if i >= 0]
            if types[0] == schema.TensorType.FLOAT32 and schema.TensorType.INT8 in types[1:]:
                found.append(name)
    return sorted(set(found))


def dynamic_inputs(model) -> list[list[int]]:
    """Shape signatures (``-1`` = dynamic) of the inputs TFLM would see with a frozen
    placeholder shape (it has no resize: such exports are LiteRT-only)."""
    data, source = _model_bytes(model)
    parsed = _parse(data, source)
    subgraph = parsed.subgraphs[0]
    found = []
    for index in subgraph.inputs:
        signature = subgraph.tensors[index].shapeSignature
        if signature is not None and any(int(d) < 0 for d in signature[1:]):
            found.append([int(d) for d in signature])
    return found


def op_resolver_methods(ops: Sequence[str]) -> list[str]:
    """``MicroMutableOpResolver`` method per distinct op (first-use order); TFLMError for an op
    with no TFLM kernel."""
    methods = []
    for op in dict.fromkeys(ops):
        if op not in RESOLVER_METHODS:
            raise TFLMError(f"op {op}: TensorFlow Lite Micro has no kernel for it (LiteRT-only model)")
        methods.append(RESOLVER_METHODS[op])
    return methods


def op_resolver_code(model, variable: str = "resolver") -> str:
    """C++ lines registering exactly the ops of ``model`` (``model`` may also be a list of op
    names)."""
    ops = model if isinstance(model, (list, tuple)) else model_ops(model)
    methods = op_resolver_methods(ops)
    lines = [f"tflite::MicroMutableOpResolver<{len(methods)}> {variable};"]
    lines += [f"{variable}.{method}();" for method in methods]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- int8 LSTM fixes
LSTM_INPUT, LSTM_HIDDEN_STATE, LSTM_CELL_STATE = 0, 18, 19  # UNIDIRECTIONAL_SEQUENCE_LSTM inputs
LSTM_BIASES, LSTM_INPUT_WEIGHTS = (12, 13, 14, 15), (1, 2, 3, 4)
LSTM_HIDDEN_INTERMEDIATE = 4  # "effective_hidden_scale_intermediate"
MIN_CELL_SCALE = 2.0**-15  # LiteRT's integer tanh(cell) needs 15 + log2(cell scale) >= 0


def align_lstm_quantization(model) -> tuple[bytes, list[str]]:
    """Make every int8 ``UNIDIRECTIONAL_SEQUENCE_LSTM`` read the same way in LiteRT and TFLM.

    Two converter outputs make the runtimes disagree (and drift from the float model):

    1. The cell-state scale is a power of two taken from calibration; tiny cell ranges give
       scales below 2^-15. LiteRT computes tanh(cell) with ``PortableApplyTanh(15 + log2
       (scale))``, which only has cases 0..6 and silently returns for a negative count, leaving
       the buffer unset (TFLM's tanh handles any power). The scale is raised to 2^-15: the
       state range becomes +-1 with 3e-5 resolution, ample for int8 outputs.
    2. When the output feeds an op that forces its own scale (``CONCATENATION`` of a
       ``Bidirectional``), the output tensor gets the concat's scale while the hidden state keeps
       its calibrated one. Both runtimes write the hidden state and copy its bytes to the output,
       each reading the state with different parameters, so the error grows with time steps.
       The hidden state (and the hidden-scale intermediate) take the output's scale and zero
       point: every reader then agrees, and the output range covers the state's.

    The file is patched in place (same size); ``model`` is bytes or a path.

    Returns:
        ``(patched bytes, list of one-line descriptions of what changed)``.
    """
    data, _ = _model_bytes(model)
    buffer = bytearray(data)
    schema = _schema()
    root = schema.Model.GetRootAsModel(buffer, 0)
    codes = [
        max(root.OperatorCodes(i).BuiltinCode(), root.OperatorCodes(i).DeprecatedBuiltinCode())
        for i in range(root.OperatorCodesLength())
    ]
    changes = []
    for g in range(root.SubgraphsLength()):
        subgraph = root.Subgraphs(g)
        for k in range(subgraph.OperatorsLength()):
            op = subgraph.Operators(k)
            if codes[op.OpcodeIndex()] != schema.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM:
                continue
            output = subgraph.Tensors(op.Outputs(0))
            if output.Type() != schema.TensorType.INT8 or output.Quantization() is None:
                continue
            cell = subgraph.Tensors(op.Inputs(LSTM_CELL_STATE))
            cell_scale = cell.Quantization().ScaleAsNumpy() if cell.Quantization() else None
            if cell_scale is not None and len(cell_scale) and cell_scale[0] < MIN_CELL_SCALE:
                changes.append(f"LSTM op {k}: cell-state scale {cell_scale[0]:.3g} -> 2^-15")
                cell_scale[0] = MIN_CELL_SCALE
            out_scale = output.Quantization().ScaleAsNumpy()
            out_zero = output.Quantization().ZeroPointAsNumpy()
            targets = [("hidden state", subgraph.Tensors(op.Inputs(LSTM_HIDDEN_STATE)))]
            if op.IntermediatesLength() > LSTM_HIDDEN_INTERMEDIATE:
                targets.append(("hidden intermediate", subgraph.Tensors(op.Intermediates(LSTM_HIDDEN_INTERMEDIATE))))
            for role, tensor in targets:
                quant = tensor.Quantization()
                if quant is None or quant.ScaleLength() != 1 or quant.ZeroPointLength() != 1:
                    continue
                scale, zero = quant.ScaleAsNumpy(), quant.ZeroPointAsNumpy()
                if scale[0] != out_scale[0] or zero[0] != out_zero[0]:
                    changes.append(
                        f"LSTM op {k}: {role} scale/zero point {scale[0]:.3g}/{zero[0]} -> output's "
                        f"{out_scale[0]:.3g}/{out_zero[0]}"
                    )
                    scale[0], zero[0] = out_scale[0], out_zero[0]
    return bytes(buffer), changes


# ----------------------------------------------------------------------------- int16x8
# Ops whose tensors are only activations: retyping int8 -> int16 is all they need, and
# TFLM has int16 kernels for them.
_INT16_SIMPLE_OPS = {
    "RESHAPE", "QUANTIZE", "DEQUANTIZE", "MEAN", "ADD", "SUB", "MUL", "LOGISTIC", "TANH",
    "STRIDED_SLICE", "CONCATENATION", "PAD", "SQUARED_DIFFERENCE", "RSQRT", "LEAKY_RELU",
    "REVERSE_V2", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE",
}


def _quantize_operator(parsed, source_index: int, target_index: int):
    """A ``QUANTIZE`` operator ``source -> target`` (its operator code added when missing)."""
    schema = _schema()
    code = schema.BuiltinOperator.QUANTIZE
    for index, opcode in enumerate(parsed.operatorCodes):
        if max(opcode.builtinCode, opcode.deprecatedBuiltinCode) == code:
            break
    else:
        opcode = schema.OperatorCodeT()
        opcode.builtinCode, opcode.deprecatedBuiltinCode, opcode.version = code, code, 1
        parsed.operatorCodes.append(opcode)
        index = len(parsed.operatorCodes) - 1
    op = schema.OperatorT()
    op.opcodeIndex = index
    op.inputs = np.array([source_index], np.int32)
    op.outputs = np.array([target_index], np.int32)
    op.builtinOptionsType = schema.BuiltinOptions.QuantizeOptions
    op.builtinOptions = schema.QuantizeOptionsT()
    return op


def requantize_int16x8(int8_model) -> bytes:
    """int8-activation model -> int16 activations, int8 weights, int64 biases (16x8).

    The TF 2.21 converter refuses 16x8 for ``UNIDIRECTIONAL_SEQUENCE_LSTM``; TFLM documents
    this path instead (``tensorflow/lite/micro/tools/requantize_flatbuffer.py``, not in the
    pip package; this is the same recipe): every int8 activation tensor becomes int16 with a
    symmetric scale covering its int8 range (``max|range| / 32767``); the biases of
    ``FULLY_CONNECTED`` and the LSTM gates become int64 with scale input x weight; a
    ``SOFTMAX`` output gets 1/32768; ``GATHER`` (embeddings) keeps its int8 table and output and
    a ``QUANTIZE`` op widens the result (TFLM's GATHER has no int16 kernel). Weights stay int8.
    The result is re-aligned with TFLM's
    ``tflite_flatbuffer_align`` (buffers on 16 bytes).

    Raises:
        TFLMError: an op outside the recipe (the message names it), or a model that is not
            int8-quantized.
    """
    data, source = _model_bytes(int8_model)
    parsed = _parse(data, source)
    schema = _schema()
    int8, int16, int32, int64 = (schema.TensorType.INT8, schema.TensorType.INT16, schema.TensorType.INT32, schema.TensorType.INT64)
    buffers = parsed.buffers
    any_int8 = False
    for subgraph in parsed.subgraphs:
        tensors = subgraph.tensors
        done: set[int] = set()

        def has_data(index):
            buf = buffers[tensors[index].buffer]
            return buf is not None and buf.data is not None and len(buf.data) > 0

        def to_int16(index):
            if index < 0 or index in done or tensors[index].type != int8:
                return
            tensor = tensors[index]
            quant = tensor.quantization
            if quant is None or quant.scale is None or len(quant.scale) != 1:
                raise InvalidModelError(f"{source}: tensor {tensor.name.decode()} is not per-tensor int8; cannot requantize to int16")
            scale, zero = float(quant.scale[0]), int(quant.zeroPoint[0])
            scale16 = max(abs(scale * (128 - zero)), abs(scale * (-128 - zero))) / 32767
            if has_data(index):  # a constant read as an activation (e.g. a GATHER table)
                values = (np.frombuffer(bytes(buffers[tensor.buffer].data), np.int8).astype(np.float64) - zero) * scale
                q16 = np.clip(np.round(values / scale16), -32767, 32767).astype("<i2")
                buffers[tensor.buffer].data = np.frombuffer(q16.tobytes(), np.uint8)
            quant.scale, quant.zeroPoint = np.array([scale16], np.float32), np.array([0], np.int64)
            tensor.type = int16
            done.add(index)

        def bias_to_int64(bias_index, input_index, weight_index):
            if bias_index < 0 or bias_index in done:
                return
            bias, weight = tensors[bias_index], tensors[weight_index]
            if bias.type != int32:
                return
            input_scale = float(tensors[input_index].quantization.scale[0])  # its int16 scale by now
            values = np.frombuffer(bytes(buffers[bias.buffer].data), "<i4").astype(np.float64)
            old = np.asarray(bias.quantization.scale, np.float64)
            new = input_scale * np.asarray(weight.quantization.scale, np.float64)
            q64 = np.round(values * old / new).astype("<i8")
            buffers[bias.buffer].data = np.frombuffer(q64.tobytes(), np.uint8)
            bias.quantization.scale = new.astype(np.float32)
            bias.quantization.zeroPoint = np.zeros(len(new), np.int64)
            bias.type = int64
            done.add(bias_index)

        renamed: dict[int, int] = {}  # GATHER outputs replaced by their int16 copies
        operators = []
        for op in subgraph.operators or []:
            name = _op_name(parsed, op.opcodeIndex)
            op.inputs = np.array([renamed.get(int(i), int(i)) for i in op.inputs], np.int32)
            inputs, outputs = [int(i) for i in op.inputs], [int(i) for i in op.outputs]
            operators.append(op)
            if name == "FULLY_CONNECTED":
                to_int16(inputs[0])
                to_int16(outputs[0])
                if len(inputs) > 2:
                    bias_to_int64(inputs[2], inputs[0], inputs[1])
                op.builtinOptions.quantizedBiasType = int64
            elif name == "UNIDIRECTIONAL_SEQUENCE_LSTM":
                for index in (inputs[LSTM_INPUT], inputs[LSTM_HIDDEN_STATE], outputs[0]):
                    to_int16(index)
                for bias_index, weight_index in zip(LSTM_BIASES, LSTM_INPUT_WEIGHTS):
                    bias_to_int64(inputs[bias_index], inputs[LSTM_INPUT], inputs[weight_index])
            elif name == "SOFTMAX":
                to_int16(inputs[0])
                out = tensors[outputs[0]]
                if out.type == int8:
                    out.quantization.scale = np.array([1 / 32768], np.float32)
                    out.quantization.zeroPoint = np.array([0], np.int64)
                    out.type = int16
                    done.add(outputs[0])
            elif name == "GATHER" and tensors[outputs[0]].type == int8:
                # TFLM's GATHER has no int16 kernel: look up in int8, then QUANTIZE to int16.
                import copy

                done.update((inputs[0], outputs[0]))
                wide = copy.deepcopy(tensors[outputs[0]])
                wide.name = tensors[outputs[0]].name + b"/int16"
                tensors.append(wide)
                wide_index = len(tensors) - 1
                to_int16(wide_index)
                renamed[outputs[0]] = wide_index
                operators.append(_quantize_operator(parsed, outputs[0], wide_index))
                any_int8 = True
            elif name in _INT16_SIMPLE_OPS:
                for index in inputs + outputs:
                    if index >= 0 and tensors[index].type == int8:
                        any_int8 = True
                        to_int16(index)
            else:
                raise TFLMError(
                    f"{source}: op {name} is not supported by the int16x8 requantizer (LSTM models: "
                    f"FULLY_CONNECTED, UNIDIRECTIONAL_SEQUENCE_LSTM, SOFTMAX, GATHER, "
                    f"{', '.join(sorted(_INT16_SIMPLE_OPS))})"
                )
            any_int8 = any_int8 or bool(done)
        subgraph.operators = operators
        subgraph.outputs = np.array([renamed.get(int(i), int(i)) for i in subgraph.outputs], np.int32)
        for index, tensor in enumerate(tensors):  # activations no op claimed (graph inputs/outputs)
            if tensor.type == int8 and not has_data(index):
                to_int16(index)
    if not any_int8:
        raise InvalidModelError(f"{source}: not an int8-quantized model; int16x8 starts from the int8 export")
    import flatbuffers

    builder = flatbuffers.Builder(len(data) * 2 + 1024)
    builder.Finish(parsed.Pack(builder), file_identifier=b"TFL3")
    from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper

    with tempfile.TemporaryDirectory() as tmp:
        raw, aligned = Path(tmp) / "packed.tflite", Path(tmp) / "aligned.tflite"
        raw.write_bytes(bytes(builder.Output()))
        tflite_flatbuffer_align_wrapper.align_tflite_model(str(raw), str(aligned))
        return aligned.read_bytes()


# ----------------------------------------------------------------------------- runner
@contextlib.contextmanager
def _captured_native_stderr():
    """Collect what native code writes to file descriptor 2 (TFLM's MicroPrintf) into a list
    of lines, yielded empty and filled when the block ends."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(l for l in sink.read().decode(errors="replace").splitlines() if l.strip())


def _failing_op(log_lines: Sequence[str]) -> str | None:
    text = "\n".join(log_lines)
    for pattern in (
        r"Didn't find op for builtin opcode '([A-Z0-9_]+)'",
        r"Failed to get registration from op code ([A-Z0-9_]+)",
        r"Node ([A-Z0-9_]+) \(number \d+[a-z]*\) failed to (?:invoke|prepare)",
    ):
        match = re.search(pattern, text)
        if match:
            return match.group(1)
    return None


def _tflm_error(source: str, stage: str, log_lines: Sequence[str], ops: Sequence[str]) -> TFLMError:
    """One-line TFLMError naming the op TFLM failed on and its own reason."""
    op = _failing_op(log_lines)
    detail = "; ".join(l.strip() for l in log_lines if l.strip())[-400:] or "no message"
    missing = [o for o in dict.fromkeys(ops) if o not in RESOLVER_METHODS]
    if op is None and missing:
        op = missing[0]
    where = f"op {op}" if op else "the model"
    return TFLMError(f"{source}: TensorFlow Lite Micro cannot {stage} {where} ({detail})")


def _quantization(detail: dict) -> tuple[float, int] | None:
    params = detail.get("quantization_parameters") or {}
    scales, zeros = params.get("scales", []), params.get("zero_points", [])
    if len(scales) == 0:
        return None
    return float(scales[0]), int(zeros[0])


class TFLMModel:
    """Runs a ``.tflite`` in TensorFlow Lite Micro, with :class:`lstm_core.export.TFLiteModel`'s
    call convention.

    Args:
        model: ``.tflite`` bytes or path.
        arena_size: tensor arena in bytes; default ``HOST_ARENA_BYTES`` (16 MiB: the host has
            memory to spare; measure the device figure with :func:`measure_arena`).

    Inputs go in the positional order of the serving signature (``input_0``, ``input_1`` ...).
    TFLM has no resize: each input must have the model's static shape, except that a batch of
    N rows runs as N batch-1 calls. Float inputs of int8/int16 models are quantized with the
    input's scale and zero point; int8/int16 outputs are dequantized. The fused LSTM's
    variable tensors are reset before every row (on device: ``interpreter.Reset()`` between
    independent sequences).

    Example:

    ```python
    runner = TFLMModel("export/model_int8.tflite")
    probabilities, = runner(features)
    raw, = runner.run_quantized(features)   # int8 values as stored on the device
    ```
    """

    def __init__(self, model, arena_size: int | None = None):
        from tflite_micro import runtime

        data, self.source = _model_bytes(model)
        parsed = _parse(data, self.source)
        self.ops = [_op_name(parsed, op.opcodeIndex) for sg in parsed.subgraphs for op in (sg.operators or [])]
        hybrid = hybrid_ops(data)
        if hybrid:
            raise TFLMError(
                f"{self.source}: TensorFlow Lite Micro has no hybrid (weights-only int8, "
                f"'dynamic') kernels for {', '.join(hybrid)}; this model is LiteRT-only"
            )
        self.arena_size = int(arena_size or HOST_ARENA_BYTES)
        self._log = None
        with _captured_native_stderr() as log_lines:
            try:
                self.interpreter = runtime.Interpreter.from_bytes(data, arena_size=self.arena_size)
                failed = False
            except (RuntimeError, ValueError):
                failed = True
        if failed:
            raise _tflm_error(self.source, "load", log_lines, self.ops)
        self._order = _signature_order(parsed)
        count = len(parsed.subgraphs[0].inputs)
        self.input_details = [self.interpreter.get_input_details(i) for i in range(count)]
        self.output_details = [
            self.interpreter.get_output_details(i) for i in range(len(parsed.subgraphs[0].outputs))
        ]
        # positional (signature) order -> subgraph index
        self.input_details = [self.input_details[i] for i in self._order[0]]
        self.output_details = [self.output_details[i] for i in self._order[1]]

    def op_names(self) -> list[str]:
        return list(self.ops)

    def _invoke(self) -> None:
        """``invoke()`` with TFLM's messages (fd 2) sent to a per-runner file, read only when the
        invoke fails (the error then names the op)."""
        if self._log is None:
            self._log = tempfile.TemporaryFile(mode="w+b")
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(self._log.fileno(), 2)
        try:
            self.interpreter.invoke()
            failed = False
        except RuntimeError:
            failed = True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        if failed or self._log.tell() > (1 << 20):
            self._log.seek(0)
            text = self._log.read().decode(errors="replace")
            self._log.seek(0)
            self._log.truncate()
            if failed:
                lines = [line for line in text.splitlines() if line.strip()]
                raise _tflm_error(self.source, "run", lines, self.ops)

    def reset(self) -> None:
        """Zero the variable tensors (LSTM state), as ``interpreter.Reset()`` does on device."""
        self.interpreter.reset()

    def _rows(self, inputs) -> tuple[int, list[np.ndarray]]:
        if len(inputs) != len(self.input_details):
            raise ValueError(f"expected {len(self.input_details)} inputs, got {len(inputs)}")
        arrays = [np.asarray(v) for v in inputs]
        rows = None
        for position, (value, detail) in enumerate(zip(arrays, self.input_details)):
            shape = tuple(int(d) for d in detail["shape"])
            if value.shape == shape:
                count = 1
            elif shape[:1] == (1,) and value.ndim == len(shape) and value.shape[1:] == shape[1:]:
                count = value.shape[0]
            else:
                raise TFLMError(
                    f"{self.source}: input {position} has shape {list(value.shape)}, the TFLM "
                    f"model takes {list(shape)} (no dynamic shapes on TFLM: pad or crop)"
                )
            if rows not in (None, count):
                raise ValueError(f"inputs have different batch sizes ({rows} and {count})")
            rows = count
        return rows or 1, arrays

    def _quantize(self, value: np.ndarray, detail: dict) -> np.ndarray:
        dtype = np.dtype(detail["dtype"])
        quant = _quantization(detail)
        if dtype.kind == "i" and quant is not None and not np.issubdtype(value.dtype, np.integer):
            scale, zero = quant
            info = np.iinfo(dtype)
            value = np.clip(np.round(value / scale + zero), info.min, info.max)
        return np.ascontiguousarray(value.astype(dtype)).reshape(tuple(int(d) for d in detail["shape"]))

    def run_quantized(self, *inputs) -> list[np.ndarray]:
        """Outputs as the device stores them (int8/int16 values, no dequantization)."""
        rows, arrays = self._rows(inputs)
        per_row = []
        for row in range(rows):
            self.reset()
            for position, (value, detail) in enumerate(zip(arrays, self.input_details)):
                piece = value if value.shape[0] == 1 or rows == 1 else value[row : row + 1]
                self.interpreter.set_input(self._quantize(piece, detail), self._order[0][position])
            self._invoke()
            per_row.append([np.array(self.interpreter.get_output(i)) for i in self._order[1]])
        return [np.concatenate(parts, axis=0) if rows > 1 else parts[0] for parts in zip(*per_row)]

    def __call__(self, *inputs) -> list[np.ndarray]:
        outputs = []
        for value, detail in zip(self.run_quantized(*inputs), self.output_details):
            quant = _quantization(detail)
            if np.dtype(detail["dtype"]).kind == "i" and quant is not None:
                scale, zero = quant
                value = (value.astype(np.float32) - zero) * np.float32(scale)
            outputs.append(value)
        return outputs


def _signature_order(parsed) -> tuple[list[int], list[int]]:
    """Subgraph input/output indices in the serving signature's positional order."""
    subgraph = parsed.subgraphs[0]
    inputs, outputs = list(subgraph.inputs), list(subgraph.outputs)
    signatures = parsed.signatureDefs or []
    if not signatures:
        return list(range(len(inputs))), list(range(len(outputs)))
    signature = next((s for s in signatures if s.signatureKey == b"serving_default"), signatures[0])

    def order(maps, tensor_list):
        named = {m.name.decode(): int(m.tensorIndex) for m in maps}
        names = sorted(named, key=lambda n: int(n.rsplit("_", 1)[1]) if n.rsplit("_", 1)[-1].isdigit() else 0)
        return [tensor_list.index(named[n]) for n in names]

    return order(signature.inputs, inputs), order(signature.outputs, outputs)


# ----------------------------------------------------------------------------- subprocess side
def _child_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the TFLM subprocess: ``run`` (outputs for sample inputs) or ``arena``
    (bisection; prints ``try N`` before each attempt so a crash names the size)."""
    job = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    model = Path(job["model"]).read_bytes()
    if job["kind"] == "run":
        result = {"ok": False}
        try:
            runner = TFLMModel(model, arena_size=job.get("arena_size"))
            samples = np.load(job["inputs"], allow_pickle=False)
            count = int(samples["count"])
            width = int(samples["width"])
            outputs = {}
            for index in range(count):
                sample = [samples[f"s{index}_{k}"] for k in range(width)]
                for position, value in enumerate(runner.run_quantized(*sample)):
                    outputs[f"s{index}_{position}"] = value
            np.savez(job["outputs"], **outputs)
            result = {
                "ok": True,
                "outputs": len(runner.output_details),
                "quantization": [_quantization(d) for d in runner.output_details],
                "dtypes": [np.dtype(d["dtype"]).name for d in runner.output_details],
            }
        except (InvalidModelError, TFLMError) as error:
            result["error"] = str(error)
        Path(job["result"]).write_text(json.dumps(result))
        return 0
    sizes = [int(size) for size in job.get("sizes", [])]
    lo, hi = int(job.get("lo", 0)), job.get("hi")  # multiples of ARENA_ALIGNMENT; lo fails, hi works
    for size in sizes:
        print(f"try {size}", flush=True)
        works = _works_isolated(model, size)
        print(f"{'ok' if works else 'fail'} {size}", flush=True)
        if works:
            hi = size if hi is None else min(hi, size)
            if job.get("bisect"):
                break
        else:
            lo = max(lo, size)
    while job.get("bisect") and hi is not None and hi - lo > ARENA_ALIGNMENT:
        size = (lo + hi) // 2 // ARENA_ALIGNMENT * ARENA_ALIGNMENT
        print(f"try {size}", flush=True)
        works = _works_isolated(model, size)
        print(f"{'ok' if works else 'fail'} {size}", flush=True)
        lo, hi = (lo, size) if works else (size, hi)
    print("done", flush=True)
    return 0


def _works_isolated(model: bytes, size: int) -> bool:
    """:func:`_works_here` in a forked process where the OS has fork: a crash there costs
    a few milliseconds instead of this whole subprocess."""
    if not hasattr(os, "fork"):
        return _works_here(model, size)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked child
        code = 1
        try:
            code = 0 if _works_here(model, size) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _works_here(model: bytes, size: int) -> bool:
    """Load + one invoke on zero inputs with an arena of ``size`` bytes (may crash)."""
    from tflite_micro import runtime

    with _captured_native_stderr():
        try:
            interpreter = runtime.Interpreter.from_bytes(model, arena_size=size)
            for index in range(_schema().Model.GetRootAsModel(model, 0).Subgraphs(0).InputsLength()):
                detail = interpreter.get_input_details(index)
                interpreter.set_input(np.zeros(detail["shape"], detail["dtype"]), index)
            interpreter.invoke()
            return True
        except (RuntimeError, ValueError):
            return False


def _child_command(job_file: Path) -> list[str]:
    return [sys.executable, "-c", "import sys; from lstm_core.tflm import _child_main; sys.exit(_child_main())", str(job_file)]


def _child_env() -> dict:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _run_child(job: dict, workdir: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    job_file = workdir / "job.json"
    job_file.write_text(json.dumps(job))
    return subprocess.run(
        _child_command(job_file), capture_output=True, text=True, timeout=timeout, env=_child_env()
    )


def _describe_exit(code: int) -> str:
    if code < 0:
        import signal

        try:
            return f"crashed with {signal.Signals(-code).name}"
        except ValueError:
            return f"crashed with signal {-code}"
    return f"exited with status {code}"


# ----------------------------------------------------------------------------- arena
def _probe(work: Path, job: dict) -> tuple[dict[int, bool], subprocess.CompletedProcess]:
    """Run an arena job; ``{size: works}`` for every size it finished, plus the size it
    crashed on (as failing)."""
    proc = _run_child(dict(job, model=str(work / "model.tflite")), work)
    results: dict[int, bool] = {}
    last_try = None
    for line in proc.stdout.split("\n"):
        parts = line.split()
        if len(parts) == 2 and parts[0] == "try":
            last_try = int(parts[1])
        elif len(parts) == 2 and parts[0] in ("ok", "fail"):
            results[int(parts[1])] = parts[0] == "ok"
    if last_try is not None and last_try not in results:
        results[last_try] = False  # the subprocess died trying it
    elif "done" not in proc.stdout.split("\n") and proc.returncode != 0:
        raise TFLMError(f"TFLM arena probe {_describe_exit(proc.returncode)}: {proc.stderr.strip()[-300:]}")
    return results, proc


def arena_works(model, arena_size: int) -> bool:
    """Whether ``model`` loads and runs one invoke with an arena of ``arena_size`` bytes
    (in a subprocess; a crash counts as "no")."""
    data, _ = _model_bytes(model)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "model.tflite").write_bytes(data)
        results, _ = _probe(work, {"kind": "arena", "sizes": [int(arena_size)]})
        return results.get(int(arena_size), False)


def measure_arena(model, *, max_bytes: int = MAX_ARENA_BYTES) -> dict:
    """Smallest tensor arena (bytes, 16-byte resolution) that loads ``model`` and runs it.

    Bisection in one subprocess (TensorFlow is not loaded there), each attempt in a forked
    child of it: a too-small arena raises in some places and crashes TFLM in others (e.g. the
    LSTM's prepare when a scratch buffer did not fit); a crash counts as failing. Without
    ``os.fork`` a crash ends the subprocess and a fresh one continues the bisection. The
    recommended figure adds 25% (optimized kernels such as CMSIS-NN ask for other scratch
    buffers) rounded up to 1 KiB.

    Returns:
        ``{"arena_bytes", "arena_recommended_bytes", "largest_failing_bytes", "subprocesses"}``.
    """
    data, source = _model_bytes(model)
    hybrid = hybrid_ops(data)
    if hybrid:
        raise TFLMError(f"{source}: TensorFlow Lite Micro has no hybrid kernels for {', '.join(hybrid)}")
    step = ARENA_ALIGNMENT
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "model.tflite").write_bytes(data)
        first = -(-max(64 << 10, 4 * len(data)) // step) * step
        sizes = [first]
        while sizes[-1] < max_bytes:
            sizes.append(min(sizes[-1] * 4, max_bytes))
        lo, hi, subprocesses = 0, None, 0
        while hi is None or hi - lo > step:
            pending = [s for s in sizes if s > lo] if hi is None else []
            if hi is None and not pending:
                raise _load_failure(work, source)
            job = {"kind": "arena", "sizes": pending, "lo": lo, "hi": hi, "bisect": True}
            results, _ = _probe(work, job)
            subprocesses += 1
            for size, ok in results.items():
                if ok:
                    hi = size if hi is None else min(hi, size)
                else:
                    lo = max(lo, size)
            if hi is None and not any(s > lo for s in sizes):
                raise _load_failure(work, source)
    recommended = -(-int(hi * 1.25) // 1024) * 1024
    return {
        "arena_bytes": hi,
        "arena_recommended_bytes": recommended,
        "largest_failing_bytes": lo,
        "subprocesses": subprocesses,
    }


def _load_failure(work: Path, source: str) -> TFLMError:
    """The TFLMError a load in a subprocess gives (it names the op), or a generic one."""
    result = _run_in_subprocess(work, [], MAX_ARENA_BYTES)
    message = result.get("error") or f"cannot run the model with a {MAX_ARENA_BYTES}-byte arena"
    return TFLMError(message.replace("<tflite bytes>", source) if message.startswith("<") else f"{source}: {message}")


def _relabel(message: str, source: str) -> str:
    return message.replace("<tflite bytes>", source)


def _run_in_subprocess(work: Path, samples: Sequence[Sequence[np.ndarray]], arena_size: int | None) -> dict:
    """Raw TFLM outputs for ``samples`` from a subprocess: ``{"ok", "outputs": [[array...]...],
    "quantization", "dtypes"}`` or ``{"ok": False, "error"}`` (a crash is an error too)."""
    arrays = {"count": np.asarray(len(samples)), "width": np.asarray(len(samples[0]) if samples else 0)}
    for index, sample in enumerate(samples):
        for position, value in enumerate(sample):
            arrays[f"s{index}_{position}"] = np.asarray(value)
    np.savez(work / "inputs.npz", **arrays)
    job = {
        "kind": "run",
        "model": str(work / "model.tflite"),
        "inputs": str(work / "inputs.npz"),
        "outputs": str(work / "outputs.npz"),
        "result": str(work / "result.json"),
        "arena_size": arena_size,
    }
    proc = _run_child(job, work)
    result_file = work / "result.json"
    if proc.returncode != 0 or not result_file.exists():
        tail = "; ".join(l for l in proc.stderr.strip().splitlines()[-3:])
        return {"ok": False, "error": f"TensorFlow Lite Micro {_describe_exit(proc.returncode)} ({tail[-300:]})"}
    result = json.loads(result_file.read_text())
    if result.get("ok"):
        with np.load(work / "outputs.npz", allow_pickle=False) as saved:
            result["outputs"] = [
                [saved[f"s{index}_{position}"] for position in range(result["outputs"])]
                for index in range(len(samples))
            ]
    return result


def litert_only(reason: str, model=None) -> dict:
    """The ``tflm`` report section of a model TFLM cannot run (documented as LiteRT-only)."""
    section = {"loads": False, "reason": reason, "error": reason}
    if model is not None:
        section["ops"] = sorted(set(model_ops(model)))
    return section


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


def tflm_report(
    model,
    sample_inputs,
    *,
    labels=None,
    reference_outputs=None,
    arena: bool = True,
    litert: bool = True,
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
        arena: measure the smallest arena (:func:`measure_arena`).
        litert: compare with LiteRT (``False`` for models LiteRT cannot run, e.g. int16x8;
            the LiteRT figures are then ``None``).

    Returns:
        ``{"loads", "arena_bytes", "arena_recommended_bytes", "ops", "op_resolver",
        "max_abs_diff_vs_litert", "max_lsb_diff", "label_agreement", "samples", "error"}``;
        for a model TFLM cannot run ``{"loads": False, "reason", "error", "ops"}``.
    """
    data, source = _model_bytes(model)
    ops = model_ops(data)
    hybrid = hybrid_ops(data)
    if hybrid:
        return litert_only(
            "weights-only int8 ('dynamic') quantization: TFLM has no hybrid kernels "
            f"(float activations x int8 weights in {', '.join(hybrid)})",
            data,
        )
    missing = [op for op in dict.fromkeys(ops) if op not in RESOLVER_METHODS]
    if missing:
        return litert_only(f"TFLM has no kernel for {', '.join(missing)}", data)
    dynamic = dynamic_inputs(data)
    if dynamic:
        return litert_only(
            f"dynamic input shape {dynamic[0]}: TFLM has no resize; export a fixed length for MCUs", data
        )
    samples = _as_samples(sample_inputs)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "model.tflite").write_bytes(data)
        result = _run_in_subprocess(work, samples, None)
    if not result.get("ok"):
        return litert_only(_relabel(result.get("error", "unknown error"), source), data)
    litert_runner = None
    if litert:
        from lstm_core.export import TFLiteModel

        litert_runner = TFLiteModel(data)
    quantization = result["quantization"]
    worst_float = worst_lsb = None
    worst_reference = {"tflm": None, "litert": None}
    agree = 0
    label_fn = _label_function(labels)
    for index, (sample, raw) in enumerate(zip(samples, result["outputs"])):
        tflm_float = []
        for value, quant in zip(raw, quantization):
            if quant is not None and np.issubdtype(value.dtype, np.integer):
                value = (value.astype(np.float64) - quant[1]) * quant[0]
            tflm_float.append(np.asarray(value, np.float64))
        expected = [np.asarray(v, np.float64) for v in litert_runner(*sample)] if litert_runner else []
        for position, (got, want) in enumerate(zip(tflm_float, expected)):
            if got.size == 0:
                continue
            diff = float(np.max(np.abs(got - want.reshape(got.shape))))
            worst_float = diff if worst_float is None else max(worst_float, diff)
            quant = quantization[position]
            if quant is not None and np.issubdtype(raw[position].dtype, np.integer):
                litert_raw = np.round(want.reshape(got.shape) / quant[0] + quant[1])
                lsb = int(np.max(np.abs(raw[position].astype(np.int64) - litert_raw.astype(np.int64))))
                worst_lsb = lsb if worst_lsb is None else max(worst_lsb, lsb)
        if reference_outputs is not None:
            reference = [np.asarray(v, np.float64) for v in _listify(reference_outputs[index])]
            for key, outs in (("tflm", tflm_float), ("litert", expected)):
                if not outs:
                    continue
                diff = max(float(np.max(np.abs(o.reshape(r.shape) - r))) for o, r in zip(outs, reference))
                worst_reference[key] = diff if worst_reference[key] is None else max(worst_reference[key], diff)
        if label_fn is not None and expected:
            agree += float(np.mean(np.asarray(label_fn(tflm_float)) == np.asarray(label_fn(expected))))
    report = {
        "loads": True,
        "arena_bytes": None,
        "arena_recommended_bytes": None,
        "ops": sorted(set(ops)),
        "op_resolver": op_resolver_methods(ops),
        "max_abs_diff_vs_litert": worst_float,
        "max_lsb_diff": worst_lsb,
        "label_agreement": (agree / len(samples)) if label_fn is not None and samples and litert_runner else None,
        "samples": len(samples),
        "error": None,
    }
    if reference_outputs is not None:
        report["max_abs_diff_vs_reference"] = worst_reference
    if arena:
        measured = measure_arena(data)
        report["arena_bytes"] = measured["arena_bytes"]
        report["arena_recommended_bytes"] = measured["arena_recommended_bytes"]
    return report


def _listify(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


# ----------------------------------------------------------------------------- firmware sources
_C_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def write_c_array(tflite_path, out_dir, name: str = "g_model", *, arena_bytes: int | None = None) -> dict:
    """Write the ``.tflite`` as C++ sources for firmware (as the TFLM examples ship models).

    Files: ``model_data.h`` (declarations), ``model_data.cc`` (``alignas(16) const unsigned
    char <name>[]`` and ``const unsigned int <name>_len``; TFLM reads the flatbuffer in place, and
    its tensors need 16-byte alignment), ``model_ops.h`` (``<name>_register_ops(resolver)`` with
    exactly the ``Add...()`` calls the model needs and ``<name>_op_count`` for the resolver's
    template argument). ``arena_bytes`` (e.g. :func:`measure_arena`'s recommended figure) adds
    ``<name>_arena_bytes``.

    Returns:
        ``{"model_data.cc": path, "model_data.h": path, "model_ops.h": path, "op_resolver": [...]}``.
    """
    from lstm_core.atomic import atomic_path

    if not _C_NAME.match(name):
        raise InvalidModelError(f"C array name {name!r}: expected a C identifier")
    data, source = _model_bytes(tflite_path)
    ops = model_ops(data)
    methods = op_resolver_methods(ops)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    guard = f"{name.upper()}_MODEL_DATA_H_"
    arena_line = (
        f"// Tensor arena measured with lstm_core.tflm.measure_arena (+ margin).\n"
        f"constexpr unsigned int {name}_arena_bytes = {int(arena_bytes)};\n"
        if arena_bytes
        else ""
    )
    header = (
        f"// Generated by lstm_core.tflm.write_c_array from {Path(source).name}.\n"
        f"#ifndef {guard}\n#define {guard}\n\n"
        f"extern const unsigned char {name}[];\n"
        f"extern const unsigned int {name}_len;\n"
        f"{arena_line}\n"
        f"// Ops: {', '.join(dict.fromkeys(ops))} (see model_ops.h).\n\n"
        f"#endif  // {guard}\n"
    )
    rows = [
        "  " + ", ".join(f"0x{byte:02x}" for byte in data[start : start + 12]) + ","
        for start in range(0, len(data), 12)
    ]
    source_text = (
        f"// Generated by lstm_core.tflm.write_c_array from {Path(source).name} ({len(data)} bytes).\n"
        f'#include "model_data.h"\n\n'
        f"alignas(16) const unsigned char {name}[] = {{\n" + "\n".join(rows) + "\n};\n"
        f"const unsigned int {name}_len = {len(data)};\n"
    )
    ops_guard = f"{name.upper()}_MODEL_OPS_H_"
    calls = "\n".join(f"  if (resolver.{m}() != kTfLiteOk) return kTfLiteError;" for m in methods)
    ops_text = (
        f"// Generated by lstm_core.tflm.write_c_array: the ops {Path(source).name} needs.\n"
        f"#ifndef {ops_guard}\n#define {ops_guard}\n\n"
        f'#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n\n'
        f"constexpr unsigned int {name}_op_count = {len(methods)};\n\n"
        f"// tflite::MicroMutableOpResolver<{name}_op_count> resolver;\n"
        f"// {name}_register_ops(resolver);\n"
        f"inline TfLiteStatus {name}_register_ops(\n"
        f"    tflite::MicroMutableOpResolver<{name}_op_count>& resolver) {{\n"
        f"{calls}\n  return kTfLiteOk;\n}}\n\n#endif  // {ops_guard}\n"
    )
    written = {}
    for file_name, text in (("model_data.h", header), ("model_data.cc", source_text), ("model_ops.h", ops_text)):
        with atomic_path(out / file_name) as tmp:
            Path(tmp).write_text(text)
        written[file_name] = str(out / file_name)
    written["op_resolver"] = methods
    return written


# ----------------------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lstm_core.tflm MODEL.tflite [--c-array DIR] [--name g_model]``: ops, the
    op resolver, the measured arena (and optionally the firmware sources) of one file."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m lstm_core.tflm",
        description="TFLite Micro facts of a .tflite: ops, op resolver, smallest tensor arena.",
        allow_abbrev=False,
    )
    parser.add_argument("model", help=".tflite file")
    parser.add_argument("--c-array", metavar="DIR", help="also write model_data.cc/.h and model_ops.h there")
    parser.add_argument("--name", default="g_model", help="C array name (default g_model)")
    args = parser.parse_args(argv)
    try:
        data, source = _model_bytes(args.model)
        ops = model_ops(data)
        facts = {"model": source, "size_bytes": len(data), "ops": sorted(set(ops))}
        hybrid = hybrid_ops(data)
        missing = [op for op in dict.fromkeys(ops) if op not in RESOLVER_METHODS]
        if hybrid or missing:
            facts["tflm"] = "LiteRT-only: " + (
                f"hybrid (weights-only int8) {', '.join(hybrid)}" if hybrid else f"no TFLM kernel for {', '.join(missing)}"
            )
        else:
            facts["op_resolver"] = op_resolver_code(ops).splitlines()
            facts.update(measure_arena(data))
            if args.c_array:
                written = write_c_array(args.model, args.c_array, args.name, arena_bytes=facts["arena_recommended_bytes"])
                facts["c_sources"] = [written[k] for k in ("model_data.cc", "model_data.h", "model_ops.h")]
    except (InvalidModelError, TFLMError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(facts, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
