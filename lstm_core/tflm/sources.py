"""Firmware sources: the op resolver a model needs and the model as a C array (TFLM examples' layout).

``RESOLVER_METHODS`` maps each TFLite builtin op to its ``tflite::MicroMutableOpResolver``
method; an op missing from it has no TFLM kernel (the model is LiteRT-only).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from lstm_core.atomic import atomic_path
from lstm_core.errors import InvalidModelError, TFLMError
from lstm_core.tflm.flatbuffer import model_bytes, model_ops

__all__ = ["RESOLVER_METHODS", "missing_kernels", "op_resolver_methods", "op_resolver_code", "write_c_array"]

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
_C_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def missing_kernels(ops: Sequence[str]) -> list[str]:
    """The distinct ops of ``ops`` (first-use order) that TFLM has no kernel for."""
    return [op for op in dict.fromkeys(ops) if op not in RESOLVER_METHODS]


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


def write_c_array(tflite_path, out_dir, name: str = "g_model", *, arena_bytes: int | None = None) -> dict:
    """Write a ``.tflite`` as C++ sources for firmware, as the TFLM examples ship models.

    TFLM reads the flatbuffer in place, and its tensors need 16-byte alignment, so the array is
    ``alignas(16) const unsigned char``. Each file is written atomically.

    Args:
        tflite_path: ``.tflite`` path (or bytes).
        out_dir: folder for the three files (created when missing).
        name: C identifier of the array; also prefixes ``<name>_len``, ``<name>_op_count``,
            ``<name>_register_ops`` and ``<name>_arena_bytes``.
        arena_bytes: tensor arena size to declare as ``<name>_arena_bytes`` (e.g.
            :func:`lstm_core.tflm.measure_arena`'s ``arena_recommended_bytes``); ``None`` leaves
            it out.

    Returns:
        ``{"model_data.cc": path, "model_data.h": path, "model_ops.h": path, "op_resolver":
        [method, ...]}``: ``model_data.h`` declares ``<name>[]`` and ``<name>_len``,
        ``model_data.cc`` defines them, ``model_ops.h`` has ``<name>_register_ops(resolver)``
        with exactly the ``Add...()`` calls the model needs and ``<name>_op_count`` for the
        resolver's template argument.

    Raises:
        InvalidModelError: ``name`` is not a C identifier, or the file is not a ``.tflite``.
        TFLMError: the model has an op TFLM has no kernel for.

    Example:

    ```python
    from lstm_core.tflm import measure_arena, write_c_array

    arena = measure_arena("export/model_int8.tflite")["arena_recommended_bytes"]
    write_c_array("export/model_int8.tflite", "export/mcu", name="g_model", arena_bytes=arena)
    # firmware: tflite::MicroMutableOpResolver<g_model_op_count> resolver;
    #           g_model_register_ops(resolver);
    ```
    """
    if not _C_NAME.match(name):
        raise InvalidModelError(f"C array name {name!r}: expected a C identifier")
    data, source = model_bytes(tflite_path)
    ops = model_ops(data)
    methods = op_resolver_methods(ops)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    origin = Path(source).name
    texts = {
        "model_data.h": _header_text(name, origin, ops, arena_bytes),
        "model_data.cc": _array_text(name, origin, data),
        "model_ops.h": _ops_text(name, origin, methods),
    }
    written = {}
    for file_name, text in texts.items():
        with atomic_path(out / file_name) as tmp:
            Path(tmp).write_text(text)
        written[file_name] = str(out / file_name)
    written["op_resolver"] = methods
    return written


def _header_text(name: str, origin: str, ops: Sequence[str], arena_bytes: int | None) -> str:
    """``model_data.h``: the array's declarations (and the arena size when measured)."""
    guard = f"{name.upper()}_MODEL_DATA_H_"
    arena_line = (
        f"// Tensor arena measured with lstm_core.tflm.measure_arena (+ margin).\n"
        f"constexpr unsigned int {name}_arena_bytes = {int(arena_bytes)};\n"
        if arena_bytes
        else ""
    )
    return (
        f"// Generated by lstm_core.tflm.write_c_array from {origin}.\n"
        f"#ifndef {guard}\n#define {guard}\n\n"
        f"extern const unsigned char {name}[];\n"
        f"extern const unsigned int {name}_len;\n"
        f"{arena_line}\n"
        f"// Ops: {', '.join(dict.fromkeys(ops))} (see model_ops.h).\n\n"
        f"#endif  // {guard}\n"
    )


def _array_text(name: str, origin: str, data: bytes) -> str:
    """``model_data.cc``: the flatbuffer as a 16-byte aligned array, 12 bytes a line."""
    rows = [
        "  " + ", ".join(f"0x{byte:02x}" for byte in data[start : start + 12]) + ","
        for start in range(0, len(data), 12)
    ]
    return (
        f"// Generated by lstm_core.tflm.write_c_array from {origin} ({len(data)} bytes).\n"
        f'#include "model_data.h"\n\n'
        f"alignas(16) const unsigned char {name}[] = {{\n" + "\n".join(rows) + "\n};\n"
        f"const unsigned int {name}_len = {len(data)};\n"
    )


def _ops_text(name: str, origin: str, methods: Sequence[str]) -> str:
    """``model_ops.h``: the op count and a function registering exactly those ops."""
    guard = f"{name.upper()}_MODEL_OPS_H_"
    calls = "\n".join(f"  if (resolver.{m}() != kTfLiteOk) return kTfLiteError;" for m in methods)
    return (
        f"// Generated by lstm_core.tflm.write_c_array: the ops {origin} needs.\n"
        f"#ifndef {guard}\n#define {guard}\n\n"
        f'#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n\n'
        f"constexpr unsigned int {name}_op_count = {len(methods)};\n\n"
        f"// tflite::MicroMutableOpResolver<{name}_op_count> resolver;\n"
        f"// {name}_register_ops(resolver);\n"
        f"inline TfLiteStatus {name}_register_ops(\n"
        f"    tflite::MicroMutableOpResolver<{name}_op_count>& resolver) {{\n"
        f"{calls}\n  return kTfLiteOk;\n}}\n\n#endif  // {guard}\n"
    )
