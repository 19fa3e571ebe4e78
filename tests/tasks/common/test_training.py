import keras
import numpy as np
import pytest
import tensorflow as tf

from lstm_core import LSTM
from tasks.common.errors import UserError
from tasks.common.io import atomic_path, write_json_atomic, read_json
from tasks.common.training import TrainConfig, fit, model_directory, set_seed


def tiny_problem(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((32, 5, 3)).astype("float32")
    y = (x.sum(axis=(1, 2)) > 0).astype("float32")
    return x, y


def compiled_model():
    inp = keras.Input((5, 3))
    out = keras.layers.Dense(1, activation="sigmoid")(LSTM(4)(inp))
    model = keras.Model(inp, out)
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    return model


def test_fit_writes_tensorboard_and_moves_directory(tmp_path):
    set_seed(1)
    x, y = tiny_problem()
    out = tmp_path / "run"
    with model_directory(out) as work:
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
        history = fit(compiled_model(), data, data, workdir=work, config=TrainConfig(epochs=2, progress="none"), hparams={"units": 4})
        write_json_atomic(work / "config.json", {"units": 4})
    assert len(history.history["loss"]) == 2
    assert not out.with_name("run.partial").exists()
    assert read_json(out / "config.json") == {"units": 4}
    events = list((out / "logs").rglob("events.out.tfevents.*"))
    assert {p.parent.name for p in events} >= {"train", "validation"}
    assert not (out / "backup").exists()


def test_user_error_leaves_nothing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(UserError):
        with model_directory(out) as work:
            (work / "half.txt").write_text("x")
            raise UserError("bad data")
    assert not out.exists() and not out.with_name("run.partial").exists()


def test_interrupted_run_keeps_backup_for_resume(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        with model_directory(out) as work:
            (work / "backup").mkdir()
            raise KeyboardInterrupt
    assert (out.with_name("run.partial") / "backup").exists() and not out.exists()


def test_existing_directory_is_refused_without_overwrite(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text('{"task": "sentiment"}')
    with pytest.raises(UserError, match="already exists.*--overwrite"):
        with model_directory(out):
            raise AssertionError("must not start")
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]
    assert not out.with_name("run.partial").exists()


def test_overwrite_replaces_whole_directory_only_after_success(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text('{"task": "sentiment"}')
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with model_directory(out, overwrite=True, task="sentiment") as work:
            (work / "new.txt").write_text("new")
            raise RuntimeError("training failed")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "old.txt"]
    with model_directory(out, overwrite=True, task="sentiment") as work:
        (work / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]


@pytest.mark.parametrize("content, task, expected", [
    ({"notes.txt": "mine"}, "sentiment", "is not a model directory"),
    ({"config.json": "{\"name\": \"my app\"}"}, "sentiment", "is not a model directory"),
    ({"config.json": "{\"task\": \"forecasting\"}"}, "sentiment", "is a 'forecasting' model directory, not a "
                                                                    "sentiment model directory"),
])
def test_overwrite_never_replaces_what_the_suite_did_not_make(tmp_path, content, task, expected):
    out = tmp_path / "home"
    out.mkdir()
    for name, text in content.items():
        (out / name).write_text(text)
    for overwrite in (True, False):
        with pytest.raises(UserError, match=expected) as err:
            with model_directory(out, overwrite=overwrite, task=task):
                raise AssertionError("must not start")
        assert "--overwrite" not in str(err.value)  # never suggested where it would be refused
        assert {p.name: p.read_text() for p in out.iterdir()} == content
        assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]
    (out / "notes.txt").unlink(missing_ok=True)
    link = tmp_path / "link"
    link.symlink_to(out, target_is_directory=True)
    with pytest.raises(UserError, match="is a symbolic link"):
        with model_directory(link, overwrite=True, task=task):
            raise AssertionError("must not start")


def test_resume_needs_an_interrupted_run(tmp_path):
    with pytest.raises(UserError, match="no interrupted training"):
        with model_directory(tmp_path / "run", resume=True):
            pass


def test_second_run_on_same_directory_is_refused_at_once(tmp_path):
    out = tmp_path / "run"
    with model_directory(out):
        with pytest.raises(UserError, match=r"another lstm-suite process \(pid \d+"):
            with model_directory(out):
                pass
    assert out.is_dir()


def test_epoch_summary_counts_epochs_across_resumes(tmp_path):
    from tasks.common.training import EpochRecord, epoch_summary

    record = EpochRecord(tmp_path)
    for epoch, loss in [(0, 0.9), (1, 0.5)]:  # first run, then interrupted
        record.on_epoch_end(epoch, {"val_loss": loss})
    EpochRecord(tmp_path).on_epoch_end(2, {"val_loss": 0.4})  # resumed run: Keras continues at epoch 2
    assert epoch_summary(tmp_path, TrainConfig()) == {"epochs_run": 3, "best_epoch": 3}
    assert epoch_summary(tmp_path, TrainConfig(monitor="val_accuracy")) == {"epochs_run": 3, "best_epoch": None}


def test_atomic_path_cleans_up_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "f.bin") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_seed_makes_training_repeatable():
    x, y = tiny_problem()
    losses = []
    for _ in range(2):
        set_seed(7)
        model = compiled_model()
        losses.append(model.fit(x, y, epochs=1, verbose=0).history["loss"][0])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def _fit_into(out, epochs, **kwargs):
    x, y = tiny_problem()
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    with model_directory(out, **kwargs) as work:
        fit(compiled_model(), data, data, workdir=work, config=TrainConfig(epochs=epochs, patience=50, progress="none"))
    return out


