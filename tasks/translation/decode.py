"""Greedy and beam-search decoding over an encoder + one-step decoder (Keras, LiteRT or TFLM).

Every backend exposes the same two calls, so one decoding loop serves all runtimes:
  * ``encode(src_ids [B,S] int32) -> (memory, keys, h0, c0)``
  * ``step(token [B], h, c, memory, keys, src_mask) -> (logits [B,V], h, c)``
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

import numpy as np

from tasks.translation.config import DecodeConfig
from tasks.translation.data import BOS_ID, EOS_ID, PAD_ID, Tokenizer, pad, source_ids

log = logging.getLogger(__name__)


def default_max_length(src_len: int) -> int:
    """Output budget per sentence: generous for short Tatoeba-style sentences."""
    return int(2 * src_len + 10)


class KerasBackend:
    """Runs ``Seq2Seq.encoder`` / ``Seq2Seq.step`` as compiled ``tf.function``s."""

    def __init__(self, seq2seq):
        import tensorflow as tf

        self.seq2seq = seq2seq
        encoder, step = seq2seq.encoder, seq2seq.step
        self._encode = tf.function(lambda s: encoder(s, training=False), reduce_retracing=True)
        self._step = tf.function(lambda *a: step(list(a), training=False), reduce_retracing=True)

    def encode(self, src):
        return [np.asarray(t) for t in self._encode(np.asarray(src, np.int32))]

    def step(self, token, h, c, memory, keys, src_mask):
        out = self._step(np.asarray(token, np.int32), h, c, memory, keys, src_mask)
        return [np.asarray(t) for t in out]


class LiteRTBackend:
    """Runs the exported ``encoder_*.tflite`` / ``decoder_step_*.tflite`` with LiteRT (batch 1 each)."""

    batch_size = 1

    def __init__(self, encoder_path, step_path):
        from lstm_core.export import TFLiteModel
        from tasks.common.quiet import silenced_stderr

        with silenced_stderr():  # LiteRT's "Created XNNPACK delegate" lines
            self.encoder = TFLiteModel(encoder_path)
            self.stepper = TFLiteModel(step_path)
            self.encoder.interpreter.allocate_tensors()
            self.stepper.interpreter.allocate_tensors()

    def encode(self, src):
        return self.encoder(np.asarray(src, np.int32))

    def step(self, token, h, c, memory, keys, src_mask):
        return self.stepper(np.asarray(token, np.int32), h, c, memory, keys, src_mask)


def mcu_order(length: int, source_length: int) -> np.ndarray:
    """The ``order`` input [1, S] of the TFLM encoder: ``L - 1 - p`` for the ``L`` real tokens, then ``p``."""
    order = np.arange(source_length, dtype=np.int32)
    order[:length] = order[:length][::-1]
    return order[None]


def padded_source(ids, source_length: int):
    """(source_ids, order, source_mask), each [1, S], of one sentence for the fixed-length TFLM models.

    Sentences longer than ``S`` keep their first ``S - 1`` pieces and ``</s>``.
    """
    ids = [int(i) for i in ids if i != PAD_ID]
    if len(ids) > source_length:
        ids = ids[: source_length - 1] + [EOS_ID]
    padded = np.zeros((1, source_length), np.int32)
    padded[0, : len(ids)] = ids
    mask = np.zeros((1, source_length), np.float32)
    mask[0, : len(ids)] = 1.0
    return padded, mcu_order(len(ids), source_length), mask


class TFLMBackend:
    """Runs the fixed-length ``tflm/encoder_int8.tflite`` / ``tflm/decoder_step_int8.tflite`` in TFLite Micro.

    Sources are right-padded to the export's length ``S`` (longer ones are cut, counted in
    ``truncated``); the decoder step gets the padding mask, so padding changes nothing but
    the int8 rounding. This is the loop firmware runs: encoder once, then step until ``</s>``.
    """

    batch_size = 1

    def __init__(self, encoder_path, step_path):
        from lstm_core.tflm import TFLMModel

        self.encoder = TFLMModel(encoder_path)
        self.stepper = TFLMModel(step_path)
        self.source_length = int(self.encoder.input_details[0]["shape"][1])
        self.truncated = 0

    def encode(self, src):
        src = np.asarray(src, np.int32)
        if src.shape[0] != 1:
            raise ValueError("TFLM decodes one sentence at a time")
        real = [int(i) for i in src[0] if i != PAD_ID]
        if len(real) > self.source_length:
            self.truncated += 1
        padded, order, _ = padded_source(real, self.source_length)
        return self.encoder(padded, order)

    def step(self, token, h, c, memory, keys, src_mask):
        mask = np.zeros((1, self.source_length), np.float32)
        length = min(int(np.asarray(src_mask).sum()), self.source_length)
        mask[0, :length] = 1.0
        return self.stepper(np.asarray(token, np.int32), h, c, memory, keys, mask)


def _batches(seqs, batch_size):
    # Sort by length so batches carry little padding; restore the order afterwards.
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def greedy_decode(backend, src_ids: Sequence[Sequence[int]], *, batch_size: int = 64, max_length: int | None = None):
    """Greedy decoding; returns target ids (without BOS/EOS) per source sentence."""
    batch_size = getattr(backend, "batch_size", batch_size)
    results: list[list[int]] = [None] * len(src_ids)  # type: ignore[list-item]
    for idx in _batches(src_ids, batch_size):
        src = pad([src_ids[i] for i in idx])
        mask = (src != PAD_ID).astype(np.float32)
        memory, keys, h, c = backend.encode(src)
        # the output budget is per sentence, so batching/padding never changes a translation
        limits = _limits([src_ids[i] for i in idx], max_length)
        token = np.full((len(idx),), BOS_ID, np.int32)
        out = np.zeros((len(idx), int(limits.max())), np.int32)
        done = np.zeros(len(idx), bool)
        for t in range(int(limits.max())):
            logits, h, c = backend.step(token, h, c, memory, keys, mask)
            token = np.argmax(logits, axis=-1).astype(np.int32)
            token[done] = PAD_ID
            out[:, t] = token
            done |= (token == EOS_ID) | (t + 1 >= limits)
            if done.all():
                break
        for row, i in enumerate(idx):
            seq = [int(x) for x in out[row]]
            results[i] = seq[: seq.index(EOS_ID)] if EOS_ID in seq else [x for x in seq if x != PAD_ID]
    return results


def _limits(seqs, max_length):
    if max_length:
        return np.full(len(seqs), max_length, np.int64)
    return np.asarray([default_max_length(len(s)) for s in seqs], np.int64)


@dataclasses.dataclass
class BeamConfig:
    width: int = 4
    length_penalty: float = 0.6  # GNMT: score / ((5 + len) / 6) ** alpha; 0 = raw log-prob


def _log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _lp(length, alpha):
    return ((5.0 + length) / 6.0) ** alpha if alpha else 1.0


def beam_decode(
    backend,
    src_ids: Sequence[Sequence[int]],
    beam: BeamConfig = BeamConfig(),
    *,
    batch_size: int = 32,
    max_length: int | None = None,
):
    """Beam search (width ``beam.width``, GNMT length penalty); best hypothesis per sentence.

    Finished hypotheses are ranked by ``log P / lp(len)``; a sentence stops when it has
    ``width`` finished hypotheses and no live one can still beat them, or at its length budget.
    """
    if beam.width <= 1:
        return greedy_decode(backend, src_ids, batch_size=batch_size, max_length=max_length)
    ranked = beam_search(backend, src_ids, beam, batch_size=batch_size, max_length=max_length)
    return [hypotheses[0][1] if hypotheses else [] for hypotheses in ranked]


def beam_search(backend, src_ids: Sequence[Sequence[int]], beam: BeamConfig = BeamConfig(), *,
                batch_size: int = 32, max_length: int | None = None) -> list[list[tuple[float, list[int]]]]:
    """Every finished ``(log P / lp(len), target ids)`` of a beam search per sentence, best first.

    The search of :func:`beam_decode` (which keeps the first); on a batch-1 backend (LiteRT,
    TFLM) the ``K`` live hypotheses are stepped one by one through the exported decoder step.
    """
    batch_size = getattr(backend, "batch_size", batch_size)
    stepper = _per_row_step(backend) if getattr(backend, "batch_size", None) == 1 else backend.step
    results: list[list[tuple[float, list[int]]]] = [None] * len(src_ids)  # type: ignore[list-item]
    for idx in _batches(src_ids, batch_size):
        batch = [src_ids[i] for i in idx]
        finished = _Beams(backend, stepper, batch, beam, _limits(batch, max_length)).search()
        for b, i in enumerate(idx):
            results[i] = sorted(finished[b], key=lambda f: -f[0])  # stable: equal scores keep their order
    return results


class _Beams:
    """The beam search state of one batch: ``K`` live hypotheses per sentence (scores, last
    tokens, histories, LSTM states) and each sentence's finished ``(score / lp, tokens)``."""

    def __init__(self, backend, stepper, sources, beam: BeamConfig, limits):
        self.stepper, self.limits = stepper, limits
        self.K, self.alpha, self.B = beam.width, beam.length_penalty, len(sources)
        src = pad(sources)
        memory, keys, h, c = backend.encode(src)
        mask = (src != PAD_ID).astype(np.float32)
        rep = lambda a: np.repeat(a, self.K, axis=0)  # noqa: E731
        self.memory, self.keys, self.mask, self.h, self.c = rep(memory), rep(keys), rep(mask), rep(h), rep(c)
        self.scores = np.full((self.B, self.K), -np.inf)
        self.scores[:, 0] = 0.0  # one live hypothesis (<s>) per sentence at t=0
        self.tokens = np.full((self.B * self.K,), BOS_ID, np.int32)
        self.history = np.zeros((self.B, self.K, 0), np.int32)
        self.finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(self.B)]
        self.active = np.ones(self.B, bool)

    def search(self) -> list[list[tuple[float, list[int]]]]:
        for t in range(int(self.limits.max())):
            self.advance()
            self.retire(t)
            if not self.active.any():
                break
        return self.finished

    def advance(self) -> None:
        """One decoder step: every live hypothesis grows by its best tokens; ``</s>`` finishes one."""
        B, K = self.B, self.K
        logits, h, c = self.stepper(self.tokens, self.h, self.c, self.memory, self.keys, self.mask)
        logp = _log_softmax(logits.astype(np.float64)).reshape(B, K, -1)
        cand = (self.scores[:, :, None] + logp).reshape(B, K * logp.shape[-1])
        new_scores, new_beams, new_tokens = self._best_continuations(cand, logp.shape[-1])
        sel = (np.arange(B)[:, None] * K + new_beams).reshape(-1)
        self.h, self.c = h[sel], c[sel]
        self.history = np.concatenate(
            [self.history[np.arange(B)[:, None], new_beams], new_tokens[:, :, None]], axis=2)
        self.scores, self.tokens = new_scores, new_tokens.reshape(-1)

    def _best_continuations(self, cand, V):
        """``(scores, parent beam, token)`` of the ``K`` best non-``</s>`` candidates per active
        sentence; candidates ending in ``</s>`` on the way are added to ``finished``."""
        B, K = self.B, self.K
        top = np.argsort(-cand, axis=1)[:, : 2 * K]
        new_scores = np.full((B, K), -np.inf)
        new_beams = np.zeros((B, K), np.int64)
        new_tokens = np.full((B, K), PAD_ID, np.int32)
        for b in np.flatnonzero(self.active):
            filled = 0
            for flat in top[b]:
                score = cand[b, flat]
                if not np.isfinite(score):
                    break
                k, tok = divmod(int(flat), V)
                if tok == EOS_ID:
                    hyp = [int(x) for x in self.history[b, k]]
                    self.finished[b].append((score / _lp(len(hyp) + 1, self.alpha), hyp))
                    continue
                new_scores[b, filled], new_beams[b, filled], new_tokens[b, filled] = score, k, tok
                filled += 1
                if filled == K:
                    break
        return new_scores, new_beams, new_tokens

    def retire(self, t: int) -> None:
        """Stop the sentences that are out of budget after step ``t`` or cannot improve any more."""
        for b in np.flatnonzero(self.active):
            if t + 1 >= self.limits[b]:  # out of budget: live hypotheses end here
                for k in range(self.K):
                    if np.isfinite(self.scores[b, k]):
                        hyp = [int(x) for x in self.history[b, k]]
                        self.finished[b].append((self.scores[b, k] / _lp(t + 1, self.alpha), hyp))
                self.active[b] = False
            elif len(self.finished[b]) >= self.K:
                # live scores only decrease; the best they can reach is score / lp(limit)
                bound = self.scores[b].max() / _lp(int(self.limits[b]), self.alpha)
                if bound <= max(f[0] for f in self.finished[b]):
                    self.active[b] = False
            if not self.active[b]:
                self.scores[b] = -np.inf


