"""lstm_core: one fast, TFLite-fusable LSTM for Keras 3 (cell, layer, native CPU kernel, cuDNN
dispatch, streaming, LiteRT and TensorFlow Lite Micro export).

A library: it imports nothing from the lstm-suite application (``tasks``), has no command line or
settings, and importing it changes no process-wide state. The public names below are imported
on first use, so ``import lstm_core`` does not load TensorFlow. Code that deserialises ``.keras``
files imports ``lstm_core.layer`` (it registers the classes).

Example:

```python
import keras
import lstm_core

inputs = keras.Input((None, 8))
model = keras.Model(inputs, keras.layers.Dense(1)(lstm_core.LSTM(32)(inputs)))
lstm_core.export_tflite(model, "model.tflite")
scores, = lstm_core.TFLiteModel("model.tflite")(features)
```
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> the module that defines it (imported when the name is first used)
_EXPORTS = {
    "LSTM": "lstm_core.layer",
    "LSTMCell": "lstm_core.cell",
    "Embedding": "lstm_core.embedding",
    "lstm_step_model": "lstm_core.streaming",
    "native_inference": "lstm_core.kernels",
    "export_saved_model": "lstm_core.export",
    "convert_to_tflite": "lstm_core.export",
    "export_tflite": "lstm_core.export",
    "export_tflite_report": "lstm_core.export",
    "TFLiteModel": "lstm_core.litert",
    "TFLMModel": "lstm_core.tflm",
    "tflm_report": "lstm_core.tflm",
    "write_c_array": "lstm_core.tflm",
    "LstmCoreError": "lstm_core.errors",
    "ExportMismatchError": "lstm_core.errors",
    "InvalidModelError": "lstm_core.errors",
    "TFLMError": "lstm_core.errors",
}

__all__ = [  # the keys of _EXPORTS (tests/lstm_core/test_package.py checks)
    "LSTM",
    "LSTMCell",
    "Embedding",
    "lstm_step_model",
    "native_inference",
    "export_saved_model",
    "convert_to_tflite",
    "export_tflite",
    "export_tflite_report",
    "TFLiteModel",
    "TFLMModel",
    "tflm_report",
    "write_c_array",
    "LstmCoreError",
    "ExportMismatchError",
    "InvalidModelError",
    "TFLMError",
]

if TYPE_CHECKING:  # for type checkers and IDEs only; at run time the names load lazily
    from lstm_core.cell import LSTMCell
    from lstm_core.embedding import Embedding
    from lstm_core.errors import ExportMismatchError, InvalidModelError, LstmCoreError, TFLMError
    from lstm_core.export import convert_to_tflite, export_saved_model, export_tflite, export_tflite_report
    from lstm_core.kernels import native_inference
    from lstm_core.layer import LSTM
    from lstm_core.litert import TFLiteModel
    from lstm_core.streaming import lstm_step_model
    from lstm_core.tflm import TFLMModel, tflm_report, write_c_array


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lstm_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
