"""Keep TensorFlow's start-up and converter noise (absl, oneDNN, CUDA stubs, MLIR) off the terminal.

TensorFlow writes these lines from C++ straight to file descriptor 2, before and regardless of
Python logging, so the only reliable filter is to point fd 2 elsewhere while they are printed.
What was captured is replayed if the guarded code fails, so a real error is never hidden.
``--verbose`` (``LSTM_SUITE_VERBOSE=1``) turns all of this off.
"""

from __future__ import annotations

import contextlib
import os

from lstm_core._capture import captured_output

VERBOSE_ENV = "LSTM_SUITE_VERBOSE"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


@contextlib.contextmanager
def silenced_output(streams=("stderr",)):
    """Send the file descriptors of ``streams`` (stdout/stderr) to a temporary file for the block.

    What was captured is replayed on stderr if the block raises, so a real error is never hidden.
    """
    if verbose():
        yield
        return
    with captured_output(streams):
        yield


def silenced_stderr():
    """:func:`silenced_output` for stderr only (TensorFlow's start-up lines)."""
    return silenced_output(("stderr",))


def import_tensorflow_quietly(first_op: bool = True) -> None:
    """Import TensorFlow and Keras with their start-up lines hidden (unless verbose).

    ``first_op=False`` leaves TensorFlow's context unstarted (``--distribute multi-worker`` must
    configure its collectives before anything runs)."""
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    with silenced_stderr():
        import tensorflow as tf  # noqa: F401
        import keras  # noqa: F401

        if first_op:
            tf.constant(0.0) + 1.0  # the CPU-feature and oneDNN lines come with the first op
    if not verbose():
        import logging as std_logging

        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
        tf.get_logger().setLevel(std_logging.ERROR)
