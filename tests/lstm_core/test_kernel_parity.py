"""test_layer's parity cases against keras.layers.LSTM, re-run with the kernel forced on and off.

Imported into this module, the tests run under ``choice`` below; each run also checks that the
native kernel ran exactly when it should (forced on, standard activations) so a silent fallback
cannot make these pass.
"""

import pytest

from lstm_core import kernels
from test_layer import (  # noqa: F401  (collected again here, under the fixture)
    test_bidirectional_masked_model_matches_keras,
    test_dropout_trains_and_is_off_at_inference,
    test_gradients_match_keras,
    test_gradients_match_keras_masked_bidirectional,
    test_initial_state_matches_keras,
    test_masked_batch_matches_keras,
    test_matches_keras_lstm,
    test_stateful_carries_state_across_calls,
)


@pytest.fixture(autouse=True, params=["native", "tf"])
def choice(request, monkeypatch):
    monkeypatch.setenv(kernels.CHOICE_ENV, request.param)
    calls = []
    real = kernels.lstm_sequence
    monkeypatch.setattr(kernels, "lstm_sequence", lambda *a, **k: calls.append(1) or real(*a, **k))
    yield request.param
    standard = "relu" not in request.node.name
    assert bool(calls) == (request.param == "native" and standard)
