"""Two flatbuffer rewrites that make the converter's output run on TensorFlow Lite Micro without
changing a single number LiteRT computes:

1. FakeQuant over [0, top] converts to QUANTIZE float -> uint8 (+ DEQUANTIZE) in float models;
   TFLM quantizes float only to int8/int16. A uint8 activation with zero point z holds exactly
   the values of an int8 one with zero point z - 128, so such tensors become int8.
2. TFLM's LOG is float-only; the int8 model's LOG becomes DEQUANTIZE -> MAXIMUM (the output's
   floor) -> LOG (float) -> QUANTIZE, which is how LiteRT's int8 LOG computes its table anyway
   (dequantize, log, saturate, requantize): 32 logs per 20 ms frame in float, the rest int8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lstm_core.export import TFLiteModel
from tasks.common.io import write_bytes_atomic


class _AlignedBuilder:
    """``flatbuffers.Builder`` whose byte vectors (the weight buffers) start 4-byte aligned (as the
    TFLite converter writes them): TFLM reads int32 biases and float weights in place."""

    def __new__(cls, size: int):
        import flatbuffers
        from flatbuffers.number_types import UOffsetTFlags

        class Builder(flatbuffers.Builder):
            def CreateNumpyVector(self, x):  # noqa: N802 - flatbuffers' method name
                x = np.ascontiguousarray(x)
                self.StartVector(x.itemsize, x.size, max(4, x.dtype.alignment))
                length = UOffsetTFlags.py_type(x.itemsize * x.size)
                self.head = self.head - length
                self.Bytes[self.Head() : self.Head() + length] = x.astype(x.dtype.newbyteorder("<")).tobytes()
                self.vectorNumElems = x.size
                return self.EndVector()

        return Builder(size)


class _Rewriter:
    """The rewrites on one unpacked model (``schema.ModelT``): tensors, buffers and op codes are
    appended to it as the float LOG needs them."""

    def __init__(self, model, schema):
        self.model, self.schema = model, schema
        self.names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}

    def opcode(self, builtin: int, version: int) -> int:
        """Index of ``builtin``'s operator code, added if the model has none yet."""
        for index, code in enumerate(self.model.operatorCodes):
            if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
                return index
        self.model.operatorCodes.append(self.schema.OperatorCodeT(
            deprecatedBuiltinCode=min(builtin, 127), builtinCode=builtin, version=version))
        return len(self.model.operatorCodes) - 1

    def float_copy(self, subgraph, tensor, suffix: str) -> int:
        """A new float32 activation tensor shaped like ``tensor``."""
        self.model.buffers.append(self.schema.BufferT())
        subgraph.tensors.append(self.schema.TensorT(
            shape=tensor.shape, shapeSignature=tensor.shapeSignature, type=self.schema.TensorType.FLOAT32,
            buffer=len(self.model.buffers) - 1, name=(tensor.name or b"") + suffix.encode(), hasRank=tensor.hasRank))
        return len(subgraph.tensors) - 1

    def floor_constant(self, subgraph, target) -> int:
        """exp(lowest int8 output) as a constant: LiteRT's int8 LOG saturates log(0) = -inf there,
        while TFLM's QUANTIZE of -inf is undefined (seen: +127); the floor makes both give -128."""
        scale, zero = target.quantization.scale[0], target.quantization.zeroPoint[0]
        value = np.array([np.exp((-128 - int(zero)) * float(scale))], np.float32)
        self.model.buffers.append(self.schema.BufferT(data=np.frombuffer(value.tobytes(), np.uint8)))
        subgraph.tensors.append(self.schema.TensorT(shape=[1], type=self.schema.TensorType.FLOAT32,
                                                    buffer=len(self.model.buffers) - 1, name=b"log_floor",
                                                    hasRank=True))
        return len(subgraph.tensors) - 1

    def uint8_to_int8(self, subgraph) -> list[str]:
        """Rewrite 1 on every uint8 activation of ``subgraph``."""
        changes = []
        for tensor in subgraph.tensors:
            data = self.model.buffers[tensor.buffer].data if tensor.buffer < len(self.model.buffers) else None
            if tensor.type == self.schema.TensorType.UINT8 and tensor.quantization is not None and data is None:
                tensor.type = self.schema.TensorType.INT8
                tensor.quantization.zeroPoint = [int(z) - 128 for z in tensor.quantization.zeroPoint]
                changes.append(f"uint8 tensor {tensor.name.decode()} -> int8")
        return changes

    def float_logs(self, subgraph) -> list[str]:
        """Rewrite 2 on every int8 LOG of ``subgraph``."""
        changes, operators = [], []
        for op in subgraph.operators or []:
            source = subgraph.tensors[op.inputs[0]]
            builtin = self.names.get(self.model.operatorCodes[op.opcodeIndex].builtinCode)
            if builtin == "LOG" and source.type == self.schema.TensorType.INT8:
                changes.append(f"int8 LOG {subgraph.tensors[op.outputs[0]].name.decode()} -> "
                               "DEQUANTIZE, MAXIMUM, float LOG, QUANTIZE")
                operators += self.log_in_float(subgraph, op, source)
            else:
                operators.append(op)
        subgraph.operators = operators
        return changes

    def log_in_float(self, subgraph, op, source) -> list:
        """DEQUANTIZE -> MAXIMUM(floor) -> ``op`` (now float) -> QUANTIZE to ``op``'s old output."""
        schema = self.schema
        target = subgraph.tensors[op.outputs[0]]
        float_in = self.float_copy(subgraph, source, "/dequantized")
        floored = self.float_copy(subgraph, source, "/floored")
        float_out = self.float_copy(subgraph, target, "/float")
        floor = self.floor_constant(subgraph, target)
        dequantize = schema.OperatorT(opcodeIndex=self.opcode(schema.BuiltinOperator.DEQUANTIZE, 2),
                                      inputs=[op.inputs[0]], outputs=[float_in])
        maximum = schema.OperatorT(opcodeIndex=self.opcode(schema.BuiltinOperator.MAXIMUM, 1),
                                   inputs=[float_in, floor], outputs=[floored])
        op.inputs, original_output, op.outputs = [floored], op.outputs[0], [float_out]
        quantize = schema.OperatorT(opcodeIndex=self.opcode(schema.BuiltinOperator.QUANTIZE, 1),
                                    inputs=[float_out], outputs=[original_output])
        return [dequantize, maximum, op, quantize]