def test_full_disk_is_one_error_and_the_run_resumes_later(tmp_path, monkeypatch):
    import collections
    import shutil

    from tasks.common.errors import DiskFullError
    from tasks.common.training import epoch_summary

    out = tmp_path / "run"
    real_usage = shutil.disk_usage
    calls = {"n": 0}

    def usage(path):  # room for two checkpoints, then the disk is full
        calls["n"] += 1
        free = real_usage(path).free if calls["n"] <= 2 else 1000
        return collections.namedtuple("usage", "total used free")(0, 0, free)

    monkeypatch.setattr(shutil, "disk_usage", usage)
    with pytest.raises(DiskFullError, match=r"no space left on .*backup: need ~\d+ MB"):
        _fit_into(out, epochs=5)
    work = tmp_path / "run.partial"
    assert (work / "backup" / "latest.weights.h5").is_file() and not out.exists()
    assert not (work / "backup" / "writing.weights.h5").exists()
    assert read_json(work / "backup" / "training_metadata.json")["epoch"] == 2  # the last good checkpoint
    monkeypatch.setattr(shutil, "disk_usage", real_usage)
    _fit_into(out, epochs=5)  # the same command again, with space: resumes after epoch 2
    assert epoch_summary(out, TrainConfig())["epochs_run"] == 5


def test_damaged_checkpoint_starts_over_instead_of_crashing(tmp_path, caplog):
    work = tmp_path / "run.partial" / "backup"
    work.mkdir(parents=True)
    (work / "latest.weights.h5").write_bytes(b"\x89HDF\r\n truncated")
    (work / "training_metadata.json").write_text('{"epoch": 3, "batch": 0}')
    with caplog.at_level("WARNING"):
        out = _fit_into(tmp_path / "run", epochs=2)
    assert out.is_dir() and "unreadable" in caplog.text


def test_early_stopping_resumes_with_its_patience_and_best_weights(tmp_path):
    """After a resume the best epoch, the patience count and the best weights carry on (Keras' own forget them)."""
    from tasks.common.training import ResumableEarlyStopping

    model = compiled_model()
    best = [np.full(w.shape, 0.25, w.dtype) for w in model.get_weights()]
    first = ResumableEarlyStopping(tmp_path, monitor="val_loss", patience=2)  # the interrupted run
    first.set_model(model)
    first.on_train_begin()
    for epoch, loss in enumerate([0.5, 0.3]):
        if epoch == 1:
            model.set_weights(best)
        first.on_epoch_begin(epoch)
        first.on_epoch_end(epoch, {"val_loss": loss})
    model.set_weights([w + 1 for w in best])
    first.on_epoch_begin(2)
    first.on_epoch_end(2, {"val_loss": 0.4})  # no better: the best (epoch 2) weights are kept on disk
    assert (tmp_path / "backup" / "best_weights.npz").is_file()
    write_json_atomic(tmp_path / "history.json", {str(e + 1): {"val_loss": v} for e, v in enumerate([0.5, 0.3, 0.4])})
    write_json_atomic(tmp_path / "backup" / "training_metadata.json", {"epoch": 3, "batch": 0})

    resumed = ResumableEarlyStopping(tmp_path, monitor="val_loss", patience=2)
    resumed.set_model(model)
    resumed.on_train_begin()
    resumed.on_epoch_begin(3)
    resumed.on_epoch_end(3, {"val_loss": 0.45})
    assert model.stop_training and resumed.best_epoch == 1  # patience 2 counted across the resume
    resumed.on_train_end()
    for got, want in zip(model.get_weights(), best):
        np.testing.assert_array_equal(got, want)
