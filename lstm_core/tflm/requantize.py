"""int8 -> int16x8 requantizer for TFLM, driven by a per-op table of rules.

The TF 2.21 converter refuses 16x8 for ``UNIDIRECTIONAL_SEQUENCE_LSTM``; TFLM documents this
path instead (``tensorflow/lite/micro/tools/requantize_flatbuffer.py``, not in the pip package).
As there, a dict maps each op name to the function that requantizes that op's tensors
(:data:`RULES`); an op without a rule stops the conversion with an error naming it.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from lstm_core.errors import InvalidModelError, TFLMError
from lstm_core.tflm.flatbuffer import model_bytes, op_name, parse, schema
from lstm_core.tflm.quantization import LSTM_BIASES, LSTM_HIDDEN_STATE, LSTM_INPUT, LSTM_INPUT_WEIGHTS

__all__ = ["RULES", "ACTIVATION_ONLY_OPS", "requantize_int16x8"]

# Ops whose tensors are only activations: retyping int8 -> int16 is all they need, and
# TFLM has int16 kernels for them.
ACTIVATION_ONLY_OPS = frozenset({
    "RESHAPE", "QUANTIZE", "DEQUANTIZE", "MEAN", "ADD", "SUB", "MUL", "LOGISTIC", "TANH",
    "STRIDED_SLICE", "CONCATENATION", "PAD", "SQUARED_DIFFERENCE", "RSQRT", "LEAKY_RELU",
    "REVERSE_V2", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE",
})


class _Subgraph:
    """One subgraph being requantized: its tensors, what is already converted, the new op list."""

    def __init__(self, parsed, subgraph, source: str):
        self.parsed, self.subgraph, self.source = parsed, subgraph, source
        self.tensors, self.buffers = subgraph.tensors, parsed.buffers
        self.types = schema().TensorType
        self.done: set[int] = set()
        self.renamed: dict[int, int] = {}  # GATHER outputs replaced by their int16 copies
        self.operators: list = []
        self.widened = False  # an int8 activation became int16 here

    def has_data(self, index: int) -> bool:
        buf = self.buffers[self.tensors[index].buffer]
        return buf is not None and buf.data is not None and len(buf.data) > 0

    def to_int16(self, index: int) -> None:
        """int8 tensor -> int16 with a symmetric scale covering its int8 range."""
        if index < 0 or index in self.done or self.tensors[index].type != self.types.INT8:
            return
        tensor = self.tensors[index]
        quant = tensor.quantization
        if quant is None or quant.scale is None or len(quant.scale) != 1:
            raise InvalidModelError(
                f"{self.source}: tensor {tensor.name.decode()} is not per-tensor int8; cannot requantize to int16"
            )
        scale, zero = float(quant.scale[0]), int(quant.zeroPoint[0])
        scale16 = max(abs(scale * (128 - zero)), abs(scale * (-128 - zero))) / 32767
        if self.has_data(index):  # a constant read as an activation (e.g. a GATHER table)
            raw = np.frombuffer(bytes(self.buffers[tensor.buffer].data), np.int8)
            values = (raw.astype(np.float64) - zero) * scale
            q16 = np.clip(np.round(values / scale16), -32767, 32767).astype("<i2")
            self.buffers[tensor.buffer].data = np.frombuffer(q16.tobytes(), np.uint8)
        quant.scale, quant.zeroPoint = np.array([scale16], np.float32), np.array([0], np.int64)
        tensor.type = self.types.INT16
        self.done.add(index)

    def bias_to_int64(self, bias_index: int, input_index: int, weight_index: int) -> None:
        """int32 bias -> int64 with scale (int16 input scale) x (weight scale)."""
        if bias_index < 0 or bias_index in self.done:
            return
        bias, weight = self.tensors[bias_index], self.tensors[weight_index]
        if bias.type != self.types.INT32:
            return
        input_scale = float(self.tensors[input_index].quantization.scale[0])  # its int16 scale by now
        values = np.frombuffer(bytes(self.buffers[bias.buffer].data), "<i4").astype(np.float64)
        old = np.asarray(bias.quantization.scale, np.float64)
        new = input_scale * np.asarray(weight.quantization.scale, np.float64)
        q64 = np.round(values * old / new).astype("<i8")
        self.buffers[bias.buffer].data = np.frombuffer(q64.tobytes(), np.uint8)
        bias.quantization.scale = new.astype(np.float32)
        bias.quantization.zeroPoint = np.zeros(len(new), np.int64)
        bias.type = self.types.INT64
        self.done.add(bias_index)

    def requantize(self) -> None:
        """Apply each op's rule in execution order, then widen the activations no op claimed
        (graph inputs/outputs)."""
        for op in self.subgraph.operators or []:
            name = op_name(self.parsed, op.opcodeIndex)
            op.inputs = np.array([self.renamed.get(int(i), int(i)) for i in op.inputs], np.int32)
            self.operators.append(op)
            rule = RULES.get(name)
            if rule is None:
                raise _unsupported(self.source, name)
            rule(self, op, name, [int(i) for i in op.inputs], [int(i) for i in op.outputs])
            self.widened = self.widened or bool(self.done)
        self.subgraph.operators = self.operators
        self.subgraph.outputs = np.array([self.renamed.get(int(i), int(i)) for i in self.subgraph.outputs], np.int32)
        for index, tensor in enumerate(self.tensors):
            if tensor.type == self.types.INT8 and not self.has_data(index):
                self.to_int16(index)


def _unsupported(source: str, name: str) -> TFLMError:
    return TFLMError(
        f"{source}: op {name} is not supported by the int16x8 requantizer (LSTM models: "
        f"FULLY_CONNECTED, UNIDIRECTIONAL_SEQUENCE_LSTM, SOFTMAX, GATHER, "
        f"{', '.join(sorted(ACTIVATION_ONLY_OPS))})"
    )


# ----------------------------------------------------------------------------- per-op rules
def _fully_connected(sg: _Subgraph, op, name, inputs, outputs) -> None:
    sg.to_int16(inputs[0])
    sg.to_int16(outputs[0])
    if len(inputs) > 2:
        sg.bias_to_int64(inputs[2], inputs[0], inputs[1])
    op.builtinOptions.quantizedBiasType = sg.types.INT64


def _lstm(sg: _Subgraph, op, name, inputs, outputs) -> None:
    for index in (inputs[LSTM_INPUT], inputs[LSTM_HIDDEN_STATE], outputs[0]):
        sg.to_int16(index)
    for bias_index, weight_index in zip(LSTM_BIASES, LSTM_INPUT_WEIGHTS):
        sg.bias_to_int64(inputs[bias_index], inputs[LSTM_INPUT], inputs[weight_index])


def _softmax(sg: _Subgraph, op, name, inputs, outputs) -> None:
    sg.to_int16(inputs[0])
    out = sg.tensors[outputs[0]]
    if out.type == sg.types.INT8:
        out.quantization.scale = np.array([1 / 32768], np.float32)
        out.quantization.zeroPoint = np.array([0], np.int64)
        out.type = sg.types.INT16
        sg.done.add(outputs[0])


def _gather(sg: _Subgraph, op, name, inputs, outputs) -> None:
    """TFLM's GATHER has no int16 kernel: look up in int8, then QUANTIZE to int16."""
    if sg.tensors[outputs[0]].type != sg.types.INT8:
        raise _unsupported(sg.source, name)
    sg.done.update((inputs[0], outputs[0]))
    wide = copy.deepcopy(sg.tensors[outputs[0]])
    wide.name = sg.tensors[outputs[0]].name + b"/int16"
    sg.tensors.append(wide)
    wide_index = len(sg.tensors) - 1
    sg.to_int16(wide_index)
    sg.renamed[outputs[0]] = wide_index
    sg.operators.append(_quantize_operator(sg.parsed, outputs[0], wide_index))
    sg.widened = True


