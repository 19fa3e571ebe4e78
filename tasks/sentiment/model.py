"""The sentiment model: token ids → Embedding(mask_zero) → [Bidirectional] lstm_core.LSTM → Dense."""

from __future__ import annotations

import dataclasses

import keras

from lstm_core import LSTM
from lstm_core.errors import UserError

POOLINGS = ("last", "mean")


@dataclasses.dataclass
class ModelConfig:
    """Architecture; ``vocab_size`` is filled in from the trained tokenizer."""

    vocab_size: int = 8000
    embedding_dim: int = 128
    units: int = 64
    bidirectional: bool = True
    pooling: str = "last"  # "last": final LSTM output(s); "mean": masked mean over time
    embedding_dropout: float = 0.2  # SpatialDropout1D: drops whole embedding channels
    dropout: float = 0.5  # before the classifier
    recurrent_dropout: float = 0.0  # > 0 takes lstm_core's general (slower) loop in training
    l2: float = 0.0  # weight decay on the embedding and LSTM kernels

    def validate(self) -> "ModelConfig":
        if self.pooling not in POOLINGS:
            raise UserError(f"--pooling must be one of {POOLINGS}, got {self.pooling!r}")
        for name in ("embedding_dim", "units", "vocab_size"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("embedding_dropout", "dropout", "recurrent_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")
        return self


def build_model(config: ModelConfig, seed: int | None = None) -> keras.Model:
    """Functional model: ``int32 token ids [B, T]`` (0 = padding) → ``P(positive) [B, 1]``."""
    config.validate()
    reg = keras.regularizers.l2(config.l2) if config.l2 > 0 else None
    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(
        config.vocab_size,
        config.embedding_dim,
        mask_zero=True,
        embeddings_regularizer=reg,
        name="embedding",
    )(ids)
    if config.embedding_dropout > 0:
        x = keras.layers.SpatialDropout1D(config.embedding_dropout, seed=seed, name="embedding_dropout")(x)
    lstm = LSTM(
        config.units,
        return_sequences=config.pooling != "last",
        recurrent_dropout=config.recurrent_dropout,
        kernel_regularizer=reg,
        seed=seed,
        name="lstm",
    )
    if config.bidirectional:
        x = keras.layers.Bidirectional(lstm, name="bidirectional")(x)
    else:
        x = lstm(x)
    if config.pooling == "mean":
        x = keras.layers.GlobalAveragePooling1D(name="mean_pool")(x)
    if config.dropout > 0:
        x = keras.layers.Dropout(config.dropout, seed=seed, name="dropout")(x)
    probability = keras.layers.Dense(1, activation="sigmoid", name="probability")(x)
    return keras.Model(ids, probability, name="sentiment_lstm")
