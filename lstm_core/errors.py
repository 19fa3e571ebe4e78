"""Exceptions lstm_core raises about its inputs (models, files, options).

They subclass the built-in exception a Python user would expect (``ValueError`` for a bad
argument or model, ``RuntimeError`` for a check that failed), so ordinary ``except`` clauses work,
and they share :class:`LstmCoreError`, so an application (the lstm-suite CLI, for one) can turn
every one of them into its own error message without catching unrelated bugs.
"""

from __future__ import annotations

__all__ = ["LstmCoreError", "ExportMismatchError", "InvalidModelError", "TFLMError"]


class LstmCoreError(Exception):
    """Base of every exception lstm_core raises on purpose; the message says what to fix."""


class ExportMismatchError(LstmCoreError, RuntimeError):
    """A converted model disagrees with the Keras model it came from; nothing was written."""


class InvalidModelError(LstmCoreError, ValueError):
    """A ``.tflite`` file or model that cannot be read or does not fit the requested operation."""


class TFLMError(LstmCoreError, RuntimeError):
    """TensorFlow Lite Micro cannot load or run a model (the message names the op and TFLM's reason)."""
