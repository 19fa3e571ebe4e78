"""Running a ``.tflite`` on the host with LiteRT (``ai_edge_litert``): :class:`TFLiteModel`.

Imports no TensorFlow (LiteRT is loaded when a runner is made), so the TFLM report
(:mod:`lstm_core.tflm`) can compare against it without importing the exporter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lstm_core._signature import positional

__all__ = ["TFLiteModel"]


class TFLiteModel:
    """Runs a ``.tflite`` with ``ai_edge_litert`` (LiteRT).

    Inputs go in positional order of the model's serving signature; dynamic dimensions are
    resized per call; int8 inputs/outputs are (de)quantized so callers see float values; the
    fused LSTM's variable state tensors are reset before every call (on device: call
    ``ResetVariableTensors()`` between independent sequences).

    Args:
        model: ``.tflite`` bytes or path.
        num_threads: LiteRT interpreter threads (``None``: LiteRT's default).

    Returns:
        Calling the runner, ``runner(*inputs)``, returns a list with one ``np.ndarray`` per
        model output, in positional order (``output_0``, ``output_1`` ...). ``input_details``
        / ``output_details`` map signature names to LiteRT's tensor details; ``op_names()``
        lists the ops the interpreter runs.

    Example:

    ```python
    from lstm_core.litert import TFLiteModel  # also importable from lstm_core.export

    runner = TFLiteModel("export/model.tflite")
    scores, = runner(features)   # features: float32 [batch, steps, channels]
    ```
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
        self.input_names = positional(signature["inputs"])
        self.output_names = positional(signature["outputs"])
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
