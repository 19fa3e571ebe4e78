"""Global training (``--id-col``): one model over three series of one long-format CSV, each scaled
by its own training rows (its in-sample seasonal-naive MAE: the hybrid is the global default); evaluate per series + aggregate; predict one or every series."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from forecast_toy import seasonal_series
from tasks.common.cli import main
from tasks.forecasting import data as series_data
from tasks.forecasting.artifacts import ForecastingModelDir
from tasks.forecasting.config import DataConfig
from helpers import last_json

# id -> (rows, level multiplier): different lengths and scales 1 .. 1000
SERIES = {"north": (120, 1.0), "south": (100, 30.0), "east": (90, 1000.0)}


def write_panel_csv(path):
    """``month,store,sales`` with the series' rows interleaved and shuffled."""
    frames = []
    for i, (name, (rows, multiplier)) in enumerate(SERIES.items()):
        frames.append(pd.DataFrame({
            "month": pd.date_range("2000-01-01", periods=rows, freq="MS").strftime("%Y-%m-%d"),
            "store": name,
            "sales": (multiplier * seasonal_series(rows, seed=i)).round(4),
        }))
    pd.concat(frames).sample(frac=1.0, random_state=0).to_csv(path, index=False)
    return path


def _one_error_line(code, err, *needles):
    """Exit 2 and exactly one error line, the last one (warnings of the data loading may come before it)."""
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("lstm-suite: error: ")]
    assert code == 2 and len(errors) == 1 and errors[0] == lines[-1] and "Traceback" not in err, err
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


@pytest.fixture(scope="module")
def panel_csv(tmp_path_factory):
    return write_panel_csv(tmp_path_factory.mktemp("panel") / "stores.csv")


