"""Running a ``.tflite`` in TensorFlow Lite Micro in this process: :class:`TFLMModel`.

TFLM (PyPI ``tflite-micro``) runs the same reference kernels that MCU firmware builds use, with
their limits: batch 1 and static shapes (no resize), no hybrid (weights-only int8) kernels, only
the ops its resolver knows, the fused LSTM's state in variable tensors (reset between sequences).
A kernel that crashes takes the process with it: :mod:`lstm_core.tflm.child` runs this runner in
a subprocess for reports and arena measurements.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Sequence

import numpy as np

from lstm_core.errors import TFLMError
from lstm_core.tflm.flatbuffer import hybrid_ops, model_bytes, op_name, parse, signature_order
from lstm_core.tflm.sources import missing_kernels

__all__ = ["ARENA_ALIGNMENT", "HOST_ARENA_BYTES", "TFLMModel", "captured_native_stderr", "quantization_parameters"]

ARENA_ALIGNMENT = 16  # TFLM aligns arena allocations to 16 bytes
HOST_ARENA_BYTES = 16 << 20  # arena of the host runner: memory is cheap off the device


@contextlib.contextmanager
def captured_native_stderr():
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
    missing = missing_kernels(ops)
    if op is None and missing:
        op = missing[0]
    where = f"op {op}" if op else "the model"
    return TFLMError(f"{source}: TensorFlow Lite Micro cannot {stage} {where} ({detail})")


def quantization_parameters(detail: dict) -> tuple[float, int] | None:
    """``(scale, zero point)`` of a TFLM input/output detail, or ``None`` for a float tensor."""
    params = detail.get("quantization_parameters") or {}
    scales, zeros = params.get("scales", []), params.get("zero_points", [])
    if len(scales) == 0:
        return None
    return float(scales[0]), int(zeros[0])


class TFLMModel:
    """Runs a ``.tflite`` in TensorFlow Lite Micro, with :class:`lstm_core.export.TFLiteModel`'s
    call convention.

    Inputs go in the positional order of the serving signature (``input_0``, ``input_1`` ...).
    TFLM has no resize: each input must have the model's static shape, except that a batch of
    N rows runs as N batch-1 calls. Float inputs of int8/int16 models are quantized with the
    input's scale and zero point; int8/int16 outputs are dequantized. The fused LSTM's
    variable tensors are reset before every row (on device: ``interpreter.Reset()`` between
    independent sequences).

    Args:
        model: ``.tflite`` bytes or path.
        arena_size: tensor arena in bytes; default ``HOST_ARENA_BYTES`` (16 MiB: the host has
            memory to spare; measure the device figure with
            :func:`lstm_core.tflm.measure_arena`).

    Returns:
        Calling the runner, ``runner(*inputs)``, returns a list with one float ``np.ndarray``
        per model output; ``run_quantized(*inputs)`` returns the raw int8/int16 outputs.
        ``input_details`` / ``output_details`` are TFLM's dicts in positional order;
        ``op_names()`` lists the ops.

    Raises:
        TFLMError: the model does not load (hybrid ops, an op without a TFLM kernel, an arena
            too small) or an invoke fails; the message names the op and TFLM's reason.
        InvalidModelError: ``model`` is not a readable ``.tflite`` flatbuffer.

    Example:

    ```python
    from lstm_core.tflm import TFLMModel

    runner = TFLMModel("export/model_int8.tflite")
    probabilities, = runner(features)        # features: float32 [N, steps, channels]
    raw, = runner.run_quantized(features)   # int8 values as stored on the device
    ```
    """

    def __init__(self, model, arena_size: int | None = None):
        from tflite_micro import runtime

        data, self.source = model_bytes(model)
        parsed = parse(data, self.source)
        self.ops = [op_name(parsed, op.opcodeIndex) for sg in parsed.subgraphs for op in (sg.operators or [])]
        hybrid = hybrid_ops(data)
        if hybrid:
            raise TFLMError(
                f"{self.source}: TensorFlow Lite Micro has no hybrid (weights-only int8, "
                f"'dynamic') kernels for {', '.join(hybrid)}; this model is LiteRT-only"
            )
        self.arena_size = int(arena_size or HOST_ARENA_BYTES)
        self._log = None
        with captured_native_stderr() as log_lines:
            try:
                self.interpreter = runtime.Interpreter.from_bytes(data, arena_size=self.arena_size)
                failed = False
            except (RuntimeError, ValueError):
                failed = True
        if failed:
            raise _tflm_error(self.source, "load", log_lines, self.ops)
        self._order = signature_order(parsed)
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
        quant = quantization_parameters(detail)
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
            quant = quantization_parameters(detail)
            if np.dtype(detail["dtype"]).kind == "i" and quant is not None:
                scale, zero = quant
                value = (value.astype(np.float32) - zero) * np.float32(scale)
            outputs.append(value)
        return outputs