def _activations_only(sg: _Subgraph, op, name, inputs, outputs) -> None:
    for index in inputs + outputs:
        if index >= 0 and sg.tensors[index].type == sg.types.INT8:
            sg.widened = True
            sg.to_int16(index)


RULES: dict[str, Callable] = {
    "FULLY_CONNECTED": _fully_connected,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": _lstm,
    "SOFTMAX": _softmax,
    "GATHER": _gather,
    **{name: _activations_only for name in sorted(ACTIVATION_ONLY_OPS)},
}


def _quantize_operator(parsed, source_index: int, target_index: int):
    """A ``QUANTIZE`` operator ``source -> target`` (its operator code added when missing)."""
    generated = schema()
    code = generated.BuiltinOperator.QUANTIZE
    for index, opcode in enumerate(parsed.operatorCodes):
        if max(opcode.builtinCode, opcode.deprecatedBuiltinCode) == code:
            break
    else:
        opcode = generated.OperatorCodeT()
        opcode.builtinCode, opcode.deprecatedBuiltinCode, opcode.version = code, code, 1
        parsed.operatorCodes.append(opcode)
        index = len(parsed.operatorCodes) - 1
    op = generated.OperatorT()
    op.opcodeIndex = index
    op.inputs = np.array([source_index], np.int32)
    op.outputs = np.array([target_index], np.int32)
    op.builtinOptionsType = generated.BuiltinOptions.QuantizeOptions
    op.builtinOptions = generated.QuantizeOptionsT()
    return op


