"""tools/tflm_facts.py: the TFLM facts of one .tflite (ops, resolver lines, arena, C sources)."""

import json

import keras

from helpers import load_tool
from lstm_core import LSTM
from lstm_core.export import convert_to_tflite

facts = load_tool("tflm_facts")


def test_prints_ops_resolver_arena_and_writes_c_sources(tmp_path, capsys):
    inputs = keras.Input((5, 3), batch_size=1)
    model = keras.Model(inputs, keras.layers.Dense(2)(LSTM(4)(inputs)))
    path = tmp_path / "model.tflite"
    path.write_bytes(convert_to_tflite(model))
    assert facts.main([str(path), "--c-array", str(tmp_path / "mcu"), "--name", "g_lstm"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"] == str(path) and printed["size_bytes"] == path.stat().st_size
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in printed["ops"]
    assert printed["op_resolver"][0].startswith(f"tflite::MicroMutableOpResolver<{len(set(printed['ops']))}>")
    assert "resolver.AddUnidirectionalSequenceLSTM();" in printed["op_resolver"]
    assert 0 < printed["largest_failing_bytes"] < printed["arena_bytes"] <= printed["arena_recommended_bytes"]
    assert [p.split("/")[-1] for p in printed["c_sources"]] == ["model_data.cc", "model_data.h", "model_ops.h"]
    assert "g_lstm_arena_bytes = " + str(printed["arena_recommended_bytes"]) in (tmp_path / "mcu/model_data.h").read_text()


def test_a_file_that_is_not_tflite_is_one_error_line(tmp_path, capsys):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a flatbuffer")
    assert facts.main([str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: {bad}: not a TFLite flatbuffer (no TFL3 identifier)\n"
