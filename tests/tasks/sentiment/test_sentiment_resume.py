"""A sentiment training resumes after SIGINT mid-epoch, SIGTERM between members, SIGKILL during the final
save (issue 27; :mod:`resume_chain`)."""

from resume_chain import run_chain


def test_sentiment_resumes_after_every_kind_of_interruption(tmp_path, capsys, monkeypatch):
    run_chain("sentiment", True, tmp_path, capsys, monkeypatch)
