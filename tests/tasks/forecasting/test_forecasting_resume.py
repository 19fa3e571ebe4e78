"""A forecasting training resumes after SIGTERM mid-epoch, SIGINT after an epoch, SIGINT (slow variant:
SIGKILL) during the final save (issue 27; :mod:`resume_chain`)."""

import pytest

from resume_chain import run_chain


# SIGKILL needs a subprocess (a TensorFlow import, ~15 s); the default suite kills sentiment's only
@pytest.mark.parametrize("kill", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["interrupted", "killed"])
def test_forecasting_resumes_after_every_kind_of_interruption(kill, tmp_path, capsys, monkeypatch):
    run_chain("forecasting", kill, tmp_path, capsys, monkeypatch)
