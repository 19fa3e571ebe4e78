"""The one training loop every task uses: seeds, TensorBoard, resume, early stopping.

A model directory is built in ``<out>.partial`` and renamed onto ``<out>`` only when training
finished, so ``<out>`` is never half-written. ``<out>.partial/backup`` holds
``BackupAndRestore`` state: rerunning an interrupted command resumes from the last epoch.
An existing ``<out>`` is never replaced unless ``--overwrite`` was given, and then only after
the new training succeeded. A lock (``.<out>.lock``) keeps two runs out of one directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tasks.common.artifacts import LOGS_DIR, check_train_out
from tasks.common.config import TrainConfig
from tasks.common.errors import DiskFullError, UserError
from tasks.common.guards import DivergenceGuard
from tasks.common import progress, resume as resume_state
from tasks.common.io import DirectoryLock, remove, replace, write_json_atomic
from tasks.common.resume import BACKUP_DIR, FITTED_FILE, HISTORY_FILE, interruption_point, run_times

__all__ = [
    "TrainConfig", "check_same_on_workers", "interruption_point", "run_times", "chief_says", "distribution_scope", "epoch_summary", "fit", "is_chief", "join_for_training",
    "make_strategy", "model_directory", "set_seed",
]

log = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TF ops deterministic where it is cheap."""
    keras.utils.set_random_seed(seed)


@contextlib.contextmanager
def model_directory(out: str | Path, *, overwrite: bool = False, resume: bool = False,
                    task: str | None = None, settings: dict | None = None):
    """Yield the work directory ``<out>.partial``; rename it onto ``out`` on success.

    Args:
        out: the model directory to create.
        overwrite: allow replacing an existing ``out`` (swapped in only after success), and
            discarding an interrupted ``<out>.partial`` that was started with other settings.
        resume: require an interrupted run (``<out>.partial``) to continue from.
        task: the task writing it; ``overwrite`` replaces only a model directory of this task.
        settings: the run's config sections (``{"data": DataConfig, ...}``), recorded in
            ``<out>.partial/run.json``: a rerun with other settings is refused with one line.

    An existing non-empty ``out`` is refused with one line unless ``overwrite`` and it is a model
    directory of ``task`` (:func:`~tasks.common.artifacts.check_train_out`): nothing a user made
    is deleted without being asked. Bad input (:class:`UserError`) removes a work directory
    this call created; any other interruption (Ctrl-C, SIGTERM, a crash) keeps it whenever it
    holds finished or checkpointed work (:func:`tasks.common.resume.holds_work`), so the same
    command resumes. :func:`tasks.common.resume.run_times` gives the time of every segment summed.
    """
    out = Path(out)
    work = out.with_name(out.name + ".partial")
    with DirectoryLock(out, "train"):
        check_train_out(out, task=task, overwrite=overwrite)
        resuming = resume_state.refuse_or_discard(work, settings, out, overwrite)
        if resume and not resuming:
            raise UserError(f"--resume: {work} does not exist, so there is no interrupted training to continue")
        if resuming:
            log.info("resuming the interrupted training in %s", work)
        work.mkdir(parents=True, exist_ok=True)
        clock = resume_state.RunClock.current = resume_state.RunClock(work, settings)
        progress.reset()
        try:
            yield work
        except UserError as err:
            if not resuming and not (isinstance(err, DiskFullError) and resume_state.holds_work(work)):
                remove(work)
            else:
                clock.save()
            raise
        except BaseException:
            clock.save()
            if resume_state.holds_work(work):
                log.warning("training stopped; rerun the same command to resume from %s", work)
            elif not resuming:
                remove(work)
            raise
        finally:
            resume_state.RunClock.current = None
        replace(work, out)
        resume_state.remove_resume_state(out)
    log.info("model written to %s", out)


MULTI_WORKER_UPSTREAM = "keras-team/keras#20585, tensorflow/tensorflow#72388"


def make_strategy(mode: str):
    """The ``tf.distribute`` strategy for ``--distribute`` (None for ``none``).

    ``multi-worker`` is the ``MultiWorkerMirroredStrategy`` this process joined with
    :func:`join_for_training` (``TF_CONFIG``); :func:`fit` then trains with
    :func:`tasks.common.multi_worker.fit_distributed`, because Keras 3's ``fit`` fails under it
    (keras-team/keras#20585).
    """
    if mode == "none":
        return None
    if mode == "mirrored":
        return tf.distribute.MirroredStrategy()
    if mode == "multi-worker":
        from tasks.common.multi_worker import cluster

        if cluster() is None:
            raise RuntimeError("--distribute multi-worker: join_for_training() must run before TensorFlow does")
        return cluster().strategy
    raise UserError(f"--distribute: expected none, mirrored or multi-worker, got {mode!r}")


