"""Progress a user can read during a long ``train``: where it is, and about how long is left.

Before every epoch one line says the stage and an overall ETA, e.g.
``member 3/6, epoch 4/15: about 6 min left (at most: early stopping may end sooner)``; Keras'
progress bar (or its one line per epoch) follows as before. The ETA covers every remaining
epoch of every remaining part (ensemble member) of the run, at the mean epoch time measured so
far in this process. Steps outside ``fit`` that take a while announce themselves with
:func:`step` (one line). All of it is logging at INFO level, so ``-q`` hides it, and so does
``--progress none``.
"""

from __future__ import annotations

import contextlib
import logging
import time

import keras

log = logging.getLogger("lstm-suite")

_epoch_seconds: list[float] = []  # this process's epoch times (ETA over all members)


def reset() -> None:
    """Forget the measured epoch times (a new training starts)."""
    _epoch_seconds.clear()


def duration(seconds: float) -> str:
    """``40 s``, ``12 min``, ``1.5 h``."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def stage_line(epoch: int, epochs: int, part: tuple[int, int, str] | None, epoch_seconds: list[float]) -> str:
    """The line shown before ``epoch`` (1-based) of ``epochs``; ``part`` = ``(k, n, "member")``."""
    where = f"epoch {epoch}/{epochs}"
    remaining = epochs - epoch + 1
    if part is not None and part[1] > 1:
        where = f"{part[2]} {part[0]}/{part[1]}, {where}"
        remaining += (part[1] - part[0]) * epochs
    if not epoch_seconds:
        return where
    left = remaining * sum(epoch_seconds) / len(epoch_seconds)
    return f"{where}: about {duration(left)} left (at most: early stopping may end sooner)"


class ProgressLine(keras.callbacks.Callback):
    """Logs :func:`stage_line` before every epoch (unless the progress display is off or ``-q``).

    Args:
        config: the run's ``TrainConfig`` (``keras_verbose`` 0 silences it).
        part: ``(k, n, "member")`` when this fit is the k-th of n, else None.
    """

    def __init__(self, config, part: tuple[int, int, str] | None = None):
        super().__init__()
        self.enabled = config.keras_verbose != 0
        self.epochs, self.part = config.epochs, part

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.monotonic()
        if self.enabled:
            log.info("%s", stage_line(epoch + 1, self.epochs, self.part, _epoch_seconds))

    def on_epoch_end(self, epoch, logs=None):
        _epoch_seconds.append(time.monotonic() - self._started)


@contextlib.contextmanager
def step(what: str):
    """Announce a step that may take a while (``what ...``), and how long it took when it was long."""
    log.info("%s ...", what)
    started = time.monotonic()
    yield
    seconds = time.monotonic() - started
    if seconds >= 5:
        log.info("%s: done in %s", what, duration(seconds))
