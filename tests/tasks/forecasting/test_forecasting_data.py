"""Data pipeline: CSV/Jena/statsmodels parsing, cleaning, errors, season, split, scaling, windows."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from forecast_toy import seasonal_series, write_jena_csv, write_monthly_csv
from helpers import run_cli
from tasks.common.errors import UserError
from tasks.forecasting import data as series_data
from tasks.forecasting.config import TRANSFORMS, DataConfig, ModelConfig


def cfg(path, **kw):
    return DataConfig(data=str(path), **kw)





def assert_one_line_error(result, *needles):
    code, err = result.returncode, result.stderr
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lstm-suite: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# ----------------------------------------------------------------------------- CSV
def test_csv_with_time_column_and_covariate(monthly_csv):
    s = series_data.load_series(cfg(monthly_csv, target="sales", features=["temp"]))
    assert s.target == "sales" and s.features == ["temp"] and s.time_col == "date"
    assert s.freq == "MS" and len(s) == 240
    raw = pd.read_csv(monthly_csv)
    np.testing.assert_allclose(s.values, raw[["sales", "temp"]].to_numpy())
    assert [series_data.format_time(t) for t in s.future_index(2)] == ["2010-01-01", "2010-02-01"]


def test_single_value_column_is_the_default_target_and_row_numbers_are_time(tmp_path):
    path = tmp_path / "y.csv"
    path.write_text("value\n" + "\n".join(str(v) for v in seasonal_series(50)) + "\n")
    s = series_data.load_series(cfg(path))
    assert s.target == "value" and s.freq is None and s.step == 1.0
    assert s.future_index(2) == [50.0, 51.0]


def test_semicolon_separator_and_explicit_time_column(tmp_path):
    path = tmp_path / "semi.csv"
    rows = [f"{2000 + i};{v:.3f};x" for i, v in enumerate(seasonal_series(30))]
    path.write_text("yr;level;note\n" + "\n".join(rows) + "\n")
    s = series_data.load_series(cfg(path, target="level", time_col="yr"))
    assert s.step == 1.0 and s.index[0] == 2000.0 and s.features == []


def test_jena_format_fills_missing_timestamps_and_drops_duplicates(jena_csv, caplog):
    with caplog.at_level(logging.WARNING, logger="tasks.forecasting.data"):
        s = series_data.load_series(cfg(jena_csv, target="T (degC)", features=["p (mbar)"]))
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
    assert series_data.calendar_seasons(s.freq) == [144, 1008, 52596]


def test_jena_resample_to_hourly(jena_csv):
    s = series_data.load_series(cfg(jena_csv, target="T (degC)", resample="1h"))
    assert s.freq == "h" and len(s) == 2 * 144 * 3 // 6 + 1  # 00:10 .. 23:50 six days later
    assert series_data.calendar_seasons(s.freq)[0] == 24 and series_data.default_horizon(s.freq) == 24


def test_on_missing_fail_names_the_timestamp(jena_csv):
    with pytest.raises(UserError, match=r"timestamps missing .*first 2009-01-01 01:00:00"):
        series_data.load_series(cfg(jena_csv, target="T (degC)", on_missing="fail"))


def test_on_missing_fail_names_column_and_row(tmp_path):
    path = write_jena_csv(tmp_path / "j.csv", n=300, blank=(10, "T (degC)"))
    with pytest.raises(UserError) as err:
        series_data.load_series(cfg(path, target="T (degC)", on_missing="fail"))
    msg = str(err.value)
    assert "'T (degC)'" in msg and "row 11" in msg and "line 12" in msg
    s = series_data.load_series(cfg(path, target="T (degC)"))  # interpolate is the default
    assert not np.isnan(s.y).any()


def test_non_numeric_target_names_column_row_and_value(tmp_path, capsys):
    path = write_monthly_csv(tmp_path / "bad.csv", n=60)
    lines = path.read_text().splitlines()
    parts = lines[7].split(",")
    parts[1] = "twelve"
    lines[7] = ",".join(parts)
    path.write_text("\n".join(lines) + "\n")
    result = run_cli("forecasting", "train", "--data", path, "--target", "sales", "--out", tmp_path / "m",
                     capsys=capsys)
    assert_one_line_error(result, "'sales'", "row 7", "line 8", "'twelve'", "not a number")
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.partial").exists()


def test_unknown_columns(monthly_csv, capsys, tmp_path):
    result = run_cli("forecasting", "train", "--data", monthly_csv, "--target", "profit", "--out", tmp_path / "m",
                     capsys=capsys)
    assert_one_line_error(result, "no 'profit' column (--target)", "date, sales, temp")
    result = run_cli("forecasting", "train", "--data", monthly_csv, "--target", "sales", "--features", "rain",
                     "--out", tmp_path / "m", capsys=capsys)
    assert_one_line_error(result, "no 'rain' column (--features)")
    result = run_cli("forecasting", "train", "--data", monthly_csv, "--target", "sales", "--time-col", "when",
                     "--out", tmp_path / "m", capsys=capsys)
    assert_one_line_error(result, "no 'when' column (--time-col)")


def test_too_short_series_names_column_and_rows(tmp_path, capsys):
    path = write_monthly_csv(tmp_path / "short.csv", n=40)
    result = run_cli("forecasting", "train", "--data", path, "--target", "sales", "--out", tmp_path / "m",
                     capsys=capsys)
    assert_one_line_error(result, "'sales' is too short", "40 rows", "horizon 18", "need about")


def test_bad_timestamp_and_missing_file(tmp_path, capsys):
    path = write_monthly_csv(tmp_path / "t.csv", n=60)
    text = path.read_text().replace("1991-03-01", "1991-13-45")
    path.write_text(text)
    result = run_cli("forecasting", "train", "--data", path, "--target", "sales", "--out", tmp_path / "m",
                     capsys=capsys)
    assert_one_line_error(result, "'date'", "row 15", "line 16", "'1991-13-45'", "not a date/time")
    result = run_cli("forecasting", "train", "--data", tmp_path / "nope.csv", "--out", tmp_path / "m", capsys=capsys)
    assert_one_line_error(result, "nope.csv: no such file")
    result = run_cli("forecasting", "train", "--data", "statsmodels:nosuch", "--out", tmp_path / "m", capsys=capsys)
    assert_one_line_error(result, "unknown dataset", "statsmodels:co2")


def test_transform_needs_positive_values(tmp_path):
    path = tmp_path / "neg.csv"
    path.write_text("y\n" + "\n".join(["1", "2", "-3"] + ["4"] * 30) + "\n")
    s = series_data.load_series(cfg(path))
    with pytest.raises(UserError, match=r"'y', row 3 \(line 4.*-3.*--transform log"):
        series_data.fit_scaler(s, 20, "log")


# ----------------------------------------------------------------------------- statsmodels
def test_statsmodels_co2_is_weekly_with_yearly_season():
    s = series_data.load_series(DataConfig(data="statsmodels:co2"))
    assert s.target == "co2" and s.freq == "W-SAT" and not np.isnan(s.y).any()
    split = series_data.Split.of(len(s), 0.2, 0.1)
    assert series_data.detect_seasons(s.y[: split.train_end], s.freq) == ((52,), "frequency+acf")
    assert series_data.default_horizon(s.freq) == 13


def test_statsmodels_sunspots_season_from_the_acf():
    s = series_data.load_series(DataConfig(data="statsmodels:sunspots"))
    assert s.target == "SUNACTIVITY" and s.default_transform == "sqrt" and s.freq.startswith("YS")
    split = series_data.Split.of(len(s), 0.2, 0.1)
    assert series_data.detect_seasons(s.y[: split.train_end], s.freq) == ((11,), "acf")
    assert series_data.default_horizon(s.freq) == 6


@pytest.mark.parametrize("name", ["nile", "elnino", "macrodata"])
def test_other_statsmodels_series_load(name):
    s = series_data.load_series(DataConfig(data=f"statsmodels:{name}"))
    assert len(s) > 50 and isinstance(s.index, pd.DatetimeIndex) and s.freq
    assert len(s.future_index(3)) == 3


def test_season_detection_without_a_calendar():
    y = seasonal_series(300, period=7, trend=0.0)
    assert series_data.detect_seasons(y, None) == ((7,), "acf")
    rng = np.random.default_rng(1)
    assert series_data.detect_seasons(rng.normal(size=300), None)[0] == (1,)


# ----------------------------------------------------------------------------- split, scaler, windows
def test_split_origins_keep_targets_inside_their_part():
    split = series_data.Split.of(100, 0.2, 0.1)
    assert (split.train_end, split.val_end) == (70, 80)
    L, H = 10, 5
    assert split.origins("train", L, H) == (11, 65)
    assert split.origins("val", L, H) == (70, 75)
    assert split.origins("test", L, H) == (80, 95)


def test_scaler_is_fit_on_the_training_rows_only(monthly_csv):
    s = series_data.load_series(cfg(monthly_csv, target="sales", features=["temp"]))
    a = series_data.fit_scaler(s, 150, "none")
    s.values[150:] *= 100.0
    b = series_data.fit_scaler(s, 150, "none")
    assert a == b
    assert a.diff_scale == pytest.approx(np.std(np.diff(s.y[:150])))
    assert a.feature_mean == pytest.approx([np.mean(s.values[:150, 1])])


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_zero_change_forecasts_the_last_value(monthly_csv, transform):
    s = series_data.load_series(cfg(monthly_csv, target="sales"))
    sc = series_data.fit_scaler(s, 150, transform)
    level = sc.level(s.y)
    np.testing.assert_allclose(sc.forecast(np.zeros((5, 3)), level[:5]), np.repeat(s.y[:5, None], 3, 1), rtol=1e-12)
    np.testing.assert_allclose(sc.inverse_level(level), s.y, rtol=1e-12)


def test_windows_are_differences_in_and_level_changes_out(monthly_csv):
    s = series_data.load_series(cfg(monthly_csv, target="sales", features=["temp"]))
    sc = series_data.fit_scaler(s, 150, "sqrt")
    L, H = 12, 4
    model = ModelConfig(lookback=L, horizon=H, num_features=2)
    level = sc.level(s.y)
    rows = series_data.model_rows(s, sc, model, None)
    x, y = series_data.window_arrays(rows, np.arange(20, 61), model)
    assert x.shape == (41, L, 2) and y.shape == (41, H)
    for i, t in enumerate((20, 33, 60)):
        k = t - 20
        ty = np.sqrt(s.y)
        np.testing.assert_allclose(x[k, :, 0], (ty[t - L : t] - ty[t - L - 1 : t - 1]) / sc.diff_scale, rtol=1e-5)
        np.testing.assert_allclose(x[k, :, 1], (s.values[t - L : t, 1] - sc.feature_mean[0]) / sc.feature_std[0], rtol=1e-5)
        np.testing.assert_allclose(y[k], level[t : t + H] - level[t - 1], atol=1e-5)


def test_default_lookback():
    assert series_data.default_lookback((52,), 13, 1600) == 104
    assert series_data.default_lookback((11,), 6, 216) == 22
    assert series_data.default_lookback((1,), 6, 1000) == 16
    assert series_data.default_lookback((144, 1008), 36, 300) == 66  # capped by the training rows
    assert series_data.default_lookback((24, 168), 24, 6000) == 48  # the shortest season


# ----------------------------------------------------------------------------- frequencies (pandas 2 and 3)
@pytest.mark.parametrize(
    "freq, seasons, horizon, calendar",
    [
        ("D", [7, 365], 14, ("weekday_sin", "weekday_cos", "yearday_sin", "yearday_cos")),
        ("B", [5, 261], 10, ("weekday_sin", "weekday_cos", "yearday_sin", "yearday_cos")),
        ("h", [24, 168, 8766], 24, ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos", "yearday_sin", "yearday_cos")),
        ("30min", [48, 336, 17532], 48, ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos", "yearday_sin", "yearday_cos")),
        ("W-SUN", [52], 13, ("yearday_sin", "yearday_cos")),
        ("MS", [12], 18, ()),
    ],
)
def test_frequency_defaults(freq, seasons, horizon, calendar, tmp_path):
    """Inferred from a CSV (so the alias is what pandas infers), not from the literal alias."""
    times = pd.date_range("2020-01-06", periods=60, freq=freq)
    path = tmp_path / "s.csv"
    pd.DataFrame({"time": times.strftime("%Y-%m-%d %H:%M:%S"), "y": np.arange(60.0)}).to_csv(path, index=False)
    s = series_data.load_series(cfg(path))
    assert s.freq is not None
    assert series_data.calendar_seasons(s.freq) == seasons
    assert series_data.default_horizon(s.freq) == horizon
    assert series_data.calendar_names(s.freq, None) == calendar


def test_day_offset_that_is_not_a_tick_still_means_one_day(monkeypatch):
    """pandas 3: ``Day`` is a calendar-day offset, no longer a ``Tick`` (issue 12)."""

    class Day:  # what pandas 3's to_offset("D") looks like to this code: named Day, not a Tick
        n = 1

    assert not isinstance(Day(), pd.offsets.Tick)
    from tasks.forecasting import seasons

    monkeypatch.setattr(seasons, "_offset", lambda freq: Day())
    assert series_data.fixed_step("D") == pd.Timedelta(days=1)
    assert series_data.calendar_seasons("D") == [7, 365]
    assert series_data.default_horizon("D") == 14


def test_messy_hourly_csv_is_sorted_merged_and_filled_with_one_warning(tmp_path, caplog):
    """PJM layout: day-first stamps, rows out of order, a DST repeat, a missing hour."""
    times = pd.date_range("2016-11-05 00:00", periods=72, freq="h")
    values = 1000 + 100 * np.sin(2 * np.pi * np.arange(72) / 24)
    frame = pd.DataFrame({"Datetime": times.strftime("%d-%m-%Y %H:%M"), "MW": values})
    repeat = frame.iloc[[26]].assign(MW=values[26] + 50)  # 2016-11-06 02:00 measured twice
    frame = pd.concat([frame.drop(index=[40]), repeat]).sample(frac=1.0, random_state=0)
    path = tmp_path / "load.csv"
    frame.to_csv(path, index=False)
    with caplog.at_level(logging.WARNING, logger="tasks.forecasting.data"):
        s = series_data.load_series(cfg(path))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert "sorted" in text and "averaged 1 repeated" in text and "inserted 1 missing" in text
    assert s.freq == "h" and len(s) == 72 and s.index[0] == pd.Timestamp("2016-11-05 00:00")
    assert s.y[26] == pytest.approx(values[26] + 25)  # the mean of the two readings
    assert s.y[40] == pytest.approx((values[39] + values[41]) / 2)
    assert s.index[13] == pd.Timestamp("2016-11-05 13:00")  # day first, not 11 May


def test_start_end_and_max_rows_keep_a_window(tmp_path):
    times = pd.date_range("2016-01-01", periods=100, freq="D")
    path = tmp_path / "d.csv"
    pd.DataFrame({"date": times.strftime("%Y-%m-%d"), "y": np.arange(100.0)}).to_csv(path, index=False)
    s = series_data.load_series(cfg(path, start="2016-01-11", end="2016-03-01"))
    assert s.index[0] == pd.Timestamp("2016-01-11") and s.index[-1] == pd.Timestamp("2016-03-01")
    s = series_data.load_series(cfg(path, max_rows=30))
    assert len(s) == 30 and s.y[0] == 70.0
    with pytest.raises(UserError, match="--start 'soon': not a date/time"):
        series_data.load_series(cfg(path, start="soon"))
    with pytest.raises(UserError, match="no rows left"):
        series_data.load_series(cfg(path, start="2030-01-01"))


def test_two_seasons_are_detected_in_hourly_data():
    t = np.arange(24 * 7 * 8)
    rng = np.random.default_rng(0)
    y = 10 * np.sin(2 * np.pi * t / 24) + 6 * (t % 168 >= 120) + rng.normal(0, 1, len(t))
    assert series_data.detect_seasons(y, "h") == ((24, 168), "frequency+acf")
    assert series_data.seasonal_lags((24, 168), 24, len(t)) == (24, 168)
    assert series_data.seasonal_lags((7,), 14, 1000) == (14,)  # rounded up to cover the horizon


def test_future_inputs_hold_the_calendar_and_the_seasonal_lags(tmp_path):
    times = pd.date_range("2021-03-01", periods=400, freq="h")
    path = tmp_path / "h.csv"
    y = 50 + 10 * np.sin(2 * np.pi * np.arange(400) / 24)
    pd.DataFrame({"time": times.strftime("%Y-%m-%d %H:%M"), "y": y}).to_csv(path, index=False)
    s = series_data.load_series(cfg(path))
    sc = series_data.fit_scaler(s, 300, "none")
    names = series_data.calendar_names(s.freq, None)
    model = ModelConfig(lookback=10, horizon=5, num_features=1 + len(names), row_calendar=names, lags=(24,),
                        future_features=(*names, "lag_24"))
    rows = series_data.model_rows(s, sc, model, None)
    origins = np.array([30, 200])
    (x, future), target = series_data.window_arrays(rows, origins, model)
    assert x.shape == (2, 10, 7) and future.shape == (2, 5, 7) and target.shape == (2, 5)
    level = sc.level(s.y)
    for i, t in enumerate(origins):
        np.testing.assert_allclose(future[i, :, -1], level[t - 24 : t - 19] - level[t - 1], atol=1e-5)
        hour = times[t : t + 5].hour.to_numpy()
        np.testing.assert_allclose(future[i, :, 0], np.sin(2 * np.pi * hour / 24), atol=1e-5)
    assert series_data.history(model) == 24
    # the same windows from the tf.data pipeline
    (x_ds, future_ds), y_ds = next(iter(series_data.window_dataset(rows, 30, 30, model, batch_size=1)))
    np.testing.assert_allclose(future_ds.numpy()[0], future[0], atol=1e-6)
    np.testing.assert_allclose(y_ds.numpy()[0], target[0], atol=1e-6)


def test_prepare_resolves_seasons_lags_and_calendar(tmp_path):
    from tasks.forecasting.train import prepare

    times = pd.date_range("2021-01-04", periods=24 * 7 * 6, freq="h")
    t = np.arange(len(times))
    y = 100 + 10 * np.sin(2 * np.pi * t / 24) + 5 * (t % 168 >= 120)
    path = tmp_path / "h.csv"
    pd.DataFrame({"time": times.strftime("%Y-%m-%d %H:%M"), "y": y}).to_csv(path, index=False)
    auto = prepare(cfg(path), ModelConfig())
    assert auto.model.seasons == (24, 168) and auto.season_source == "frequency+acf"
    assert auto.model.horizon == 24 and auto.model.lookback == 48 and auto.model.lags == (24, 168)
    assert "yearday_sin" not in auto.model.row_calendar  # six weeks do not cover a year
    flagged = prepare(cfg(path), ModelConfig(seasons=(12,), horizon=6))
    assert flagged.model.seasons == (12,) and flagged.season_source == "flag" and flagged.model.lags == (12,)
    plain = prepare(cfg(path), ModelConfig(calendar="off"))
    assert plain.model.future_features == () and plain.model.num_features == 1
    with pytest.raises(UserError, match="--country: holiday inputs need the calendar inputs"):
        prepare(cfg(path, country="US"), ModelConfig(calendar="off"))
