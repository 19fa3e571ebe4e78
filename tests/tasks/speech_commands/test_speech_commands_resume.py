"""A speech_commands training resumes after SIGTERM mid-epoch, SIGINT after an epoch, SIGTERM (default: SIGKILL;
slow variant: the signal above) during the final save (issue 27; :mod:`resume_chain`)."""

import pytest

from resume_chain import run_chain


# Both chains are slow (suite time): this task's training resumes through tasks.common.training.fit and
# tasks.common.resume, which the default suite checks with the forecasting chain (one member) and the
# sentiment chain (members and the student), each ending with SIGKILL during the final save.
@pytest.mark.slow
@pytest.mark.parametrize("kill", [False, True], ids=["interrupted", "killed"])
def test_speech_commands_resumes_after_every_kind_of_interruption(kill, tmp_path, capsys, monkeypatch):
    run_chain("speech_commands", kill, tmp_path, capsys, monkeypatch)