def join_for_training(config: TrainConfig, output, settings: dict):
    """Join the ``TF_CONFIG`` cluster (``--distribute multi-worker``); the output this worker writes.

    Call first in a task's ``train``: collectives must be configured before TensorFlow runs.
    Every worker checks the others have the same ``settings`` (hash). The chief writes
    ``output.out``; the other workers write a scratch directory that is removed when they exit.
    Without ``multi-worker`` this returns ``output`` unchanged.
    """
    if config.distribute != "multi-worker":
        return output
    import atexit

    from tasks.common.multi_worker import join_cluster

    joined = join_cluster(config.cluster_timeout, _comparable(settings))
    if joined.is_chief:
        return output
    scratch = joined.scratch(output.out)
    atexit.register(remove, scratch.parent)
    return dataclasses.replace(output, out=str(scratch), overwrite=False, resume=False)


def _comparable(settings: dict) -> dict:
    """Settings every worker must share: not the display, the timeout or where this node writes."""
    return resume_state.comparable_settings(settings)


def is_chief() -> bool:
    """False only on a non-chief worker of a multi-worker run (it writes nothing that is kept)."""
    from tasks.common.multi_worker import cluster

    return cluster() is None or cluster().is_chief


def check_same_on_workers(what: str, *parts) -> None:
    """Multi-worker: stop every worker with one line unless ``parts`` (bytes/arrays) agree with the chief's.

    For what each worker builds itself from the data (tokenizers, scalers): deterministic code on
    the same files must build the same, and a worker that did not would silently train another model.
    """
    from tasks.common.multi_worker import check_same, cluster, digest

    if cluster() is not None:
        check_same(cluster(), digest(*parts), what, "give every worker the same data files and settings")


def chief_says(flag: bool) -> bool:
    """The chief's ``flag`` on every worker (``flag`` itself when training alone)."""
    from tasks.common.multi_worker import cluster

    return bool(flag) if cluster() is None else bool(cluster().chief_value(float(bool(flag))))


@contextlib.contextmanager
def distribution_scope(config: TrainConfig):
    """``strategy.scope()`` for ``--distribute`` (a no-op for ``none``); yields the strategy or None.

    Build and compile the model inside it; ``fit`` then splits each (global) batch across the
    replicas, and TensorBoard and checkpoints work as on one device.
    """
    strategy = make_strategy(config.distribute)
    if strategy is None:
        yield None
        return
    log.info("%s: %d replicas", strategy.__class__.__name__, strategy.num_replicas_in_sync)
    with strategy.scope():
        yield strategy


def _hparams_callback(log_dir: Path, hparams: dict):
    from tensorboard.plugins.hparams import api as hp

    clean = {
        k: (v if isinstance(v, (bool, int, float, str)) else str(v))
        for k, v in hparams.items()
        if v is not None
    }
    return hp.KerasCallback(str(log_dir), clean)




def _megabytes(n: float) -> str:
    return f"{max(1, round(n / 1e6))} MB"