def tflm_compatible(flatbuffer: bytes) -> tuple[bytes, list[str]]:
    """``(flatbuffer, what was rewritten)``: the two rewrites above; unchanged if neither applies."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))
    rewriter = _Rewriter(model, schema)
    changes = []
    for subgraph in model.subgraphs:
        changes += rewriter.uint8_to_int8(subgraph)
        changes += rewriter.float_logs(subgraph)
    if not changes:
        return flatbuffer, []
    builder = _AlignedBuilder(len(flatbuffer) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), changes


def rewrite_for_tflm(path: Path, tflite_report: dict, samples) -> dict:
    """Apply :func:`tflm_compatible` to the exported ``path`` (LiteRT's outputs must not move),
    then add TFLM's report (loads, arena, ops, agreement with LiteRT) to ``tflite_report``."""
    from lstm_core.tflm import model_ops, tflm_report

    original = path.read_bytes()
    rewritten, changes = tflm_compatible(original)
    if changes:
        before, after = TFLiteModel(original), TFLiteModel(rewritten)
        for sample in samples:
            moved = max(float(np.max(np.abs(a - b))) for a, b in zip(before(*sample), after(*sample)))
            if moved > 1e-6:
                raise RuntimeError(f"{path.name}: the TFLM rewrite changed LiteRT's outputs by {moved:.3g}")
        write_bytes_atomic(path, rewritten)
        tflite_report.update(size_bytes=len(rewritten), ops=sorted(set(model_ops(rewritten))), tflm_rewrites=changes)
    tflite_report["tflm"] = tflm_report(path, samples, labels="argmax")
    return tflite_report
