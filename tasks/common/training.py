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
from tasks.common.io import DirectoryLock, remove, replace, write_json_atomic

__all__ = [
    "TrainConfig", "check_same_on_workers", "chief_says", "distribution_scope", "epoch_summary", "fit", "is_chief", "join_for_training",
    "make_strategy", "model_directory", "set_seed",
]

log = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TF ops deterministic where it is cheap."""
    keras.utils.set_random_seed(seed)


@contextlib.contextmanager
def model_directory(out: str | Path, *, overwrite: bool = False, resume: bool = False,
                    task: str | None = None):
    """Yield the work directory ``<out>.partial``; rename it onto ``out`` on success.

    Args:
        out: the model directory to create.
        overwrite: allow replacing an existing ``out`` (swapped in only after success).
        resume: require an interrupted run (``<out>.partial``) to continue from.
        task: the task writing it; ``overwrite`` replaces only a model directory of this task.

    An existing non-empty ``out`` is refused with one line unless ``overwrite`` and it is a model
    directory of ``task`` (:func:`~tasks.common.artifacts.check_train_out`): nothing a user made
    is deleted without being asked. Bad input (:class:`UserError`) removes a work directory
    this call created; any other interruption keeps it so the same command resumes from ``backup/``.
    """
    out = Path(out)
    work = out.with_name(out.name + ".partial")
    with DirectoryLock(out, "train"):
        check_train_out(out, task=task, overwrite=overwrite)
        resuming = work.exists()
        if resume and not resuming:
            raise UserError(f"--resume: {work} does not exist, so there is no interrupted training to continue")
        if resuming:
            log.info("resuming from %s", work)
        work.mkdir(parents=True, exist_ok=True)
        try:
            yield work
        except DiskFullError:
            if not (work / BACKUP_DIR).exists() and not resuming:
                remove(work)
            raise
        except UserError:
            if not resuming:
                remove(work)
            raise
        except BaseException:
            if (work / BACKUP_DIR).exists():
                log.warning("training stopped; rerun the same command to resume from %s", work)
            elif not resuming:
                remove(work)
            raise
        remove(work / BACKUP_DIR)
        replace(work, out)
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
    local = {"progress", "cluster_timeout", "out", "overwrite", "resume"}
    flat = {}
    for section, values in settings.items():
        values = dataclasses.asdict(values) if dataclasses.is_dataclass(values) else dict(values or {})
        flat.update({f"{section}.{k}": v for k, v in values.items() if k not in local})
    return flat


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


HISTORY_FILE = "history.json"
BACKUP_DIR = "backup"


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
) -> keras.callbacks.History:
    """``model.fit`` with TensorBoard (scalars, histograms, hparams), resume and early stopping.

    The model must be compiled. Logs go to ``workdir/logs``; after the run the weights of the
    best epoch (by ``config.monitor``) are in the model.
    """
    workdir = Path(workdir)
    log_dir = workdir / LOGS_DIR
    cbs = [
        keras.callbacks.TensorBoard(log_dir=str(log_dir), histogram_freq=config.histogram_freq),
        _hparams_callback(log_dir, {**(hparams or {}), **dataclasses.asdict(config)}),
        SafeBackupAndRestore(str(workdir / BACKUP_DIR)),
        keras.callbacks.EarlyStopping(
            monitor=config.monitor,
            mode=config.monitor_mode,
            patience=config.patience,
            restore_best_weights=True,
        ),
        DivergenceGuard(),  # NaN/inf loss or weights: one-line error, nothing renamed onto --out
        keras.callbacks.TerminateOnNaN(),
        EpochRecord(workdir),
        *(callbacks or []),
    ]
    if config.distribute == "multi-worker":
        from tasks.common.multi_worker import fit_distributed

        return fit_distributed(model, train_data, val_data, callbacks=cbs, epochs=config.epochs,
                               steps_per_epoch=config.steps_per_epoch, validation_steps=config.validation_steps,
                               verbose=config.keras_verbose)
    return model.fit(
        train_data,
        validation_data=val_data,
        epochs=config.epochs,
        steps_per_epoch=config.steps_per_epoch,
        validation_steps=config.validation_steps,
        callbacks=cbs,
        verbose=config.keras_verbose,
        shuffle=False,  # tf.data pipelines shuffle themselves; Keras would warn and ignore it
    )
