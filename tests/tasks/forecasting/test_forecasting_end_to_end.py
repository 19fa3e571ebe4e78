"""Tiny end-to-end runs: train -> export -> LiteRT/TFLM forecasts equal Keras -> evaluate -> predict.

One monthly series with a covariate, quantiles and 2 members (no calendar inputs, ``--hybrid
off``: int8, TFLM and streaming), the default hybrid model on a short monthly series (float
exports carry the normalisation, Theta and the mix), and one hourly series with two seasons
(calendar and seasonal-lag inputs through every export).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from forecast_toy import write_monthly_csv
from tasks.common.cli import main
from tasks.common.config import EVALUATE_KEYS
from lstm_core.export import TFLiteModel
from tasks.forecasting.artifacts import ForecastingModelDir
from tasks.forecasting.data import encoder_features, load_series, model_rows, window_arrays
from tasks.forecasting.model import stream_window
from helpers import last_json, quiet_cli


@pytest.fixture(scope="module")
def series_csv(tmp_path_factory):
    return write_monthly_csv(tmp_path_factory.mktemp("fc") / "sales.csv", n=160)


@pytest.fixture(scope="module")
def trained(series_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("fc_model") / "model"
    argv = ["forecasting", "train", "--data", str(series_csv), "--target", "sales", "--features", "temp",
            "--horizon", "4", "--lookback", "12", "--units", "6", "--hidden", "8", "--quantiles", "0.1,0.9",
            "--ensemble", "2", "--epochs", "2", "--hybrid", "off", "--out", str(out)]
    assert f"model written to {out}" in quiet_cli(*argv).stdout  # default verbosity: no TF/LiteRT line (issue 27)
    return out


@pytest.fixture(scope="module")
def exported(trained):
    printed = quiet_cli("forecasting", "export", "--model", str(trained), "--check-windows", "6",
                        "--calibration-examples", "20", "--stream-check-windows", "2").stdout
    report = json.loads((trained / "export" / "export_report.json").read_text())
    assert [row["file"] for row in report["verdicts"]] == ["model_float.tflite", "model_int8.tflite",
                                                           "streaming_float.tflite"]
    for row in report["verdicts"]:  # per file a line: size, distance from Keras in MASE, ok/WARNING
        line = next(line for line in printed.splitlines() if line.strip().startswith(row["file"] + " "))
        assert " KB " in line and row["verdict"] in line
    mase = report["vs_keras_on_check_windows"]["int8"]["mean_abs_diff_mase"]
    assert report["verdicts"][1]["checks"][0]["value"] == mase and "MASE" in printed
    assert report["verdicts"][1]["verdict"] == ("ok" if mase <= 0.02 else "WARNING")
    return trained / "export"


def test_train_writes_the_model_directory(trained):
    for name in ("model.keras", "config.json", "scaler.json", "train_report.json"):
        assert (trained / name).is_file(), name
    assert list((trained / "logs").rglob("events.out.tfevents*"))
    md = ForecastingModelDir.open(trained).check_trained()
    assert md.model.lookback == 12 and md.model.horizon == 4 and md.model.num_features == 2
    assert md.model.quantiles == (0.1, 0.5, 0.9) and md.model.ensemble == 2 and md.model.future_features == ()
    assert md.series["seasons"] == [12] and md.series["freq"] == "MS" and md.model.seasons == (12,)
    assert md.series["test_rows"] == 32 and md.data.features == ("temp",)
    report = json.loads((trained / "train_report.json").read_text())
    assert report["epochs_run"] == 2 and report["best_epoch"] in (1, 2) and "val_mase" in report


def test_export_litert_forecasts_equal_keras(exported, trained, series_csv):
    report = json.loads((exported / "export_report.json").read_text())
    for key in ("tflite_float", "tflite_int8"):
        assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in report[key]["ops"]
        assert not {"WHILE", "CUSTOM"} & set(report[key]["ops"])
    md = ForecastingModelDir.open(trained).check_trained()
    model = md.keras_model()
    s = load_series(md.data)
    feats = encoder_features(s, md.scaler, md.model, None)
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
    md = ForecastingModelDir.open(trained).check_trained()
    s = load_series(md.data)
    loaded = tf.saved_model.load(str(exported / "saved_model"))
    t = 90
    out = loaded.signatures["forecast"](
        history=tf.constant(s.y[None, t - 13 : t], tf.float32),
        covariates=tf.constant(s.values[None, t - 13 : t, 1:], tf.float32),
    )
    keras_out = md.keras_model().predict(encoder_features(s, md.scaler, md.model, None)[None, t - 12 : t], verbose=0)
    expected = md.scaler.forecast(np.sort(keras_out, -1), md.scaler.level(s.y[t - 1 : t]))
    np.testing.assert_allclose(out["quantiles"].numpy(), expected, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(out["forecast"].numpy(), expected[..., 1], rtol=1e-4, atol=1e-3)
    prep = json.loads((exported / "preprocessing.json").read_text())
    assert prep["lookback"] == 12 and prep["covariates"] == ["temp"] and prep["streaming_state_size"] == 12


@pytest.mark.parametrize("runtime", ["tflite", "tflite-int8", "tflm"])
def test_evaluate_runtimes(exported, trained, runtime, capsys):
    result = last_json(quiet_cli("forecasting", "evaluate", "--model", str(trained), "--runtime", runtime).stdout)
    assert list(result)[: len(EVALUATE_KEYS)] == list(EVALUATE_KEYS)
    for key in ("mae", "rmse", "smape", "mase", "last_value_mase", "seasonal_naive_mase", "auto_ets_mase",
                "auto_theta_mase", "mstl_mase", "auto_arima_mase", "interval_coverage", "mase_by_step"):
        assert key in result, key
    assert result["examples"] == 32 - 4 + 1 and len(result["mase_by_step"]) == 4
    assert result["plot"] == str(trained / "eval" / f"forecast_{runtime}.png")
    assert (trained / "eval" / f"forecast_{runtime}.png").read_bytes()[:4] == b"\x89PNG"
    assert list((trained / "baselines").glob("mstl-*.npz"))  # cached for the next call
    assert main(["-q", "forecasting", "evaluate", "--model", str(trained), "--baselines", "seasonal_naive"]) == 0
    keras = last_json(capsys.readouterr().out)
    assert keras["seasonal_naive_mase"] == result["seasonal_naive_mase"] and "mstl_mase" not in keras
    tolerance = {"tflite": 1e-4, "tflite-int8": 0.2, "tflm": 0.2}[runtime]
    assert result["mae"] == pytest.approx(keras["mae"], rel=tolerance)


def test_export_report_has_hashes_and_tflm_sections(exported):
    report = json.loads((exported / "export_report.json").read_text())
    assert set(report["sha256"]) >= {"model_float.tflite", "model_int8.tflite", "streaming_float.tflite"}
    assert report["tflm"]["int8"]["loads"] and report["tflm"]["int8"]["arena_bytes"] > 0
    assert (exported / "mcu" / "model_data.cc").is_file()


def test_damaged_tflite_is_refused_with_the_sha256_line(exported, trained, capsys, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    target = copy / "export" / "model_int8.tflite"
    data = bytearray(target.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 200] = bytes(200)
    target.write_bytes(bytes(data))
    assert main(["forecasting", "evaluate", "--model", str(copy), "--runtime", "tflite-int8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sha256 mismatch" in err[0] and "model_int8.tflite" in err[0]


def test_evaluate_keras_and_predict(trained, series_csv, capsys, tmp_path):
    assert main(["-q", "forecasting", "evaluate", "--model", str(trained), "--stride", "2", "--baselines",
                 "seasonal_naive,auto_ets", "--out", str(tmp_path / "ev")]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["runtime"] == "keras" and result["examples"] == 15 and "mstl_mase" not in result
    assert result["plot"] == str(tmp_path / "ev" / "forecast_keras.png")
    out_csv = tmp_path / "next.csv"
    lines = quiet_cli("forecasting", "predict", "--model", str(trained), "--output", str(out_csv)).stdout.strip().splitlines()
    assert lines[0] == "date,sales,sales_q0.1,sales_q0.5,sales_q0.9"
    assert [line.split(",")[0] for line in lines[1:]] == ["2003-05-01", "2003-06-01", "2003-07-01", "2003-08-01"]
    values = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    assert np.all(values[:, 1] <= values[:, 2]) and np.all(values[:, 2] <= values[:, 3])
    np.testing.assert_allclose(values[:, 0], values[:, 2])
    assert out_csv.read_text().strip().splitlines() == lines


@pytest.mark.parametrize("flag", ["--horizon", "--lookback"])
def test_horizon_and_lookback_zero_are_errors(flag, tmp_path, capsys):
    assert main(["forecasting", "train", "--data", "statsmodels:co2", flag, "0", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{flag}: expected an integer >= 1, got 0" in err[0]


def test_constant_series_warns(tmp_path, capsys):
    path = tmp_path / "flat.csv"
    path.write_text("y\n" + "\n".join(["5"] * 120) + "\n")
    assert main(["-q", "forecasting", "train", "--data", str(path), "--horizon", "3", "--lookback", "8",
                 "--units", "2", "--hidden", "0", "--ensemble", "1", "--epochs", "1", "--progress", "none",
                 "--out", str(tmp_path / "m")]) == 0
    err = capsys.readouterr().err
    assert "is constant over the 84 training rows" in err and "MASE" in err
    assert ForecastingModelDir.open(tmp_path / "m").check_trained().seasons == (1,)  # no season, saved and read back
    assert main(["forecasting", "evaluate", "--model", str(tmp_path / "m"), "--baselines", "seasonal_naive"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "constant before the test part" in err[0]


# ----------------------------------------------------------------------------- hourly, two seasons
@pytest.fixture(scope="module")
def hourly(tmp_path_factory):
    import pandas as pd

    folder = tmp_path_factory.mktemp("hourly")
    n = 24 * 7 * 5
    t = np.arange(n)
    rng = np.random.default_rng(0)
    y = 100 + 10 * np.sin(2 * np.pi * t / 24) + 8 * (t % 168 >= 120) + rng.normal(0, 1, n)
    times = pd.date_range("2021-01-04", periods=n, freq="h")
    path = folder / "load.csv"
    pd.DataFrame({"Datetime": times.strftime("%d-%m-%Y %H:%M"), "MW": y.round(3)}).to_csv(path, index=False)
    out = folder / "model"
    assert main(["-q", "forecasting", "train", "--data", str(path), "--horizon", "6", "--units", "4", "--hidden", "8",
                 "--ensemble", "1", "--epochs", "1", "--steps-per-epoch", "5", "--country", "US",
                 "--out", str(out)]) == 0
    return out


def test_tflite_runtime_before_export_is_a_clear_error(hourly, capsys):
    if (hourly / "export").exists():
        pytest.skip("the hourly model was exported by an earlier test")
    capsys.readouterr()
    assert main(["forecasting", "predict", "--model", str(hourly), "--runtime", "tflite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lstm-suite forecasting export --model" in err[0]


@pytest.fixture(scope="module")
def hourly_exported(hourly):
    assert main(["-q", "forecasting", "export", "--model", str(hourly), "--check-windows", "4",
                 "--calibration-examples", "16", "--stream-check-windows", "1", "--quantization", "float,int16x8"]) == 0
    return hourly


def test_hourly_model_uses_both_seasons_and_future_inputs_through_the_exports(hourly_exported):
    hourly = hourly_exported
    md = ForecastingModelDir.open(hourly).check_trained()
    assert md.model.seasons == (24, 168) and md.model.lags == (24, 168)
    assert md.model.row_calendar[:2] == ("hour_sin", "hour_cos") and "holiday" in md.model.row_calendar
    assert md.model.future_features[-2:] == ("lag_24", "lag_168")
    series = load_series(md.data)
    rows = model_rows(series, md.scaler, md.model, md.data.country)
    origins = np.array([400, len(series) - 6])
    (window, future), _ = window_arrays(rows, origins, md.model)
    expected = md.keras_model().predict([window, future], verbose=0)
    runner = TFLiteModel(hourly / "export" / "model_float.tflite")
    stream = TFLiteModel(hourly / "export" / "streaming_float.tflite")
    for i in range(len(origins)):
        np.testing.assert_allclose(runner(window[i : i + 1], future[i : i + 1])[0][0], expected[i], atol=1e-4)
        streamed, _ = stream_window(stream, window[i], md.model, future=future[i])
        np.testing.assert_allclose(streamed[0], expected[i], atol=1e-4)
    prep = json.loads((hourly / "export" / "preprocessing.json").read_text())
    assert prep["future_features"] == list(md.model.future_features)
    report = json.loads((hourly / "export" / "export_report.json").read_text())
    assert report["tflm"]["float"]["loads"] and report["tflm"]["int16x8"]["loads"]
    assert report["vs_keras_on_check_windows"]["int16x8"]["runtime"] == "tflm"
    assert report["vs_keras_on_check_windows"]["int16x8"]["max_abs_diff_scaled"] < 0.1


def test_hourly_predict_continues_the_calendar(hourly, capsys):
    assert main(["-q", "forecasting", "predict", "--model", str(hourly)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "Datetime,MW" and len(lines) == 7
    assert lines[1].startswith("2021-02-08 00:00")


def test_predict_id_on_a_single_series_model_is_one_line(trained, capsys):
    capsys.readouterr()
    assert main(["forecasting", "predict", "--model", str(trained), "--id", "north"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--id north" in err[0] and "no --id-col" in err[0], err


# ----------------------------------------------------------------------------- the default hybrid model
@pytest.fixture(scope="module")
def hybrid_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hybrid")
    path = write_monthly_csv(folder / "short.csv", n=150, seed=3)
    out = folder / "model"
    assert main(["-q", "forecasting", "train", "--data", str(path), "--target", "sales", "--units", "4",
                 "--hidden", "8", "--ensemble", "1", "--epochs", "2", "--combine", "best", "--out", str(out)]) == 0
    return out


def test_hybrid_is_the_default_and_train_picks_a_mix_on_validation(hybrid_model):
    md = ForecastingModelDir.open(hybrid_model).check_trained()
    assert md.model.hybrid == "on" and md.data.scale == "mase" and md.model.horizon == 18
    # the statistics see 72 rows, the LSTM the last 36; a short series: padded windows (one real season)
    assert md.model.lookback == 72 and md.model.encoder_steps == 36 and md.model.min_history == 12
    report = json.loads((hybrid_model / "train_report.json").read_text())
    mixes = {name: report[f"val_{name}_mase"] for name in ("lstm", "theta", "seasonal_naive", "mean_theta")}
    assert report["member"] == min(mixes, key=mixes.get) and report["val_mase"] == mixes[report["member"]]
    for name in ("seasonal_naive", "auto_ets", "auto_theta"):
        assert np.isfinite(report[f"val_baseline_{name}_mase"])
    assert report["val_seasonal_naive_mase"] == pytest.approx(report["val_baseline_seasonal_naive_mase"], rel=1e-4)


def test_hybrid_float_export_carries_the_model_and_says_what_it_skips(hybrid_model, capsys):
    assert main(["-q", "forecasting", "export", "--model", str(hybrid_model), "--check-windows", "4",
                 "--calibration-examples", "8"]) == 0
    report = json.loads((hybrid_model / "export" / "export_report.json").read_text())
    assert set(report["skipped"]) == {"int8", "streaming"}
    assert report["vs_keras_on_check_windows"]["float"]["max_abs_diff_scaled"] < 1e-3
    assert report["tflm"]["float"]["loads"]
    assert main(["-q", "forecasting", "evaluate", "--model", str(hybrid_model), "--runtime", "tflite",
                 "--baselines", "seasonal_naive"]) == 0
    tflite = last_json(capsys.readouterr().out)
    assert main(["-q", "forecasting", "evaluate", "--model", str(hybrid_model), "--baselines", "seasonal_naive"]) == 0
    keras = last_json(capsys.readouterr().out)
    assert tflite["mase"] == pytest.approx(keras["mase"], rel=1e-4)
    md = ForecastingModelDir.open(hybrid_model).check_trained()
    s = load_series(md.data)
    loaded = tf.saved_model.load(str(hybrid_model / "export" / "saved_model"))
    t = len(s) - 18
    history = s.y[None, t - md.model.lookback - 1 : t]
    got = loaded.signatures["forecast"](history=tf.constant(history, tf.float32))["forecast"].numpy()
    rows = model_rows(s, md.scaler, md.model, None)
    window, _ = window_arrays(rows, np.array([t]), md.model)
    expected = md.scaler.forecast(md.keras_model().predict(window, verbose=0), md.scaler.level(s.y[t - 1 : t]))
    np.testing.assert_allclose(got, expected, rtol=1e-4)
