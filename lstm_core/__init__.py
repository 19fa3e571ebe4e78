"""lstm_core: the one LSTM of lstm-suite (cell, layer, TFLite/LiteRT export, task plumbing)."""

from lstm_core.cell import LSTMCell
from lstm_core.layer import LSTM

__all__ = ["LSTM", "LSTMCell"]
__version__ = "0.1.0"
