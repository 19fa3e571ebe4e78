"""The one training loop every task uses: seeds, TensorBoard, resume, early stopping.

A model directory is built in ``<out>.partial`` and renamed onto ``<out>`` only when training
finished, so ``<out>`` is never half-written. ``<out>.partial/backup`` holds
``BackupAndRestore`` state: rerunning an interrupted command resumes from the last epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path

import keras
import tensorflow as tf

from lstm_core.errors import UserError
from lstm_core.io import remove, replace

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainConfig:
    """Optimisation settings shared by all tasks (each task owns its model/data config)."""

    epochs: int = 20
    learning_rate: float = 1e-3
    patience: int = 4
    monitor: str = "val_loss"
    monitor_mode: str = "auto"
    seed: int = 1234
    histogram_freq: int = 1
    verbose: int = 2  # Keras fit verbosity: 1 progress bar, 2 one line per epoch
    steps_per_epoch: int | None = None  # cap for smoke runs; None = whole dataset
    validation_steps: int | None = None


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TF ops deterministic where it is cheap."""
    keras.utils.set_random_seed(seed)


@contextlib.contextmanager
def model_directory(out: str | Path):
    """Yield the work directory ``<out>.partial``; rename it onto ``out`` on success.

    Bad input (:class:`UserError`) removes the work directory; any other interruption keeps it
    so that the same command resumes from ``backup/``.
    """
    out = Path(out)
    work = out.with_name(out.name + ".partial")
    if work.exists():
        log.info("resuming from %s", work)
    work.mkdir(parents=True, exist_ok=True)
    try:
        yield work
    except UserError:
        remove(work)
        raise
    except BaseException:
        if (work / "backup").exists():
            log.warning("training stopped; rerun the same command to resume from %s", work)
        else:
            remove(work)
        raise
    remove(work / "backup")
    replace(work, out)
    log.info("model written to %s", out)


def _hparams_callback(log_dir: Path, hparams: dict):
    from tensorboard.plugins.hparams import api as hp

    clean = {
        k: (v if isinstance(v, (bool, int, float, str)) else str(v))
        for k, v in hparams.items()
        if v is not None
    }
    return hp.KerasCallback(str(log_dir), clean)


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
    log_dir = workdir / "logs"
    cbs = [
        keras.callbacks.TensorBoard(log_dir=str(log_dir), histogram_freq=config.histogram_freq),
        _hparams_callback(log_dir, {**(hparams or {}), **dataclasses.asdict(config)}),
        keras.callbacks.BackupAndRestore(str(workdir / "backup")),
        keras.callbacks.EarlyStopping(
            monitor=config.monitor,
            mode=config.monitor_mode,
            patience=config.patience,
            restore_best_weights=True,
        ),
        keras.callbacks.TerminateOnNaN(),
        *(callbacks or []),
    ]
    return model.fit(
        train_data,
        validation_data=val_data,
        epochs=config.epochs,
        steps_per_epoch=config.steps_per_epoch,
        validation_steps=config.validation_steps,
        callbacks=cbs,
        verbose=config.verbose,
        shuffle=False,  # tf.data pipelines shuffle themselves; Keras would warn and ignore it
    )


def add_train_arguments(parser, defaults: TrainConfig) -> None:
    """The shared optimisation flags; read them back with :func:`train_config_from_args`."""
    g = parser.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=defaults.epochs)
    g.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    g.add_argument("--patience", type=int, default=defaults.patience, help="early-stopping patience")
    g.add_argument("--seed", type=int, default=defaults.seed)
    g.add_argument("--steps-per-epoch", type=int, default=defaults.steps_per_epoch)
    g.add_argument("--progress", choices=("bar", "epoch"), default="epoch" if defaults.verbose == 2 else "bar")


def train_config_from_args(args, defaults: TrainConfig) -> TrainConfig:
    return dataclasses.replace(
        defaults,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        patience=args.patience,
        seed=args.seed,
        steps_per_epoch=args.steps_per_epoch,
        verbose=1 if args.progress == "bar" else 2,
    )
