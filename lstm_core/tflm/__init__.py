"""TensorFlow Lite Micro (TFLM): run, check and package ``.tflite`` exports for microcontrollers.

TFLM (PyPI ``tflite-micro``) runs the same reference kernels that MCU firmware builds use. Its
limits shape everything here: batch 1 and static shapes (no resize), no hybrid (weights-only
int8) kernels, only the ops its resolver knows, state of the fused LSTM in variable tensors
(reset between sequences), and a fixed tensor arena whose size the firmware must declare.

One concern a module:

- :mod:`~lstm_core.tflm.runtime`: ``TFLMModel(model, arena_size=None)``, the in-process runner
  with :class:`lstm_core.litert.TFLiteModel`'s call convention (``runner(*inputs) ->
  list[np.ndarray]``, float in/out for int8/int16 models, state reset before every row);
- :mod:`~lstm_core.tflm.child`: the TFLM subprocess (a crashing kernel cannot take the caller
  down): the parent's job runner and the child's entry point;
- :mod:`~lstm_core.tflm.arena`: ``measure_arena(model)`` (bisection) and ``arena_works(model,
  size)``;
- :mod:`~lstm_core.tflm.quantization`: ``align_lstm_quantization(model)``, the int8 LSTM fix
  every int8 export gets so LiteRT and TFLM agree;
- :mod:`~lstm_core.tflm.requantize`: ``requantize_int16x8(int8_model)``, TFLM's
  ``requantize_flatbuffer.py`` recipe driven by a per-op table (the TF converter refuses 16x8
  for the LSTM op);
- :mod:`~lstm_core.tflm.sources`: ``RESOLVER_METHODS``, ``op_resolver_methods(ops)``,
  ``op_resolver_code(model)`` and ``write_c_array(tflite_path, out_dir, name, arena_bytes=)``
  (``model_data.cc/.h``, ``model_ops.h``);
- :mod:`~lstm_core.tflm.report`: ``tflm_report(model, sample_inputs, ...)``, the ``tflm``
  section of ``export_report.json`` (``lstm_core.export.export_tflite_report(..., tflm=True |
  "require")`` calls it), and ``litert_only(reason, model)`` for models TFLM cannot run;
- :mod:`~lstm_core.tflm.flatbuffer`: parsing: ``model_ops``, ``hybrid_ops``,
  ``dynamic_inputs``.

``tools/tflm_facts.py MODEL.tflite [--c-array DIR]`` prints the same facts (ops, resolver lines,
arena) for one file. ``model`` arguments are ``.tflite`` bytes or a path. Nothing here imports
TensorFlow. Failures raise :class:`lstm_core.errors.TFLMError` (TFLM cannot load or run the
model; the message names the op) or :class:`lstm_core.errors.InvalidModelError` (not a
readable ``.tflite``).

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

from lstm_core.tflm.arena import MAX_ARENA_BYTES, arena_works, measure_arena
from lstm_core.tflm.flatbuffer import dynamic_inputs, hybrid_ops, model_ops
from lstm_core.tflm.quantization import MIN_CELL_SCALE, align_lstm_quantization
from lstm_core.tflm.report import LSB_TOLERANCE, litert_only, litert_only_reason, tflm_report
from lstm_core.tflm.requantize import requantize_int16x8
from lstm_core.tflm.runtime import ARENA_ALIGNMENT, HOST_ARENA_BYTES, TFLMModel
from lstm_core.tflm.sources import RESOLVER_METHODS, op_resolver_code, op_resolver_methods, write_c_array

__all__ = [
    "ARENA_ALIGNMENT",
    "HOST_ARENA_BYTES",
    "LSB_TOLERANCE",
    "MAX_ARENA_BYTES",
    "MIN_CELL_SCALE",
    "RESOLVER_METHODS",
    "TFLMModel",
    "align_lstm_quantization",
    "arena_works",
    "dynamic_inputs",
    "hybrid_ops",
    "litert_only",
    "litert_only_reason",
    "measure_arena",
    "model_ops",
    "op_resolver_code",
    "op_resolver_methods",
    "requantize_int16x8",
    "tflm_report",
    "write_c_array",
]
