"""Greedy and beam search on a toy backend whose probabilities are known."""

import math

import numpy as np

from tasks.translation.data import BOS_ID, EOS_ID
from tasks.translation.decode import BeamConfig, beam_decode, default_max_length, greedy_decode

A, B, C, V = 4, 5, 6, 7


class ToyBackend:
    """P(A|<s>)=.55, P(B|<s>)=.45; after A: B .6 / C .4, then </s>; after a first B: </s> .99.

    Greedy takes A then B = .33; the best sequence is [B] = .4455.
    ``h`` carries (step, first token).
    """

    def __init__(self, never_stop=False):
        self.never_stop = never_stop
        self.calls = 0

    def encode(self, src):
        n = len(src)
        return np.zeros((n, src.shape[1], 1), np.float32), np.zeros((n, src.shape[1], 1), np.float32), np.zeros((n, 2), np.float32), np.zeros((n, 2), np.float32)

    def step(self, token, h, c, memory, keys, mask):
        self.calls += 1
        logits = np.full((len(token), V), -30.0)
        h = h.copy()
        for i, t in enumerate(token):
            first = h[i, 1]
            if self.never_stop:
                logits[i, A] = 0.0
            elif t == BOS_ID:
                logits[i, A], logits[i, B] = math.log(0.55), math.log(0.45)
            elif t == A:
                logits[i, B], logits[i, C] = math.log(0.6), math.log(0.4)
            elif t == B and first == B:
                logits[i, EOS_ID], logits[i, C] = math.log(0.99), math.log(0.01)
            else:
                logits[i, EOS_ID] = 0.0
            if h[i, 0] == 0:
                h[i, 1] = -1
            elif h[i, 0] == 1:
                h[i, 1] = t
            h[i, 0] += 1
        # the "first token" is recorded one step late; shift so it is visible when it is the input
        h[:, 1] = np.where(h[:, 0] == 1, token, h[:, 1])
        return logits, h, c


def _sources(n, length=3):
    return [[8] * length + [EOS_ID] for _ in range(n)]


def test_greedy_takes_locally_best_tokens():
    assert greedy_decode(ToyBackend(), _sources(3)) == [[A, B]] * 3


def test_beam_finds_the_more_probable_sequence():
    assert beam_decode(ToyBackend(), _sources(2), BeamConfig(width=2, length_penalty=0.0)) == [[B]] * 2
    assert beam_decode(ToyBackend(), _sources(2), BeamConfig(width=1)) == [[A, B]] * 2


def test_length_penalty_favours_longer_hypotheses():
    # log .33 / lp(3) vs log .4455 / lp(2): a strong alpha prefers the longer one
    alpha = 4.0
    lp = lambda n: ((5 + n) / 6) ** alpha  # noqa: E731
    assert math.log(0.33) / lp(3) > math.log(0.4455) / lp(2)
    assert beam_decode(ToyBackend(), _sources(1), BeamConfig(width=3, length_penalty=alpha), max_length=5) == [[A, B]]


def test_output_budget_is_per_sentence_not_per_batch():
    # a model that never emits </s> stops at each sentence's own budget, whatever the batch
    sources = [[9] * n + [EOS_ID] for n in (1, 5, 2)]
    together = greedy_decode(ToyBackend(never_stop=True), sources, batch_size=8)
    alone = [greedy_decode(ToyBackend(never_stop=True), [s])[0] for s in sources]
    assert together == alone
    assert [len(o) for o in together] == [default_max_length(len(s)) for s in sources]
    beams = beam_decode(ToyBackend(never_stop=True), sources, BeamConfig(width=2), batch_size=8)
    assert [len(o) for o in beams] == [default_max_length(len(s)) for s in sources]
