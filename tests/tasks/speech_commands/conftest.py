"""Fixtures for the speech_commands tests; the data makers live in speech_toy.py."""

from pathlib import Path

import pytest

from speech_toy import WORDS, SPEAKERS, tone, write_wav, make_dataset  # noqa: F401


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("speech") / "data")
