"""Commands after train (issue 27): the training data's cleaning is not a warning again; --overwrite keeps cached baselines."""

from __future__ import annotations

import json
import logging
import types

from tasks.common.samples import sample_path
from tasks.forecasting.config import DataConfig
from tasks.forecasting.data import load_series
from tasks.forecasting.evaluate import load_for_model
from tasks.forecasting.train import keep_cached_baselines

SAMPLE = sample_path("forecasting/PJME_hourly_2018.csv")  # unsorted rows and the DST gap of 2018-03-11


def test_the_shipped_samples_cleaning_warns_at_train_only(caplog):
    data = DataConfig(data=SAMPLE)
    with caplog.at_level(logging.INFO):
        series = load_series(data)  # what train reads
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "inserted 1 missing timestamp" in warned[0].getMessage()
    caplog.clear()
    directory = types.SimpleNamespace(data=data, scaler=types.SimpleNamespace(num_covariates=0),
                                      model=types.SimpleNamespace(row_calendar=()))
    with caplog.at_level(logging.INFO):
        again = load_for_model(directory, None)  # evaluate / export / predict on the training data
    assert len(again.y) == len(series.y)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("(as at training)" in r.getMessage() for r in caplog.records)


def test_overwrite_keeps_the_cached_baselines(tmp_path):
    out, work = tmp_path / "model", tmp_path / "model.partial"
    (out / "baselines").mkdir(parents=True)
    (out / "config.json").write_text(json.dumps({"task": "forecasting"}))
    (out / "baselines" / "mstl-0123456789abcdef0123.npz").write_bytes(b"cached")
    work.mkdir()
    assert keep_cached_baselines(out, work) == 1
    assert (work / "baselines" / "mstl-0123456789abcdef0123.npz").read_bytes() == b"cached"
    (out / "config.json").write_text(json.dumps({"task": "sentiment"}))  # not a forecasting model: nothing taken
    assert keep_cached_baselines(out, tmp_path / "other") == 0 and not (tmp_path / "other").exists()
