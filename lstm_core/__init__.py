"""lstm_core: the one LSTM of lstm-suite (cell, layer, TFLite/LiteRT/TFLM export, task plumbing).

``LSTM`` and ``LSTMCell`` are imported on first use, so the plumbing modules (``lstm_core.cli``,
``lstm_core.config``, ``lstm_core.errors``) load without TensorFlow: ``--help`` stays instant.
Code that deserialises ``.keras`` files imports ``lstm_core.layer`` (it registers the classes).
"""

import os

# TensorFlow's C++ INFO/WARNING lines drown the CLI's progress output; an explicit setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__all__ = ["LSTM", "LSTMCell"]
__version__ = "0.1.0"


def __getattr__(name):
    if name == "LSTM":
        from lstm_core.layer import LSTM

        return LSTM
    if name == "LSTMCell":
        from lstm_core.cell import LSTMCell

        return LSTMCell
    raise AttributeError(f"module 'lstm_core' has no attribute {name!r}")
