"""tools/tflite_latency.py times a real export in both runtimes."""

import keras
import numpy as np

from helpers import load_tool
from lstm_core import LSTM
from lstm_core.export import export_tflite

latency = load_tool("tflite_latency")


def test_times_litert_and_tflm_on_a_fused_lstm(tmp_path, capsys, monkeypatch):
    inputs = keras.Input((5, 3), batch_size=1)
    model = keras.Model(inputs, keras.layers.Dense(2)(LSTM(4)(inputs)))
    path = export_tflite(model, tmp_path / "model_float.tflite")
    monkeypatch.setattr("sys.argv", ["tflite_latency", str(path), "--calls", "5"])
    assert latency.main() == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {path}")]
    assert [row.split("|")[2].strip() for row in rows] == ["LiteRT", "TFLM"]
    assert all(float(row.split("|")[3]) > 0 for row in rows)
    assert latency.random_inputs([{"shape": np.array([1, 2]), "dtype": np.int32}])[0].dtype == np.int32
