"""lstm_core: the one LSTM of lstm-suite (cell, layer, TFLite/LiteRT export, task plumbing)."""

import os

# TensorFlow's C++ INFO/WARNING lines drown the CLI's progress output; an explicit setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from lstm_core.cell import LSTMCell  # noqa: E402
from lstm_core.layer import LSTM  # noqa: E402

__all__ = ["LSTM", "LSTMCell"]
__version__ = "0.1.0"
