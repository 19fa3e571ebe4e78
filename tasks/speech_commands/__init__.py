"""Keyword spotting from raw 16 kHz audio: log-mel (tf.signal, inside the model) -> lstm_core.LSTM.

``lstm-suite speech_commands train|evaluate|export|predict``; see README.md in this folder.
"""
