"""``model_directory``'s resume rules (issue 27): other settings are refused, a directory without
trained work is not kept. The per-task interruption chains are ``tests/tasks/<task>/test_<task>_resume.py``
(:mod:`resume_chain`)."""

import pytest


def test_rerun_with_other_settings_is_refused_unless_overwrite(tmp_path, caplog):
    from tasks.common.config import TrainConfig
    from tasks.common.errors import UserError
    from tasks.common.training import model_directory

    out, work = tmp_path / "model", tmp_path / "model.partial"
    with pytest.raises(KeyboardInterrupt):
        with model_directory(out, task="sentiment", settings={"train": TrainConfig(epochs=2)}) as partial:
            (partial / "backup").mkdir()
            raise KeyboardInterrupt
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(UserError, match=r"other settings \(--epochs 2 then, 3 now\); .*--overwrite to discard"):
        with model_directory(out, task="sentiment", settings={"train": TrainConfig(epochs=3)}):
            raise AssertionError("must not start")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    with model_directory(out, task="sentiment", settings={"train": TrainConfig(epochs=2, progress="none")}) as again:
        assert (again / "backup").is_dir()  # the display is not a setting of the model: resumed
        raise_later = again
    assert raise_later == work and out.is_dir() and not (out / "backup").exists() and not (out / "run.json").exists()
    with pytest.raises(KeyboardInterrupt):
        with model_directory(tmp_path / "b", settings={"train": TrainConfig(epochs=2)}) as partial:
            (partial / "history.json").write_text("{}")
            raise KeyboardInterrupt
    with caplog.at_level("WARNING"):
        with model_directory(tmp_path / "b", overwrite=True, settings={"train": TrainConfig(epochs=3)}) as partial:
            assert not (partial / "history.json").exists()  # --overwrite discarded the other training
    assert "discarding the interrupted training" in caplog.text


def test_work_directory_without_work_is_not_kept(tmp_path):
    from tasks.common.training import model_directory

    with pytest.raises(KeyboardInterrupt):
        with model_directory(tmp_path / "model", settings={}) as partial:
            (partial / "config.json").write_text("{}")  # stopped while loading data: nothing worth keeping
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
