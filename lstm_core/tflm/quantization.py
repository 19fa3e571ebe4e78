"""The int8 LSTM fix every int8 export gets, so LiteRT and TFLM read the fused op alike.

Also the input/intermediate positions of ``UNIDIRECTIONAL_SEQUENCE_LSTM`` that this fix and the
int16x8 requantizer (:mod:`lstm_core.tflm.requantize`) need.
"""

from __future__ import annotations

from lstm_core.tflm.flatbuffer import model_bytes, schema

__all__ = [
    "LSTM_INPUT",
    "LSTM_HIDDEN_STATE",
    "LSTM_CELL_STATE",
    "LSTM_BIASES",
    "LSTM_INPUT_WEIGHTS",
    "LSTM_HIDDEN_INTERMEDIATE",
    "MIN_CELL_SCALE",
    "align_lstm_quantization",
]

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
    data, _ = model_bytes(model)
    buffer = bytearray(data)
    generated = schema()
    root = generated.Model.GetRootAsModel(buffer, 0)
    codes = [
        max(root.OperatorCodes(i).BuiltinCode(), root.OperatorCodes(i).DeprecatedBuiltinCode())
        for i in range(root.OperatorCodesLength())
    ]
    changes: list[str] = []
    for g in range(root.SubgraphsLength()):
        subgraph = root.Subgraphs(g)
        for k in range(subgraph.OperatorsLength()):
            op = subgraph.Operators(k)
            if codes[op.OpcodeIndex()] == generated.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM:
                changes += _align_lstm_op(subgraph, op, k)
    return bytes(buffer), changes


def _align_lstm_op(subgraph, op, k: int) -> list[str]:
    """Both fixes on one int8 LSTM op (the buffer behind ``subgraph`` is patched in place)."""
    output = subgraph.Tensors(op.Outputs(0))
    if output.Type() != schema().TensorType.INT8 or output.Quantization() is None:
        return []
    changes = []
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
    return changes
