"""Guards against settings and trainings that cannot give a model: divergence, absurd batch sizes.

- :class:`DivergenceGuard` (a Keras callback that :func:`tasks.common.training.fit` always adds)
  fails a training whose loss or weights become NaN or infinite with one :class:`TrainingDiverged`
  line, so ``model_directory`` never renames a NaN model onto ``--out`` (nor over a good model
  with ``--overwrite``). Keras' own ``TerminateOnNaN`` only stops early and lets the run succeed.
- :func:`bounded_batch_size` clamps a batch larger than the data to the data (with one note):
  a batch that can never fill would make a repeated ``tf.data`` pipeline wait forever.
"""

from __future__ import annotations

import logging
import math

import keras
import numpy as np

from tasks.common.errors import UserError

__all__ = ["DivergenceGuard", "TrainingDiverged", "bounded_batch_size"]

log = logging.getLogger(__name__)

DIVERGED_HINT = ("lower --learning-rate, or look for huge or non-finite values in the data; "
                 "nothing was written and an existing model is untouched")


class TrainingDiverged(UserError):
    """The loss or the weights became NaN/inf: the run fails instead of saving a broken model."""


class DivergenceGuard(keras.callbacks.Callback):
    """Raise :class:`TrainingDiverged` as soon as a loss or a weight is not finite.

    Checks the running training loss after every batch (``TerminateOnNaN`` reads the same value,
    so this costs nothing more), every loss in the epoch's logs (validation too) and every weight
    at the end of each epoch.

    Example:

    ```python
    model.fit(x, y, callbacks=[DivergenceGuard()])   # NaN loss -> TrainingDiverged (one line)
    ```
    """

    def __init__(self):
        super().__init__()
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(np.asarray(loss))):
            raise TrainingDiverged(
                f"training diverged: the loss became {float(np.asarray(loss))} at epoch {self._epoch + 1}, "
                f"batch {batch + 1}; {DIVERGED_HINT}")

    def on_epoch_end(self, epoch, logs=None):
        for name, value in (logs or {}).items():
            if name.endswith("loss") and not math.isfinite(float(np.asarray(value))):
                raise TrainingDiverged(f"training diverged: {name} is {float(np.asarray(value))} after epoch "
                                       f"{epoch + 1}; {DIVERGED_HINT}")
        for weight in self.model.weights:
            if not np.all(np.isfinite(keras.ops.convert_to_numpy(weight))):
                raise TrainingDiverged(f"training diverged: weight {weight.path} holds NaN or inf after epoch "
                                       f"{epoch + 1}; {DIVERGED_HINT}")


_noted: set[tuple[str, int, int]] = set()


def bounded_batch_size(batch_size: int, examples: int, flag: str = "--batch-size") -> int:
    """``min(batch_size, examples)``, with one note the first time a batch is clamped.

    Args:
        batch_size: the requested batch size.
        examples: how many examples the dataset holds (at least 1 is used).
        flag: the flag to name in the note.

    Returns:
        The batch size to build the dataset with.
    """
    examples = max(1, int(examples))
    if batch_size <= examples:
        return batch_size
    if (flag, batch_size, examples) not in _noted:
        _noted.add((flag, batch_size, examples))
        log.warning("%s %d is larger than the %d examples: using batches of %d", flag, batch_size, examples, examples)
    return examples
