"""The fixed-length TFLM models equal the Keras encoder / decoder step on the real positions."""

import numpy as np
import pytest

from tasks.translation import data
from tasks.translation.config import ModelConfig
from tasks.translation.decode import TFLMBackend, mcu_order, padded_source
from tasks.translation.model import build, mcu_models


def test_order_reverses_the_real_tokens_only():
    assert mcu_order(3, 6).tolist() == [[2, 1, 0, 3, 4, 5]]
    padded, order, mask = padded_source([7, 8, 9, 10, data.EOS_ID], 4)
    assert padded.tolist() == [[7, 8, 9, data.EOS_ID]]  # cut to S - 1 pieces + </s>
    assert order.tolist() == [[3, 2, 1, 0]] and mask.tolist() == [[1, 1, 1, 1]]


@pytest.mark.parametrize("bidirectional", [True, False])
def test_fixed_length_models_match_keras(bidirectional):
    config = ModelConfig(embedding_dim=8, units=6, decoder_units=10, bidirectional=bidirectional,
                         src_vocab_size=30, tgt_vocab_size=25, dropout=0)
    seq2seq = build(config)
    encoder, step = mcu_models(seq2seq, source_length=9)
    rng = np.random.default_rng(0)
    for length in (1, 4, 9):
        ids = list(rng.integers(4, 30, length - 1)) + [data.EOS_ID]
        padded, order, mask = padded_source(ids, 9)
        got = [np.asarray(t) for t in encoder([padded, order])]
        want = [np.asarray(t) for t in seq2seq.encoder(np.asarray([ids], np.int32))]
        np.testing.assert_allclose(got[0][:, :length], want[0], atol=1e-5)  # memory at the real positions
        np.testing.assert_allclose(got[1][:, :length], want[1], atol=1e-5)  # attention keys
        np.testing.assert_allclose(got[2], want[2], atol=1e-5)
        np.testing.assert_allclose(got[3], want[3], atol=1e-5)
        token = np.asarray([data.BOS_ID], np.int32)
        logits = np.asarray(step([token, want[2], want[3], got[0], got[1], mask])[0])
        expected = np.asarray(seq2seq.step([token, want[2], want[3], want[0], want[1], np.ones((1, length), np.float32)])[0])
        np.testing.assert_allclose(logits, expected, atol=1e-4)


class _Recorder:
    def __init__(self, shape):
        self.input_details = [{"shape": np.asarray(shape)}]
        self.calls = []

    def __call__(self, *inputs):
        self.calls.append([np.asarray(i) for i in inputs])
        return [np.zeros(1)]


def test_tflm_backend_pads_cuts_and_masks():
    backend = TFLMBackend.__new__(TFLMBackend)
    backend.encoder, backend.stepper = _Recorder((1, 5)), _Recorder((1, 5))
    backend.source_length, backend.truncated = 5, 0
    backend.encode(np.asarray([[9, 8, 7, 6, 5, 4, data.EOS_ID]], np.int32))
    padded, order = backend.encoder.calls[0]
    assert padded.tolist() == [[9, 8, 7, 6, data.EOS_ID]] and backend.truncated == 1
    assert order.tolist() == [[4, 3, 2, 1, 0]]
    backend.step(np.asarray([2]), None, None, None, None, np.ones((1, 3), np.float32))
    assert backend.stepper.calls[0][-1].tolist() == [[1, 1, 1, 0, 0]]


def test_tied_embeddings_one_table_saved_and_stepped(tmp_path):
    """--tie-embeddings: the output projection is the target table; training, step and TFLM step agree."""
    import keras

    config = ModelConfig(embedding_dim=8, units=6, decoder_units=10, src_vocab_size=30, tgt_vocab_size=25,
                         dropout=0, tie_embeddings=True, word_dropout=0.5)
    seq2seq = build(config)
    assert not any(layer.name == "logits" for layer in seq2seq.training.layers)
    src, tgt = np.asarray([[5, 6, 7, data.EOS_ID]], np.int32), np.asarray([[data.BOS_ID, 9]], np.int32)
    seq2seq.training.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    logits = np.asarray(loaded([src, tgt]))
    np.testing.assert_allclose(logits, np.asarray(seq2seq.training([src, tgt])), atol=1e-6)
    # word dropout only acts while training
    assert not np.allclose(np.asarray(seq2seq.training([src, tgt], training=True)), logits, atol=1e-4)
    memory, keys, h, c = [np.asarray(t) for t in seq2seq.encoder(src)]
    token = np.asarray([data.BOS_ID], np.int32)
    step_logits = np.asarray(seq2seq.step([token, h, c, memory, keys, np.ones((1, 4), np.float32)])[0])
    np.testing.assert_allclose(step_logits, logits[:, 0], atol=1e-5)
    _, mcu_step = mcu_models(seq2seq, source_length=6)
    padded, _, mask = padded_source(src[0].tolist(), 6)
    pad = np.zeros((1, 2) + memory.shape[2:], np.float32)
    mcu_logits = np.asarray(mcu_step([token, h, c, np.concatenate([memory, pad], 1),
                                      np.concatenate([keys, np.zeros((1, 2, keys.shape[2]), np.float32)], 1), mask])[0])
    np.testing.assert_allclose(mcu_logits, step_logits, atol=1e-4)
