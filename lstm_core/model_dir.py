"""Where a model directory keeps its exports, shared by the tasks' export/evaluate verbs."""

from __future__ import annotations

from pathlib import Path

from lstm_core.errors import UserError

EXPORT_DIR = "export"
EXPORT_FILES = {
    "tflite": "model_float.tflite",
    "tflite-int8": "model_int8.tflite",
    "streaming": "streaming_float.tflite",
}


def exported_tflite(model_dir, runtime: str, task: str) -> Path:
    """The ``.tflite`` for ``runtime`` under ``model_dir/export``, or a UserError saying to export."""
    path = Path(model_dir) / EXPORT_DIR / EXPORT_FILES[runtime]
    if not path.is_file():
        raise UserError(f"{path} does not exist: run `lstm-suite {task} export --model {model_dir}` first")
    return path
