"""Model construction and masking; stdin texts for predict."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

from lstm_core.errors import UserError
from tasks.sentiment.model import ModelConfig, build_model


@pytest.mark.parametrize("bidirectional, pooling", [(True, "last"), (False, "mean")])
def test_padding_is_masked(bidirectional, pooling):
    config = ModelConfig(vocab_size=50, embedding_dim=8, units=4, bidirectional=bidirectional, pooling=pooling)
    model = build_model(config, seed=0)
    short = np.array([[5, 6, 7]], np.int32)
    padded = np.array([[5, 6, 7, 0, 0, 0]], np.int32)
    a, b = np.asarray(model(short)), np.asarray(model(padded))
    assert a.shape == (1, 1) and 0.0 < a[0, 0] < 1.0
    np.testing.assert_allclose(a, b, atol=1e-6)
    # and the padded tokens really are padding: another real token changes the output
    assert not np.allclose(a, np.asarray(model(np.array([[5, 6, 7, 8]], np.int32))), atol=1e-7)


def test_bad_model_config():
    with pytest.raises(UserError, match="--pooling"):
        ModelConfig(pooling="max").validate()
    with pytest.raises(UserError, match="--dropout"):
        ModelConfig(dropout=1.5).validate()


def test_stdin_texts(monkeypatch):
    from tasks.sentiment.evaluate import read_stdin_texts

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("good film\n\n  \nbad film\n".encode())))
    assert read_stdin_texts() == ["good film", "bad film"]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ok\n\xff\n")))
    with pytest.raises(UserError, match="<stdin>:2"):
        read_stdin_texts()
