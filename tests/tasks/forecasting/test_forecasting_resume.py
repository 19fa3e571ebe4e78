"""A forecasting training resumes after SIGTERM mid-epoch, SIGINT after an epoch, SIGINT (default: SIGKILL;
slow variant: the signal above) during the final save (issue 27; :mod:`resume_chain`)."""

import pytest

from resume_chain import run_chain


# SIGKILL needs a subprocess (a TensorFlow import, ~15 s): the default suite runs the chain that ends with it
# (SIGINT/SIGTERM earlier in the chain); the one that sends SIGINT at the final save instead is slow
@pytest.mark.parametrize("kill", [pytest.param(False, marks=pytest.mark.slow), True], ids=["interrupted", "killed"])
def test_forecasting_resumes_after_every_kind_of_interruption(kill, tmp_path, capsys, monkeypatch):
    run_chain("forecasting", kill, tmp_path, capsys, monkeypatch)