class SafeBackupAndRestore(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` whose checkpoints survive a full disk and a kill mid-write.

    Each checkpoint is written beside the last good one and renamed over it, so a crash or a
    full disk leaves the previous checkpoint intact. Free space is checked before writing; on
    ENOSPC training stops with :class:`DiskFullError` (one line) and a rerun resumes from the last
    good checkpoint. A damaged checkpoint (from older versions) is set aside and training starts
    clean, with a warning, instead of crashing on every rerun.
    """

    def on_train_begin(self, logs=None):
        if not Path(self._weights_path).exists():
            super().on_train_begin(logs)  # nothing saved yet: Keras' own errors (unbuilt model) as they are
            return
        try:
            super().on_train_begin(logs)
        except Exception as err:  # noqa: BLE001 - h5py/Keras raise many types for a damaged file
            damaged = Path(self.backup_dir).with_name(Path(self.backup_dir).name + ".damaged")
            remove(damaged)
            Path(self.backup_dir).rename(damaged)
            log.warning("checkpoint in %s is unreadable (%s); starting training over (kept it as %s)",
                        self.backup_dir, str(err).splitlines()[0][:120] if str(err) else type(err).__name__, damaged)
            self.model._initial_epoch = 0

    def _needed_bytes(self) -> int:
        path = Path(self._weights_path)
        if path.exists():
            return 2 * path.stat().st_size + (1 << 20)
        params = sum(int(np.prod(v.shape)) for v in self.model.weights)
        return 3 * 4 * params * 2 + (1 << 20)  # weights + Adam's two moments, twice (temp + old)

    def _save_model(self):
        import errno
        import shutil

        backup = Path(self.backup_dir)
        backup.mkdir(parents=True, exist_ok=True)
        need = self._needed_bytes()
        free = shutil.disk_usage(backup).free
        if free < need:
            raise DiskFullError(f"no space left on {backup}: need ~{_megabytes(need)}, {_megabytes(free)} free; "
                                "free some space and rerun the same command to resume")
        tmp = backup / "writing.weights.h5"
        try:
            self.model.save_weights(filepath=str(tmp), overwrite=True)
            os.replace(tmp, self._weights_path)
            write_json_atomic(self._training_metadata_path, {"epoch": self._current_epoch,
                                                             "batch": self._last_batch_seen})
        except Exception as err:  # noqa: BLE001 - h5py reports a full disk as OSError or RuntimeError
            remove(tmp)
            if getattr(err, "errno", None) == errno.ENOSPC or "No space left" in str(err):
                raise DiskFullError(f"no space left on {backup}: need ~{_megabytes(need)}; "
                                    "free some space and rerun the same command to resume") from None
            raise


class EpochRecord(keras.callbacks.Callback):
    """Keeps every epoch's logs in ``workdir/history.json``, across resumed runs.

    Keras' ``History`` only knows the epochs of the current process; after a resume the train
    report must still count (and find the best of) all of them.
    """

    def __init__(self, workdir: Path):
        super().__init__()
        self.path = Path(workdir) / HISTORY_FILE

    def on_epoch_end(self, epoch, logs=None):
        from tasks.common.io import read_json, write_json_atomic

        record = read_json(self.path) if self.path.is_file() else {}
        record[str(epoch + 1)] = {k: float(v) for k, v in (logs or {}).items()}
        write_json_atomic(self.path, record)
        resume_state.note_time()


def recorded_history(workdir: Path) -> dict:
    """``{metric: [value per epoch]}`` over every segment of the training (``history.json``)."""
    from tasks.common.io import read_json

    path = Path(workdir) / HISTORY_FILE
    record = read_json(path) if path.is_file() else {}
    history: dict[str, list] = {}
    for epoch in sorted(record, key=int):
        for key, value in record[epoch].items():
            history.setdefault(key, []).append(value)
    return history


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """``EarlyStopping(restore_best_weights=True)`` that resumes where an interrupted run stopped.

    Keras' own starts over after a resume (best value, patience and best weights lost), so a
    resumed training would stop later and keep another epoch than an uninterrupted one. This one
    replays the recorded epochs up to the checkpoint (``history.json``) and keeps the best
    weights in ``backup/best_weights.npz`` whenever they are older than the checkpoint.
    """

    def __init__(self, workdir: Path, **kwargs):
        super().__init__(restore_best_weights=True, **kwargs)
        self.workdir = Path(workdir)
        self._saved_epoch = None

    @property
    def _best_path(self) -> Path:
        return self.workdir / BACKUP_DIR / "best_weights.npz"

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        from tasks.common.io import read_json

        metadata = self.workdir / BACKUP_DIR / "training_metadata.json"
        self._resumed_at = int(read_json(metadata).get("epoch", 0)) if metadata.is_file() else 0
        self._pending = self._resumed_at > 0

    def on_epoch_begin(self, epoch, logs=None):
        if self._pending and self.best_weights is None:
            self._restored = self.model.get_weights()  # the checkpoint's weights (BackupAndRestore loaded them)

    def on_epoch_end(self, epoch, logs=None):
        if self._pending:
            self._pending = False
            self._replay()
        super().on_epoch_end(epoch, logs)
        if self.best_weights is not None and self.best_epoch < epoch and self._saved_epoch != self.best_epoch:
            self._save_best()

    def _replay(self) -> None:
        if self.monitor_op is None:
            self._set_monitor_op()
        history = recorded_history(self.workdir).get(self.monitor, [])[: self._resumed_at]
        for epoch, current in enumerate(history):
            self.wait += 1
            if self._is_improvement(current, self.best):
                self.best, self.best_epoch, self.wait = current, epoch, 0
        if self.best is None:
            return
        if self.best_epoch == self._resumed_at - 1:
            self.best_weights = self._restored
        elif self._best_path.is_file():
            with np.load(self._best_path, allow_pickle=False) as saved:
                if int(saved["epoch"]) == self.best_epoch:
                    self.best_weights = [saved[f"w{i}"] for i in range(len(saved.files) - 1)]
                    self._saved_epoch = self.best_epoch
        if self.best_weights is None:  # (a kill between two writes) keep the checkpoint's as a fallback
            log.warning("the best epoch's weights were not saved; keeping the resumed ones as the best so far")
            self.best_weights, self.best_epoch = self._restored, self._resumed_at - 1

    def _save_best(self) -> None:
        from tasks.common.io import atomic_path

        self._best_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self._best_path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, epoch=np.int64(self.best_epoch),
                         **{f"w{i}": w for i, w in enumerate(self.best_weights)})
        self._saved_epoch = self.best_epoch


class InterruptionHook(keras.callbacks.Callback):
    """Calls :func:`tasks.common.resume.interruption_point` at ``mid_epoch:E`` and ``epoch:E`` (test hook)."""

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._batches = epoch + 1, 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self._batches == 1:
            interruption_point(f"mid_epoch:{self._epoch}")

    def on_epoch_end(self, epoch, logs=None):
        interruption_point(f"epoch:{epoch + 1}")


def epoch_summary(workdir: Path, config: TrainConfig) -> dict:
    """``epochs_run``, ``best_epoch`` and the monitored values over all runs into ``workdir``."""
    from tasks.common.io import read_json

    path = Path(workdir) / HISTORY_FILE
    record = read_json(path) if path.is_file() else {}
    epochs = sorted(int(k) for k in record)
    values = [(e, record[str(e)].get(config.monitor)) for e in epochs]
    values = [(e, v) for e, v in values if v is not None]
    best = None
    if values:
        maximise = config.monitor_mode == "max" or (
            config.monitor_mode == "auto" and any(w in config.monitor for w in ("acc", "auc", "bleu", "f1"))
        )
        best = (max if maximise else min)(values, key=lambda item: item[1])[0]
    return {"epochs_run": len(epochs), "best_epoch": best}


def fit(
    model: keras.Model,
    train_data,
    val_data,
    *,
    workdir: Path,
    config: TrainConfig,
    hparams: dict | None = None,
    callbacks: list | None = None,
    part: tuple[int, int, str] | None = None,
) -> keras.callbacks.History:
    """``model.fit`` with TensorBoard (scalars, histograms, hparams), resume and early stopping.

    The model must be compiled. Logs go to ``workdir/logs``; after the run the weights of the
    best epoch (by ``config.monitor``) are in the model, and ``workdir/fitted.weights.h5`` holds
    them until the model directory is complete: a rerun after an interruption past this point
    loads them instead of training again. The returned ``History`` holds every epoch of every
    segment (``history.json``). ``part``: ``(k, n, "member")`` when this fit is the k-th of n
    (progress lines say "member k/n, epoch e/E" and an ETA over all of them).
    """
    workdir = Path(workdir)
    fitted = workdir / FITTED_FILE
    resumable = config.distribute != "multi-worker"  # workers follow the chief's checkpoint there
    if resumable and fitted.is_file():
        log.info("reusing the finished training in %s", workdir)
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(fitted)
        return _history_of(workdir)
    cbs = _callbacks(workdir, config, hparams, callbacks, part)
    if config.distribute == "multi-worker":
        from tasks.common.multi_worker import fit_distributed

        fit_distributed(model, train_data, val_data, callbacks=cbs, epochs=config.epochs,
                        steps_per_epoch=config.steps_per_epoch, validation_steps=config.validation_steps,
                        verbose=config.keras_verbose)
    else:
        model.fit(
            train_data,
            validation_data=val_data,
            epochs=config.epochs,
            steps_per_epoch=config.steps_per_epoch,
            validation_steps=config.validation_steps,
            callbacks=cbs,
            verbose=config.keras_verbose,
            shuffle=False,  # tf.data pipelines shuffle themselves; Keras would warn and ignore it
        )
    if resumable:
        _save_fitted(model, fitted)
    return _history_of(workdir)


def _callbacks(workdir: Path, config: TrainConfig, hparams: dict | None, callbacks: list | None, part) -> list:
    """Every callback of :func:`fit`, in the order that makes a checkpoint consistent."""
    from tasks.common.progress import ProgressLine

    log_dir = workdir / LOGS_DIR
    return [
        keras.callbacks.TensorBoard(log_dir=str(log_dir), histogram_freq=config.histogram_freq),
        _hparams_callback(log_dir, {**(hparams or {}), **dataclasses.asdict(config)}),
        *(callbacks or []),  # first: they may add to the epoch's logs (translation's val_bleu)
        DivergenceGuard(),  # NaN/inf loss or weights: one-line error, nothing renamed onto --out
        keras.callbacks.TerminateOnNaN(),
        ResumableEarlyStopping(workdir, monitor=config.monitor, mode=config.monitor_mode, patience=config.patience),
        EpochRecord(workdir),
        SafeBackupAndRestore(str(workdir / BACKUP_DIR)),  # last: a checkpoint commits what the others wrote
        ProgressLine(config, part),
        InterruptionHook(),
    ]


def _save_fitted(model: keras.Model, path: Path) -> None:
    tmp = path.with_name("writing." + path.name)
    try:
        model.save_weights(str(tmp))
        os.replace(tmp, path)
    finally:
        remove(tmp)
    resume_state.note_time()


def _history_of(workdir: Path) -> keras.callbacks.History:
    history = keras.callbacks.History()
    history.history = recorded_history(workdir)
    history.epoch = list(range(len(next(iter(history.history.values()), []))))
    return history
