"""lstm_core: one fast, TFLite-fusable LSTM for Keras 3 (cell, layer, native CPU kernel, cuDNN
dispatch, streaming, LiteRT and TensorFlow Lite Micro export).

A library: it imports nothing from the lstm-suite application (``tasks``), has no command line or
settings, and importing it changes no process-wide state. ``LSTM`` and ``LSTMCell`` are imported
on first use, so ``import lstm_core`` does not load TensorFlow. Code that deserialises ``.keras``
files imports ``lstm_core.layer`` (it registers the classes).
"""

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
