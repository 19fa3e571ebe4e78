import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import assert_tflite_round_trip, max_abs_diff
from lstm_core import LSTM
from lstm_core.errors import ExportMismatchError
from lstm_core.export import (
    TFLiteModel,
    export_saved_model,
    export_tflite,
    export_tflite_report,
)
from lstm_core.streaming import lstm_step_model

RNG = np.random.default_rng(0)


def stacked_model():
    inp = keras.Input((None, 4))
    x = LSTM(8, return_sequences=True)(inp)
    x = LSTM(6, go_backwards=True)(x)
    return keras.Model(inp, keras.layers.Dense(3)(x))


def text_model():
    inp = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(20, 8, mask_zero=True)(inp)
    x = keras.layers.Bidirectional(LSTM(6))(x)
    return keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(x))


def test_float_export_is_fused_and_matches_at_any_length(tmp_path):
    model = stacked_model()
    report = assert_tflite_round_trip(model, RNG.standard_normal((1, 7, 4)).astype("float32"), tmp_path)
    assert report.max_abs_diff <= 1e-4
    runner = TFLiteModel(tmp_path / "model_float.tflite")
    assert runner.op_names().count("UNIDIRECTIONAL_SEQUENCE_LSTM") == 2
    for steps in (1, 13, 13, 40):  # same length twice: state must not leak between calls
        x = RNG.standard_normal((1, steps, 4)).astype("float32")
        assert max_abs_diff(runner(x), model(x)) <= 1e-4


def test_bidirectional_embedding_model_float_and_int8(tmp_path):
    model = text_model()
    ids = RNG.integers(1, 20, (1, 9)).astype("int32")
    assert_tflite_round_trip(model, ids, tmp_path)

    def rep():
        return ([RNG.integers(1, 20, (1, 9)).astype("int32")] for _ in range(30))

    report = assert_tflite_round_trip(model, ids, tmp_path, quantization="int8", representative=rep)
    assert report.max_abs_diff < 0.1
    details = TFLiteModel(tmp_path / "model_int8.tflite").output_details
    assert next(iter(details.values()))["dtype"] == np.int8


def test_int8_float_inputs_become_int8(tmp_path):
    model = stacked_model()

    def rep():
        return ([RNG.standard_normal((1, 10, 4)).astype("float32")] for _ in range(30))

    path = export_tflite(model, tmp_path / "q.tflite", quantization="int8", representative_dataset=rep)
    runner = TFLiteModel(path)
    assert next(iter(runner.input_details.values()))["dtype"] == np.int8
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in runner.op_names()


def test_dynamic_quantization(tmp_path):
    model = stacked_model()
    report = export_tflite_report(model, tmp_path / "d.tflite", quantization="dynamic")
    assert report.size_bytes > 0 and "UNIDIRECTIONAL_SEQUENCE_LSTM" in report.ops


def test_int8_needs_representative_data(tmp_path):
    with pytest.raises(ValueError, match="representative"):
        export_tflite(stacked_model(), tmp_path / "x.tflite", quantization="int8")


def test_mismatch_writes_nothing(tmp_path):
    with pytest.raises(ExportMismatchError, match="differs"):
        export_tflite(stacked_model(), tmp_path / "bad.tflite", atol=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_model_needing_cell_state_is_refused(tmp_path):
    inp = keras.Input((None, 4))
    _, h, c = LSTM(5, return_state=True)(inp)
    model = keras.Model(inp, keras.layers.Concatenate()([h, c]))
    with pytest.raises(ExportMismatchError, match="WHILE"):
        export_tflite(model, tmp_path / "state.tflite")
    assert not (tmp_path / "state.tflite").exists()


def test_saved_model_serves_same_outputs(tmp_path):
    model = text_model()
    path = export_saved_model(model, tmp_path / "sm")
    loaded = tf.saved_model.load(str(path))
    ids = RNG.integers(1, 20, (4, 9)).astype("int32")
    ids[0, 5:] = 0  # padded rows keep their mask semantics in the SavedModel
    out = loaded.signatures["serving_default"](input_0=tf.constant(ids))["output_0"]
    np.testing.assert_allclose(out, model(ids), atol=1e-5)


def test_streaming_step_model_reproduces_sequence(tmp_path):
    inp = keras.Input((None, 4))
    layer = LSTM(6, return_sequences=True)
    model = keras.Model(inp, layer(inp))
    step = lstm_step_model(layer, input_dim=4)
    path = export_tflite(step, tmp_path / "step.tflite", require_fused=False)
    runner = TFLiteModel(path)
    assert not {"WHILE", "CUSTOM"} & set(runner.op_names())
    x = RNG.standard_normal((1, 12, 4)).astype("float32")
    h = c = np.zeros((1, 6), "float32")
    outs = []
    for t in range(12):
        out, h, c = runner(x[:, t], h, c)
        outs.append(out)
    np.testing.assert_allclose(np.stack(outs, 1), model(x), atol=1e-5)


def test_tflm_require_refuses_a_model_tflm_cannot_run(tmp_path):
    model = stacked_model()  # variable-length input: TFLM has no resize
    with pytest.raises(ExportMismatchError, match="does not run on TFLM.*dynamic input shape"):
        export_tflite_report(model, tmp_path / "var.tflite", tflm="require")
    assert list(tmp_path.iterdir()) == []
    report = export_tflite_report(model, tmp_path / "var.tflite", tflm=True)
    assert report.tflm["loads"] is False and (tmp_path / "var.tflite").exists()
    import json

    assert json.loads(json.dumps(report.as_dict()))["tflm"]["reason"].startswith("dynamic input shape")
