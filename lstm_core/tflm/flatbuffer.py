"""Reading ``.tflite`` flatbuffers: bytes of a file, its ops, and why TFLM may not run it.

Leaf module of :mod:`lstm_core.tflm` (NumPy and the flatbuffer schema shipped with
``tflite-micro``; no TensorFlow). ``model`` arguments are ``.tflite`` bytes or a path.
"""

from __future__ import annotations

from pathlib import Path

from lstm_core._signature import positional
from lstm_core.errors import InvalidModelError

__all__ = [
    "WEIGHTED_OPS",
    "schema",
    "model_bytes",
    "parse",
    "op_name",
    "model_ops",
    "hybrid_ops",
    "dynamic_inputs",
    "signature_order",
]

WEIGHTED_OPS = ("FULLY_CONNECTED", "UNIDIRECTIONAL_SEQUENCE_LSTM", "CONV_2D", "DEPTHWISE_CONV_2D")


def schema():
    """The TFLite flatbuffer schema (generated Python classes) that ``tflite-micro`` ships."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated

    return schema_py_generated


def model_bytes(model) -> tuple[bytes, str]:
    """``(bytes, name for messages)`` of a ``.tflite`` given as bytes or a path."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), "<tflite bytes>"
    path = Path(model)
    try:
        return path.read_bytes(), str(path)
    except OSError as error:
        raise InvalidModelError(f"{path}: cannot read the .tflite file ({error.strerror})") from None


def parse(data: bytes, source: str):
    """The object API (``ModelT``) of a flatbuffer; InvalidModelError when it is not one."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise InvalidModelError(f"{source}: not a TFLite flatbuffer (no TFL3 identifier)")
    generated = schema()
    return generated.ModelT.InitFromObj(generated.Model.GetRootAsModel(data, 0))


def op_name(model_object, opcode_index: int) -> str:
    """Builtin op name (``"FULLY_CONNECTED"``) or custom code of one operator code."""
    generated = schema()
    code = model_object.operatorCodes[opcode_index]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == generated.BuiltinOperator.CUSTOM:
        return (code.customCode or b"CUSTOM").decode()
    return _enum_names(generated.BuiltinOperator)[builtin]


def _enum_names(enum) -> dict[int, str]:
    return {value: name for name, value in vars(enum).items() if not name.startswith("_")}


def model_ops(model) -> list[str]:
    """Builtin op names of every subgraph of ``model``, in execution order."""
    data, source = model_bytes(model)
    parsed = parse(data, source)
    return [op_name(parsed, op.opcodeIndex) for sg in parsed.subgraphs for op in (sg.operators or [])]


def hybrid_ops(model) -> list[str]:
    """Ops that take float activations with int8 weights ("dynamic" quantization); TFLM has
    no such kernels."""
    data, source = model_bytes(model)
    parsed = parse(data, source)
    types = schema().TensorType
    found = []
    for sg in parsed.subgraphs:
        for op in sg.operators or []:
            name = op_name(parsed, op.opcodeIndex)
            if name not in WEIGHTED_OPS or len(op.inputs) < 2:
                continue
            tensor_types = [sg.tensors[i].type for i in op.inputs if i >= 0]
            if tensor_types[0] == types.FLOAT32 and types.INT8 in tensor_types[1:]:
                found.append(name)
    return sorted(set(found))


def dynamic_inputs(model) -> list[list[int]]:
    """Shape signatures (``-1`` = dynamic) of the inputs TFLM would see with a frozen
    placeholder shape (it has no resize: such exports are LiteRT-only)."""
    data, source = model_bytes(model)
    parsed = parse(data, source)
    subgraph = parsed.subgraphs[0]
    found = []
    for index in subgraph.inputs:
        signature = subgraph.tensors[index].shapeSignature
        if signature is not None and any(int(d) < 0 for d in signature[1:]):
            found.append([int(d) for d in signature])
    return found


def signature_order(parsed) -> tuple[list[int], list[int]]:
    """Subgraph input/output indices in the serving signature's positional order."""
    subgraph = parsed.subgraphs[0]
    inputs, outputs = list(subgraph.inputs), list(subgraph.outputs)
    signatures = parsed.signatureDefs or []
    if not signatures:
        return list(range(len(inputs))), list(range(len(outputs)))
    signature = next((s for s in signatures if s.signatureKey == b"serving_default"), signatures[0])

    def order(maps, tensor_list):
        named = {m.name.decode(): int(m.tensorIndex) for m in maps}
        return [tensor_list.index(named[n]) for n in positional(named)]

    return order(signature.inputs, inputs), order(signature.outputs, outputs)
