"""Fixtures for the forecasting tests; the data makers live in forecast_toy.py."""

from pathlib import Path

import pytest

from forecast_toy import seasonal_series, write_monthly_csv, write_jena_csv  # noqa: F401


@pytest.fixture
def monthly_csv(tmp_path) -> Path:
    return write_monthly_csv(tmp_path / "monthly.csv")


@pytest.fixture
def jena_csv(tmp_path) -> Path:
    return write_jena_csv(tmp_path / "jena_climate_2009_2016.csv", drop_rows=(5, 6), duplicate_rows=(20,))
