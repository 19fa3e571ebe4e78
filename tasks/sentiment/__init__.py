"""Sentence-level sentiment analysis: sentencepiece → Embedding → lstm_core.LSTM → Dense.

``lstm-suite sentiment train|evaluate|export|predict``; see ``tasks/sentiment/README.md``.
"""
