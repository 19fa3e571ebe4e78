"""Data pipeline: CSV/Jena/statsmodels parsing, cleaning, errors, season, split, scaling, windows."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from forecast_toy import seasonal_series, write_jena_csv, write_monthly_csv
from lstm_core.cli import main
from lstm_core.errors import UserError
from tasks.forecasting import data as D


def cfg(path, **kw):
    return D.DataConfig(data=str(path), **kw)


def run_cli(capsys, *argv):
    code = main(["forecasting", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, *needles):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lstm-suite: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# ----------------------------------------------------------------------------- CSV
def test_csv_with_time_column_and_covariate(monthly_csv):
    s = D.load_series(cfg(monthly_csv, target="sales", features=["temp"]))
    assert s.target == "sales" and s.features == ["temp"] and s.time_col == "date"
    assert s.freq == "MS" and len(s) == 240
    raw = pd.read_csv(monthly_csv)
    np.testing.assert_allclose(s.values, raw[["sales", "temp"]].to_numpy())
    assert [D.format_time(t) for t in s.future_index(2)] == ["2010-01-01", "2010-02-01"]


def test_single_value_column_is_the_default_target_and_row_numbers_are_time(tmp_path):
    path = tmp_path / "y.csv"
    path.write_text("value\n" + "\n".join(str(v) for v in seasonal_series(50)) + "\n")
    s = D.load_series(cfg(path))
    assert s.target == "value" and s.freq is None and s.step == 1.0
    assert s.future_index(2) == [50.0, 51.0]


def test_semicolon_separator_and_explicit_time_column(tmp_path):
    path = tmp_path / "semi.csv"
    rows = [f"{2000 + i};{v:.3f};x" for i, v in enumerate(seasonal_series(30))]
    path.write_text("yr;level;note\n" + "\n".join(rows) + "\n")
    s = D.load_series(cfg(path, target="level", time_col="yr"))
    assert s.step == 1.0 and s.index[0] == 2000.0 and s.features == []


def test_jena_format_fills_missing_timestamps_and_drops_duplicates(jena_csv, caplog):
    with caplog.at_level(logging.WARNING, logger="tasks.forecasting.data"):
        s = D.load_series(cfg(jena_csv, target="T (degC)", features=["p (mbar)"]))
    assert s.time_col == "Date Time" and s.freq == "10min"
    assert s.index[0] == pd.Timestamp("2009-01-01 00:10:00")
    assert len(s) == 2 * 144 * 3  # the 2 dropped rows are back, the duplicate is gone
    assert not np.isnan(s.values).any()
    text = caplog.text
    assert "inserted 2 missing timestamps" in text and "repeated timestamp" in text
    raw = pd.read_csv(jena_csv)
    # the inserted rows are linear interpolations of their neighbours
    before, after = raw["T (degC)"].iloc[4], raw["T (degC)"].iloc[5]
    np.testing.assert_allclose(s.y[5:7], before + (after - before) * np.array([1, 2]) / 3, atol=1e-9)
    assert D.calendar_season(s.freq) == 144


def test_jena_resample_to_hourly(jena_csv):
    s = D.load_series(cfg(jena_csv, target="T (degC)", resample="1h"))
    assert s.freq == "h" and len(s) == 2 * 144 * 3 // 6 + 1  # 00:10 .. 23:50 six days later
    assert D.calendar_season(s.freq) == 24 and D.default_horizon(s.freq) == 48


def test_on_missing_fail_names_the_timestamp(jena_csv):
    with pytest.raises(UserError, match=r"timestamps missing .*first 2009-01-01 01:00:00"):
        D.load_series(cfg(jena_csv, target="T (degC)", on_missing="fail"))


def test_on_missing_fail_names_column_and_row(tmp_path):
    path = write_jena_csv(tmp_path / "j.csv", n=300, blank=(10, "T (degC)"))
    with pytest.raises(UserError) as err:
        D.load_series(cfg(path, target="T (degC)", on_missing="fail"))
    msg = str(err.value)
    assert "'T (degC)'" in msg and "row 11" in msg and "line 12" in msg
    s = D.load_series(cfg(path, target="T (degC)"))  # interpolate is the default
    assert not np.isnan(s.y).any()


def test_non_numeric_target_names_column_row_and_value(tmp_path, capsys):
    path = write_monthly_csv(tmp_path / "bad.csv", n=60)
    lines = path.read_text().splitlines()
    parts = lines[7].split(",")
    parts[1] = "twelve"
    lines[7] = ",".join(parts)
    path.write_text("\n".join(lines) + "\n")
    code, _, err = run_cli(capsys, "train", "--data", path, "--target", "sales", "--out", tmp_path / "m")
    assert_one_line_error(code, err, "'sales'", "row 7", "line 8", "'twelve'", "not a number")
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.partial").exists()


def test_unknown_columns(monthly_csv, capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--data", monthly_csv, "--target", "profit", "--out", tmp_path / "m")
    assert_one_line_error(code, err, "unknown target column 'profit'", "date, sales, temp")
    code, _, err = run_cli(capsys, "train", "--data", monthly_csv, "--target", "sales", "--features", "rain",
                           "--out", tmp_path / "m")
    assert_one_line_error(code, err, "unknown feature column 'rain'")
    code, _, err = run_cli(capsys, "train", "--data", monthly_csv, "--target", "sales", "--time-col", "when",
                           "--out", tmp_path / "m")
    assert_one_line_error(code, err, "unknown time column 'when'")


def test_too_short_series_names_column_and_rows(tmp_path, capsys):
    path = write_monthly_csv(tmp_path / "short.csv", n=40)
    code, _, err = run_cli(capsys, "train", "--data", path, "--target", "sales", "--out", tmp_path / "m")
    assert_one_line_error(code, err, "'sales' is too short", "40 rows", "horizon 18", "need about")


def test_bad_timestamp_and_missing_file(tmp_path, capsys):
    path = write_monthly_csv(tmp_path / "t.csv", n=60)
    text = path.read_text().replace("1991-03-01", "1991-13-45")
    path.write_text(text)
    code, _, err = run_cli(capsys, "train", "--data", path, "--target", "sales", "--out", tmp_path / "m")
    assert_one_line_error(code, err, "'date'", "row 15", "line 16", "'1991-13-45'", "not a date/time")
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "nope.csv", "--out", tmp_path / "m")
    assert_one_line_error(code, err, "nope.csv: no such file")
    code, _, err = run_cli(capsys, "train", "--data", "statsmodels:nosuch", "--out", tmp_path / "m")
    assert_one_line_error(code, err, "unknown dataset", "statsmodels:co2")


def test_transform_needs_positive_values(tmp_path):
    path = tmp_path / "neg.csv"
    path.write_text("y\n" + "\n".join(["1", "2", "-3"] + ["4"] * 30) + "\n")
    s = D.load_series(cfg(path))
    with pytest.raises(UserError, match=r"'y', row 3 \(line 4.*-3.*--transform log"):
        D.Scaler.fit(s, 20, "log")


# ----------------------------------------------------------------------------- statsmodels
def test_statsmodels_co2_is_weekly_with_yearly_season():
    s = D.load_series(D.DataConfig(data="statsmodels:co2"))
    assert s.target == "co2" and s.freq == "W-SAT" and not np.isnan(s.y).any()
    split = D.Split.of(len(s), 0.2, 0.1)
    assert D.detect_season(s.y[: split.train_end], s.freq) == (52, "frequency")
    assert D.default_horizon(s.freq) == 13


def test_statsmodels_sunspots_season_from_the_acf():
    s = D.load_series(D.DataConfig(data="statsmodels:sunspots"))
    assert s.target == "SUNACTIVITY" and s.default_transform == "sqrt" and s.freq.startswith("YS")
    split = D.Split.of(len(s), 0.2, 0.1)
    assert D.detect_season(s.y[: split.train_end], s.freq) == (11, "acf")
    assert D.default_horizon(s.freq) == 6


@pytest.mark.parametrize("name", ["nile", "elnino", "macrodata"])
def test_other_statsmodels_series_load(name):
    s = D.load_series(D.DataConfig(data=f"statsmodels:{name}"))
    assert len(s) > 50 and isinstance(s.index, pd.DatetimeIndex) and s.freq
    assert len(s.future_index(3)) == 3


def test_season_detection_without_a_calendar():
    y = seasonal_series(300, period=7, trend=0.0)
    assert D.detect_season(y, None) == (7, "acf")
    rng = np.random.default_rng(1)
    assert D.detect_season(rng.normal(size=300), None)[0] == 1


# ----------------------------------------------------------------------------- split, scaler, windows
def test_split_origins_keep_targets_inside_their_part():
    split = D.Split.of(100, 0.2, 0.1)
    assert (split.train_end, split.val_end) == (70, 80)
    L, H = 10, 5
    assert split.origins("train", L, H) == (11, 65)
    assert split.origins("val", L, H) == (70, 75)
    assert split.origins("test", L, H) == (80, 95)


def test_scaler_is_fit_on_the_training_rows_only(monthly_csv):
    s = D.load_series(cfg(monthly_csv, target="sales", features=["temp"]))
    a = D.Scaler.fit(s, 150, "none")
    s.values[150:] *= 100.0
    b = D.Scaler.fit(s, 150, "none")
    assert a == b
    assert a.diff_scale == pytest.approx(np.std(np.diff(s.y[:150])))
    assert a.feature_mean == pytest.approx([np.mean(s.values[:150, 1])])


@pytest.mark.parametrize("transform", D.TRANSFORMS)
def test_zero_change_forecasts_the_last_value(monthly_csv, transform):
    s = D.load_series(cfg(monthly_csv, target="sales"))
    sc = D.Scaler.fit(s, 150, transform)
    level = sc.level(s.y)
    np.testing.assert_allclose(sc.forecast(np.zeros((5, 3)), level[:5]), np.repeat(s.y[:5, None], 3, 1), rtol=1e-12)
    np.testing.assert_allclose(sc.inverse_level(level), s.y, rtol=1e-12)


def test_windows_are_differences_in_and_level_changes_out(monthly_csv):
    s = D.load_series(cfg(monthly_csv, target="sales", features=["temp"]))
    sc = D.Scaler.fit(s, 150, "sqrt")
    feats, level = sc.features(s.values), sc.level(s.y)
    L, H = 12, 4
    x, y = D.window_arrays(feats, level, 20, 60, L, H)
    assert x.shape == (41, L, 2) and y.shape == (41, H)
    for i, t in enumerate((20, 33, 60)):
        k = t - 20
        ty = np.sqrt(s.y)
        np.testing.assert_allclose(x[k, :, 0], (ty[t - L : t] - ty[t - L - 1 : t - 1]) / sc.diff_scale, rtol=1e-5)
        np.testing.assert_allclose(x[k, :, 1], (s.values[t - L : t, 1] - sc.feature_mean[0]) / sc.feature_std[0], rtol=1e-5)
        np.testing.assert_allclose(y[k], level[t : t + H] - level[t - 1], atol=1e-5)


def test_default_lookback():
    assert D.default_lookback(52, 13, 1600) == 104
    assert D.default_lookback(11, 6, 216) == 22
    assert D.default_lookback(1, 6, 1000) == 16
    assert D.default_lookback(144, 36, 300) == 66  # capped by the training rows
