"""Shared round-trip checks for layers and models (keras-hub style test helpers)."""

from __future__ import annotations

import numpy as np
import keras

from lstm_core.export import FUSED_LSTM_OP, TFLiteModel, export_tflite_report


def load_tool(name: str):
    """Import ``tools/<name>.py`` (a script folder, not a package) as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def max_abs_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(as_list(a), as_list(b)))


def assert_config_round_trip(layer):
    """``from_config(get_config())`` gives an equal config."""
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    return clone


def assert_keras_save_round_trip(model, inputs, tmp_path, atol=1e-6):
    """``.keras`` save/load keeps the outputs."""
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert max_abs_diff(model(inputs), loaded(inputs)) <= atol
    return loaded


def assert_tflite_round_trip(model, inputs, tmp_path, quantization=None, representative=None, atol=1e-4):
    """Export through lstm_core.export, run with LiteRT, compare with Keras; returns the report."""
    path = tmp_path / f"model_{quantization or 'float'}.tflite"
    report = export_tflite_report(
        model,
        path,
        quantization=quantization,
        representative_dataset=representative,
        sample_inputs=[as_list(inputs)],
        atol=atol,
    )
    assert path.exists()
    ops = TFLiteModel(path).op_names()
    assert FUSED_LSTM_OP in ops
    assert not {"WHILE", "CUSTOM"} & set(ops) and not any(op.startswith("Flex") for op in ops)
    return report
