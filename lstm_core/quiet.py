"""Keep TensorFlow's start-up and converter noise (absl, oneDNN, CUDA stubs, MLIR) off the terminal.

TensorFlow writes these lines from C++ straight to file descriptor 2, before and regardless of
Python logging, so the only reliable filter is to point fd 2 elsewhere while they are printed.
What was captured is replayed if the guarded code fails, so a real error is never hidden.
``--verbose`` (``LSTM_SUITE_VERBOSE=1``) turns all of this off.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

VERBOSE_ENV = "LSTM_SUITE_VERBOSE"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


@contextlib.contextmanager
def silenced_stderr():
    """Send fd 2 to a temporary file for the block; replay it if the block raises."""
    if verbose():
        yield
        return
    try:
        stderr_fd = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):  # pytest capture, notebooks: nothing to redirect
        yield
        return
    sys.stderr.flush()
    saved = os.dup(stderr_fd)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), stderr_fd)
        try:
            yield
        except BaseException:
            sys.stderr.flush()
            os.dup2(saved, stderr_fd)
            capture.seek(0)
            os.write(stderr_fd, capture.read()[-20000:])
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, stderr_fd)
            os.close(saved)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and Keras with their start-up lines hidden (unless verbose)."""
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    with silenced_stderr():
        import tensorflow as tf  # noqa: F401
        import keras  # noqa: F401

        tf.constant(0.0) + 1.0  # the CPU-feature and oneDNN lines come with the first op
    if not verbose():
        import logging as std_logging

        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
        tf.get_logger().setLevel(std_logging.ERROR)
