"""Tiny end-to-end run on a short synthetic series: train -> export -> LiteRT forecasts equal Keras."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from forecast_toy import write_monthly_csv
from lstm_core.cli import main
from lstm_core.export import TFLiteModel
from tasks.forecasting.artifacts import open_model_dir
from tasks.forecasting.data import load_series
from tasks.forecasting.model import stream_window


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def series_csv(tmp_path_factory):
    return write_monthly_csv(tmp_path_factory.mktemp("fc") / "sales.csv", n=160)


@pytest.fixture(scope="module")
def trained(series_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("fc_model") / "model"
    argv = ["-q", "forecasting", "train", "--data", str(series_csv), "--target", "sales", "--features", "temp",
            "--horizon", "4", "--lookback", "12", "--units", "6", "--hidden", "8", "--quantiles", "0.1,0.9",
            "--ensemble", "2", "--epochs", "2", "--out", str(out)]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def exported(trained):
    assert main(["-q", "forecasting", "export", "--model", str(trained), "--check-windows", "6",
                 "--calibration-windows", "20", "--stream-check-windows", "2"]) == 0
    return trained / "export"


def test_train_writes_the_model_directory(trained):
    for name in ("model.keras", "config.json", "scaler.json", "train_summary.json"):
        assert (trained / name).is_file(), name
    assert list((trained / "logs").rglob("events.out.tfevents*"))
    md = open_model_dir(trained)
    assert md.model.lookback == 12 and md.model.horizon == 4 and md.model.num_features == 2
    assert md.model.quantiles == [0.1, 0.5, 0.9] and md.model.ensemble == 2
    assert md.series["season"] == 12 and md.series["freq"] == "MS"
    assert md.series["test_rows"] == 32 and md.data.features == ["temp"]


def test_export_litert_forecasts_equal_keras(exported, trained, series_csv):
    report = json.loads((exported / "export_report.json").read_text())
    for key in ("tflite_float", "tflite_int8"):
        assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in report[key]["ops"]
        assert not {"WHILE", "CUSTOM"} & set(report[key]["ops"])
    md = open_model_dir(trained)
    model = md.keras_model()
    s = load_series(md.data)
    feats = md.scaler.features(s.values)
    windows = np.stack([feats[t - 12 : t] for t in (20, 77, len(s) - 4)])
    keras_out = model.predict(windows, verbose=0)
    float_runner = TFLiteModel(exported / "model_float.tflite")
    int8_runner = TFLiteModel(exported / "model_int8.tflite")
    assert float_runner.interpreter.get_input_details()[0]["shape"].tolist() == [1, 12, 2]
    for w, expected in zip(windows, keras_out):
        np.testing.assert_allclose(float_runner(w[None])[0][0], expected, atol=1e-4)
        # int8: same forecast up to quantisation (outputs are changes of the scaled level)
        assert np.max(np.abs(int8_runner(w[None])[0][0] - expected)) < 0.25
    # streaming LiteRT model, stepped over a window = the window model
    stream = TFLiteModel(exported / "streaming_float.tflite")
    got, state = stream_window(stream, windows[1], md.model)
    np.testing.assert_allclose(got[0], keras_out[1], atol=1e-4)
    assert state[0].shape == (1, 6 * 2)
    assert report["streaming"]["tflite_max_abs_diff_vs_window_model"] < 1e-4


def test_saved_model_forecast_signature_takes_raw_values(exported, trained):
    md = open_model_dir(trained)
    s = load_series(md.data)
    loaded = tf.saved_model.load(str(exported / "saved_model"))
    t = 90
    out = loaded.signatures["forecast"](
        history=tf.constant(s.y[None, t - 13 : t], tf.float32),
        covariates=tf.constant(s.values[None, t - 13 : t, 1:], tf.float32),
    )
    keras_out = md.keras_model().predict(md.scaler.features(s.values)[None, t - 12 : t], verbose=0)
    expected = md.scaler.forecast(np.sort(keras_out, -1), md.scaler.level(s.y[t - 1 : t]))
    np.testing.assert_allclose(out["quantiles"].numpy(), expected, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(out["forecast"].numpy(), expected[..., 1], rtol=1e-4, atol=1e-3)
    prep = json.loads((exported / "preprocessing.json").read_text())
    assert prep["lookback"] == 12 and prep["covariates"] == ["temp"] and prep["streaming_state_size"] == 12


@pytest.mark.parametrize("runtime", ["tflite", "tflite-int8"])
def test_evaluate_runtimes(exported, trained, runtime, capsys):
    assert main(["-q", "forecasting", "evaluate", "--model", str(trained), "--runtime", runtime]) == 0
    result = _last_json(capsys.readouterr().out)
    for key in ("mae", "rmse", "smape", "mase", "last_value_mase", "seasonal_naive_mase", "ets_mase",
                "interval_coverage", "mase_by_step"):
        assert key in result, key
    assert result["origins"] == 32 - 4 + 1 and len(result["mase_by_step"]) == 4
    assert (trained / "evaluation" / f"forecast_{runtime}.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["-q", "forecasting", "evaluate", "--model", str(trained), "--no-ets"]) == 0
    keras = _last_json(capsys.readouterr().out)
    assert keras["seasonal_naive_mase"] == result["seasonal_naive_mase"]
    assert result["mae"] == pytest.approx(keras["mae"], rel=1e-4 if runtime == "tflite" else 0.2)


def test_evaluate_keras_and_predict(trained, series_csv, capsys, tmp_path):
    assert main(["-q", "forecasting", "evaluate", "--model", str(trained), "--stride", "2", "--no-ets"]) == 0
    result = _last_json(capsys.readouterr().out)
    assert result["runtime"] == "keras" and result["origins"] == 15 and "ets_mase" not in result
    out_csv = tmp_path / "next.csv"
    assert main(["-q", "forecasting", "predict", "--model", str(trained), "--output", str(out_csv)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "date,sales,sales_q0.1,sales_q0.5,sales_q0.9"
    assert [l.split(",")[0] for l in lines[1:]] == ["2003-05-01", "2003-06-01", "2003-07-01", "2003-08-01"]
    values = np.array([[float(v) for v in l.split(",")[1:]] for l in lines[1:]])
    assert np.all(values[:, 1] <= values[:, 2]) and np.all(values[:, 2] <= values[:, 3])
    np.testing.assert_allclose(values[:, 0], values[:, 2])
    assert out_csv.read_text().strip().splitlines() == lines


def test_tflite_runtime_before_export_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "m"
    path = write_monthly_csv(tmp_path / "s.csv", n=100)
    assert main(["-q", "forecasting", "train", "--data", str(path), "--target", "sales", "--horizon", "3",
                 "--lookback", "8", "--units", "3", "--hidden", "0", "--ensemble", "1", "--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["forecasting", "predict", "--model", str(out), "--runtime", "tflite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lstm-suite forecasting export --model" in err[0]
