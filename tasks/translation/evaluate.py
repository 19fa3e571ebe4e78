"""``lstm-suite translation evaluate`` / ``predict``: sacrebleu BLEU + chrF in Keras, LiteRT or TFLM."""

from __future__ import annotations

import dataclasses
import logging
import time

from tasks.common.artifacts import evaluation_result
from tasks.common.config import EvaluateConfig, PredictConfig
from tasks.common.errors import UserError
from tasks.common.io import write_bytes_atomic
from tasks.translation.artifacts import TranslationModelDir
from tasks.translation.config import DecodeConfig
from tasks.translation.data import held_out_pairs, held_out_test_pairs, load_pairs
from tasks.translation.decode import KerasBackend, LiteRTBackend, TFLMBackend, translate, translate_nbest
from tasks.translation.metrics import corpus_scores

log = logging.getLogger(__name__)

TRANSLATIONS_FILE = "translations_{runtime}.txt"  # one per runtime, as every task names its evaluation files


def backend_for(directory: TranslationModelDir, runtime: str):
    """The decoding backend of ``runtime``: the Keras model, or the exported encoder + decoder step."""
    if runtime == "keras":
        from tasks.translation.model import load_seq2seq

        return KerasBackend(load_seq2seq(directory))
    encoder, step = directory.export_parts(runtime)
    if runtime == "tflm":
        return TFLMBackend(encoder, step)
    return LiteRTBackend(encoder, step)


def _evaluation_pairs(directory: TranslationModelDir, config: EvaluateConfig):
    """``(pairs, name)``: ``--data``, else the model's test file, else its validation pairs."""
    if config.data:
        pairs = load_pairs(config.data, default_split="validation", limit=config.limit,
                           source_lang=directory.data.source_lang, target_lang=directory.data.target_lang)
        return pairs, config.data
    pairs, data = held_out_test_pairs(directory.data, config.limit)
    if pairs is not None:
        log.info("scoring the model's test file: %s", data)
        return pairs, data
    pairs, data = held_out_pairs(directory.data, directory.train.seed, config.limit)
    log.info("scoring the model's validation pairs (it has no test file): %s", data)
    return pairs, data


def evaluate(config: EvaluateConfig, decoding: DecodeConfig | None = None) -> dict:
    """Corpus BLEU/chrF of ``config.model`` on ``config.data`` (default: the model's test file, else
    its validation pairs), greedy and with the ``--beam`` search side by side.

    ``bleu``/``chrf`` are the ``--beam`` decoding's; ``greedy_*`` and ``beam_*`` both decodings'
    (``beam_*`` only when ``--beam`` > 1). Writes the ``--beam`` translations (one per line) to
    ``translations_<runtime>.txt`` in the evaluation folder.
    """
    decoding = decoding or DecodeConfig()
    directory = TranslationModelDir.open(config.model)
    source_tokenizer, target_tokenizer = directory.tokenizers()
    backend = backend_for(directory, config.runtime)
    pairs, data = _evaluation_pairs(directory, config)
    sources, references = [p[0] for p in pairs], [p[1] for p in pairs]
    started = time.time()
    side_by_side, hypotheses = {}, None
    for beam, name in [(1, "greedy")] + ([(decoding.beam, "beam")] if decoding.beam > 1 else []):
        if isinstance(backend, TFLMBackend):
            backend.truncated = 0
        hypotheses, _ = translate(backend, source_tokenizer, target_tokenizer, sources,
                                  dataclasses.replace(decoding, beam=beam))
        scores = corpus_scores(hypotheses, references)
        side_by_side.update({f"{name}_bleu": scores["bleu"], f"{name}_chrf": scores["chrf"]})
    seconds = time.time() - started
    extra = {}
    if isinstance(backend, TFLMBackend):
        extra["truncated_sources"] = backend.truncated
        if backend.truncated:
            log.warning("%d source sentence(s) longer than the TFLM export's %d tokens were cut",
                        backend.truncated, backend.source_length)
    folder = directory.evaluation_dir(config.out)
    translations = None
    if folder is not None:
        translations = write_bytes_atomic(folder / TRANSLATIONS_FILE.format(runtime=config.runtime),
                                          ("\n".join(hypotheses) + "\n").encode("utf-8"))
    return evaluation_result(
        task=directory.TASK, model=directory.path, runtime=config.runtime, data=data, examples=len(pairs), plot=None,
        **scores,
        **side_by_side,
        beam=decoding.beam,
        length_penalty=decoding.length_penalty if decoding.beam > 1 else None,
        decode_seconds=round(seconds, 2),
        translations=str(translations) if translations is not None else None,
        **extra,
    )


class Translator:
    """A model loaded once for ``predict`` (several batches, e.g. stdin lines as they arrive).

    Args:
        config: the model directory and runtime.
        decoding: greedy or beam width, length penalty.
    """

    def __init__(self, config: PredictConfig, decoding: DecodeConfig | None = None):
        self.decoding = decoding or DecodeConfig()
        directory = TranslationModelDir.open(config.model)
        self.source_tokenizer, self.target_tokenizer = directory.tokenizers()
        self.backend = backend_for(directory, config.runtime)

    def __call__(self, sentences: list[str]) -> list[str]:
        """One translation per sentence."""
        return translate(self.backend, self.source_tokenizer, self.target_tokenizer, sentences, self.decoding)[0]

    def nbest(self, sentences: list[str], n: int) -> list[list[tuple[float, str]]]:
        """The ``n`` best ``(score, translation)`` per sentence, best first."""
        return translate_nbest(self.backend, self.source_tokenizer, self.target_tokenizer, sentences, n,
                               self.decoding)


def check_sentences(sentences: list[str]) -> None:
    if not all(s.strip() for s in sentences):
        raise UserError("nothing to translate: pass non-empty sentences, '-' for stdin lines, or --input FILE")


def predict(config: PredictConfig, sentences: list[str], decoding: DecodeConfig | None = None) -> list[str]:
    """Translations of ``sentences`` (one string each) by ``config.model`` in ``config.runtime``."""
    if not sentences:
        raise UserError("nothing to translate: pass non-empty sentences, '-' for stdin lines, or --input FILE")
    check_sentences(sentences)
    return Translator(config, decoding)(sentences)