def requantize_int16x8(int8_model) -> bytes:
    """int8-activation model -> int16 activations, int8 weights, int64 biases (16x8).

    The same recipe as TFLM's ``requantize_flatbuffer.py``: every int8 activation tensor becomes
    int16 with a symmetric scale covering its int8 range (``max|range| / 32767``); the biases of
    ``FULLY_CONNECTED`` and the LSTM gates become int64 with scale input x weight; a ``SOFTMAX``
    output gets 1/32768; ``GATHER`` (embeddings) keeps its int8 table and output and a
    ``QUANTIZE`` op widens the result (TFLM's GATHER has no int16 kernel). Weights stay int8.
    The result is re-aligned with TFLM's ``tflite_flatbuffer_align`` (buffers on 16 bytes).

    Args:
        int8_model: full-integer int8 ``.tflite`` (bytes or path).

    Returns:
        The int16x8 flatbuffer (TFLM-only: LiteRT's LSTM has no int64-bias kernel).

    Raises:
        TFLMError: an op without a rule in :data:`RULES` (the message names it).
        InvalidModelError: a model that is not int8-quantized per tensor.
    """
    data, source = model_bytes(int8_model)
    parsed = parse(data, source)
    widened = False
    for subgraph in parsed.subgraphs:
        state = _Subgraph(parsed, subgraph, source)
        state.requantize()
        widened = widened or state.widened
    if not widened:
        raise InvalidModelError(f"{source}: not an int8-quantized model; int16x8 starts from the int8 export")
    return _pack_aligned(parsed, len(data) * 2 + 1024)


def _pack_aligned(parsed, size_hint: int) -> bytes:
    """Serialize the object API model and align its buffers as TFLM expects."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper

    builder = flatbuffers.Builder(size_hint)
    builder.Finish(parsed.Pack(builder), file_identifier=b"TFL3")
    with tempfile.TemporaryDirectory() as tmp:
        raw, aligned = Path(tmp) / "packed.tflite", Path(tmp) / "aligned.tflite"
        raw.write_bytes(bytes(builder.Output()))
        tflite_flatbuffer_align_wrapper.align_tflite_model(str(raw), str(aligned))
        return aligned.read_bytes()