@pytest.fixture(scope="module")
def panel_model(panel_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("panel_model") / "model"
    assert main(["-q", "forecasting", "train", "--data", str(panel_csv), "--id-col", "store", "--target", "sales",
                 "--horizon", "4", "--lookback", "12", "--units", "6", "--hidden", "8", "--ensemble", "1",
                 "--epochs", "2", "--out", str(out)]) == 0
    return out


def test_load_panel_splits_sorts_and_names_each_series(panel_csv):
    panel = series_data.load_panel(DataConfig(data=str(panel_csv), id_col="store", target="sales"))
    assert list(panel) == sorted(SERIES, key=lambda name: list(pd.read_csv(panel_csv)["store"]).index(name))
    for name, (rows, multiplier) in SERIES.items():
        series = panel[name]
        assert len(series) == rows and series.freq == "MS" and series.index.is_monotonic_increasing
        assert series.source.endswith(f"[store={name}]")
        np.testing.assert_allclose(series.y, (multiplier * seasonal_series(rows, seed=list(SERIES).index(name))).round(4))


def test_train_scales_every_series_by_its_own_training_rows(panel_model):
    directory = ForecastingModelDir.open(panel_model).check_trained()
    assert directory.is_panel and directory.data.id_col == "store"
    scalers = directory.series_scalers
    assert set(scalers) == set(SERIES)
    panel = series_data.load_panel(directory.data)
    assert directory.model.hybrid == "on" and directory.data.scale == "mase"  # the global default
    for name, scaler in scalers.items():
        split = series_data.Split.of(len(panel[name]), 0.2, 0.1)
        train = panel[name].y[: split.train_end]
        assert scaler.target_scale == pytest.approx(np.mean(np.abs(train[12:] - train[:-12])))  # its MASE scale
    assert scalers["east"].target_scale > 500 * scalers["north"].target_scale
    assert directory.series["reference_id"] == "north" and directory.series["ids"]["east"]["test_rows"] == 18
    report = json.loads((panel_model / "train_report.json").read_text())
    assert directory.model.min_history == 4  # no season fits twice in 12 rows: 4 real rows, 8 padded
    reach = 4 + 1
    expected = sum(max(0, int(rows * 0.7) - 4 - reach + 1) for rows, _ in SERIES.values())
    assert report["series"] == 3 and report["epochs_run"] == 2
    assert abs(report["train_windows"] - expected) <= 3  # rounding of each split


def test_evaluate_reports_per_series_and_aggregate_metrics(panel_model, capsys):
    capsys.readouterr()
    assert main(["forecasting", "evaluate", "--model", str(panel_model), "--baselines", "seasonal_naive"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["series"] == 3 and set(result["per_series"]) == set(SERIES)
    for name, scores in result["per_series"].items():
        for key in ("mase", "mae", "rmse", "smape", "seasonal_naive_mase", "last_value_mase", "examples"):
            assert np.isfinite(scores[key]), (name, key)
    assert result["mase"] == pytest.approx(np.mean([s["mase"] for s in result["per_series"].values()]))
    assert result["seasonal_naive_mase"] == pytest.approx(
        np.mean([s["seasonal_naive_mase"] for s in result["per_series"].values()]))
    # pooled MAE: weighted by each series' forecasts, so dominated by the large-scale series
    examples = {n: s["examples"] for n, s in result["per_series"].items()}
    pooled = sum(result["per_series"][n]["mae"] * examples[n] for n in SERIES) / sum(examples.values())
    assert result["mae"] == pytest.approx(pooled)
    assert result["examples"] == sum(examples.values())
    assert result["best_baseline"] in ("seasonal_naive", "last_value") and result["plot"].endswith(".png")


def test_predict_one_series_or_every_series(panel_model, capsys):
    capsys.readouterr()
    assert main(["forecasting", "predict", "--model", str(panel_model), "--id", "east"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "store,month,sales" and len(lines) == 1 + 4
    assert all(line.startswith("east,") for line in lines[1:])
    first = lines[1].split(",")
    assert first[1] == "2007-07-01" and 9000 < float(first[2]) < 16000  # after 90 months, in east's own scale (~12000)
    assert main(["forecasting", "predict", "--model", str(panel_model)]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[1:]
    assert len(rows) == 3 * 4 and {row.split(",")[0] for row in rows} == set(SERIES)
    code = main(["forecasting", "predict", "--model", str(panel_model), "--id", "west"])
    _one_error_line(code, capsys.readouterr().err, "--id west", "north")


def test_export_of_a_panel_model_is_refused_in_one_line(panel_model, capsys):
    capsys.readouterr()
    code = main(["forecasting", "export", "--model", str(panel_model)])
    _one_error_line(code, capsys.readouterr().err, "--id-col", "single-series")
    assert not (panel_model / "export").exists()


def test_bad_id_column_is_one_line(panel_csv, tmp_path, capsys):
    capsys.readouterr()
    code = main(["forecasting", "train", "--data", str(panel_csv), "--id-col", "shop", "--target", "sales",
                 "--out", str(tmp_path / "m")])
    _one_error_line(code, capsys.readouterr().err, "shop", "store")
    assert not (tmp_path / "m").exists()
    code = main(["forecasting", "train", "--data", "statsmodels:co2", "--id-col", "store", "--out", str(tmp_path / "m")])
    _one_error_line(code, capsys.readouterr().err, "--id-col")


def test_a_series_with_only_a_test_window_is_forecast_by_the_global_model(tmp_path, capsys):
    """M1 monthly has 48-row series (30 of x, 18 of xx): in a panel such a series gives no training or
    validation window but is still forecast and scored (the others train the model)."""
    path = write_panel_csv(tmp_path / "stores.csv")
    short = pd.DataFrame({"month": pd.date_range("2000-01-01", periods=16, freq="MS").strftime("%Y-%m-%d"),
                          "store": "short", "sales": (5 + np.sin(np.arange(16) / 2)).round(4)})
    pd.concat([pd.read_csv(path), short]).to_csv(path, index=False)
    out = tmp_path / "m"
    capsys.readouterr()
    assert main(["-q", "forecasting", "train", "--data", str(path), "--id-col", "store", "--target", "sales",
                 "--horizon", "4", "--lookback", "12", "--test-rows", "4", "--units", "4", "--hidden", "0",
                 "--ensemble", "1", "--epochs", "1", "--out", str(out)]) == 0
    assert main(["-q", "forecasting", "evaluate", "--model", str(out), "--baselines", "seasonal_naive"]) == 0
    result = last_json(capsys.readouterr().out)
    assert np.isfinite(result["per_series"]["short"]["mase"]), result["per_series"]


def test_a_too_short_series_is_named(tmp_path, capsys):
    path = write_panel_csv(tmp_path / "stores.csv")
    frame = pd.read_csv(path)
    tiny = pd.DataFrame({"month": pd.date_range("2000-01-01", periods=10, freq="MS").strftime("%Y-%m-%d"),
                         "store": "tiny", "sales": np.arange(10.0)})
    frame = pd.concat([frame, tiny])
    frame.to_csv(path, index=False)
    capsys.readouterr()
    code = main(["forecasting", "train", "--data", str(path), "--id-col", "store", "--target", "sales",
                 "--horizon", "4", "--lookback", "12", "--out", str(tmp_path / "m")])
    _one_error_line(code, capsys.readouterr().err, "[store=tiny]", "too short")
