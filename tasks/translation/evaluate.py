"""``lstm-suite translation evaluate`` / ``predict``: sacrebleu BLEU + chrF in Keras, LiteRT or TFLM."""

from __future__ import annotations

import logging
import time

from tasks.common.artifacts import evaluation_result
from tasks.common.config import EvaluateConfig, PredictConfig
from tasks.common.errors import UserError
from tasks.common.io import write_bytes_atomic
from tasks.translation.artifacts import TranslationModelDir
from tasks.translation.config import DecodeConfig
from tasks.translation.data import held_out_pairs, load_pairs
from tasks.translation.decode import KerasBackend, LiteRTBackend, TFLMBackend, translate
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


def evaluate(config: EvaluateConfig, decoding: DecodeConfig | None = None) -> dict:
    """Corpus BLEU/chrF of ``config.model`` on ``config.data`` (default: the model's validation pairs).

    Writes the translations (one per line) to ``translations_<runtime>.txt`` in the evaluation folder.
    """
    decoding = decoding or DecodeConfig()
    directory = TranslationModelDir.open(config.model)
    source_tokenizer, target_tokenizer = directory.tokenizers()
    backend = backend_for(directory, config.runtime)
    if config.data:
        pairs = load_pairs(config.data, default_split="validation", limit=config.limit,
                           source_lang=directory.data.source_lang, target_lang=directory.data.target_lang)
        data = config.data
    else:
        pairs, data = held_out_pairs(directory.data, directory.train.seed, config.limit)
        log.info("scoring the model's validation pairs: %s", data)
    started = time.time()
    hypotheses, _ = translate(backend, source_tokenizer, target_tokenizer, [p[0] for p in pairs], decoding)
    seconds = time.time() - started
    extra = {}
    if isinstance(backend, TFLMBackend):
        extra["truncated_sources"] = backend.truncated
        if backend.truncated:
            log.warning("%d source sentence(s) longer than the TFLM export's %d tokens were cut",
                        backend.truncated, backend.source_length)
    scores = corpus_scores(hypotheses, [p[1] for p in pairs])
    folder = directory.evaluation_dir(config.out)
    translations = None
    if folder is not None:
        translations = write_bytes_atomic(folder / TRANSLATIONS_FILE.format(runtime=config.runtime),
                                          ("\n".join(hypotheses) + "\n").encode("utf-8"))
    return evaluation_result(
        task=directory.TASK, model=directory.path, runtime=config.runtime, data=data, examples=len(pairs), plot=None,
        **scores,
        beam=decoding.beam,
        length_penalty=decoding.length_penalty if decoding.beam > 1 else None,
        decode_seconds=round(seconds, 2),
        translations=str(translations) if translations is not None else None,
        **extra,
    )


def predict(config: PredictConfig, sentences: list[str], decoding: DecodeConfig | None = None) -> list[str]:
    """Translations of ``sentences`` (one string each) by ``config.model`` in ``config.runtime``."""
    if not sentences or not all(s.strip() for s in sentences):
        raise UserError("nothing to translate: pass non-empty sentences or --input FILE")
    directory = TranslationModelDir.open(config.model)
    source_tokenizer, target_tokenizer = directory.tokenizers()
    backend = backend_for(directory, config.runtime)
    return translate(backend, source_tokenizer, target_tokenizer, sentences, decoding)[0]