def _per_row_step(backend):
    def step(tokens, h, c, memory, keys, mask):
        outs = [backend.step(tokens[i : i + 1], h[i : i + 1], c[i : i + 1], memory[i : i + 1], keys[i : i + 1], mask[i : i + 1]) for i in range(len(tokens))]
        return [np.concatenate([o[j] for o in outs], axis=0) for j in range(3)]

    return step


def translate(backend, source_tokenizer: Tokenizer, target_tokenizer: Tokenizer, sentences, decoding: DecodeConfig | None = None,
              *, max_length: int | None = None):
    """(detokenized translations, target ids) of ``sentences``; greedy when ``decoding.beam`` is 1."""
    decoding = decoding or DecodeConfig()
    ids = source_ids(source_tokenizer, sentences)
    if decoding.beam > 1:
        out = beam_decode(backend, ids, BeamConfig(decoding.beam, decoding.length_penalty), max_length=max_length)
    else:
        out = greedy_decode(backend, ids, max_length=max_length)
    return target_tokenizer.decode(out), out


def translate_nbest(backend, source_tokenizer: Tokenizer, target_tokenizer: Tokenizer, sentences, n: int,
                    decoding: DecodeConfig | None = None) -> list[list[tuple[float, str]]]:
    """The ``n`` best ``(score, translation)`` of each sentence, best first (beam width ``max(n, --beam)``).

    Scores are the beam's ``log P / lp(len)`` (higher is better; 0 is certainty).
    """
    decoding = decoding or DecodeConfig()
    ranked = beam_search(backend, source_ids(source_tokenizer, sentences),
                         BeamConfig(max(n, decoding.beam, 2), decoding.length_penalty))
    return [[(float(score), target_tokenizer.decode([ids])[0]) for score, ids in hypotheses[:n]]
            for hypotheses in ranked]
