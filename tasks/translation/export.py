"""``lstm-suite translation export``: SavedModel (``translate``: strings -> strings) and TFLite parts.

Builds ``DIR/export/`` in ``export.partial/`` and renames it when everything passed its check:
  * ``saved_model/`` with signatures ``translate`` (= ``serving_default``): ``sentences`` [N]
    strings -> ``translations`` [N] strings. Tokenization, greedy decoding (``tf.while_loop``)
    and detokenization run in the graph (``tensorflow_text.SentencepieceTokenizer``).
  * ``encoder_{float,int8}.tflite``: ``source_ids`` [1, S] int32 (S dynamic: no padding) ->
    ``memory`` [1, S, M], ``keys`` [1, S, H], ``h0`` [1, H], ``c0`` [1, H]. The BiLSTM is two fused
    ``UNIDIRECTIONAL_SEQUENCE_LSTM`` ops.
  * ``decoder_step_{float,int8}.tflite``: ``token`` [1] int32, ``h``, ``c`` [1, H], ``memory``,
    ``keys``, ``source_mask`` [1, S] (ones) -> ``logits`` [1, V], ``h``, ``c``. One LSTM step (cell
    math), attention and output layer; an app loops it (see ``tasks.translation.decode``).
    The int8 parts are full integer, calibrated on validation sentences and on the decoder
    states of their greedy decoding.
  * ``export_report.json``: per part sizes, ops, max |LiteRT - Keras|; greedy agreement and BLEU
    of every runtime on the check sentences; sizes and SHA-256 of every file.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from tasks.common.artifacts import write_export_report
from tasks.common.config import ExportConfig
from tasks.common.errors import UserError
from tasks.common.verdicts import Limit, record_verdicts, verdict_row
from lstm_core.kernels import portable_graphs
from lstm_core.export import FLOAT_ATOL, export_saved_model, export_tflite_report
from tasks.translation.artifacts import SAVED_MODEL, TranslationModelDir
from tasks.translation.config import CheckConfig, check_quantization
from tasks.translation.data import BOS_ID, EOS_ID, PAD_ID, UNK_ID, held_out_pairs, load_pairs, source_ids
from tasks.translation.decode import (
    KerasBackend,
    LiteRTBackend,
    TFLMBackend,
    default_max_length,
    greedy_decode,
    padded_source,
)
from tasks.translation.metrics import corpus_scores, identical_count
from tasks.translation.model import load_seq2seq, mcu_models

log = logging.getLogger(__name__)

# Export verdicts: a runtime past a limit on the check sentences (greedy decoding, vs Keras) is a
# WARNING (one line; "verdict" in export_report.json). The int8 parts may pick another word now and
# then (the rest of the sentence follows it), so the limits are on whole sentences and on BLEU.
EXPORT_LIMITS = {
    "sentences": Limit("sentences equal to Keras", "%", minimum=0.7),
    "bleu": Limit("BLEU below Keras", "BLEU", maximum=1.0),
}

# ----------------------------------------------------------------------------- SavedModel
class Translator(tf.Module):
    """Strings in, strings out: sentencepiece -> encoder -> greedy ``tf.while_loop`` -> detokenize."""

    def __init__(self, seq2seq, src_proto: bytes, tgt_proto: bytes):
        super().__init__(name="translator")
        import tensorflow_text

        # Not tracked attributes: export_saved_model tracks the variables once (tracking the
        # Keras models as well would store every weight twice).
        self.__dict__["_encoder"] = seq2seq.encoder
        self.__dict__["_step"] = seq2seq.step
        self.source_tokenizer = tensorflow_text.SentencepieceTokenizer(model=src_proto, add_eos=True, name="source_sentencepiece")
        self.target_tokenizer = tensorflow_text.SentencepieceTokenizer(model=tgt_proto, name="target_sentencepiece")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def translate(self, sentences):
        src = self.source_tokenizer.tokenize(sentences).to_tensor(default_value=PAD_ID)
        src = tf.cast(src, tf.int32)
        ids = self.greedy(src)
        return {"translations": self.target_tokenizer.detokenize(ids)}

    def greedy(self, src):
        mask = tf.cast(tf.not_equal(src, PAD_ID), tf.float32)
        memory, keys, h, c = (tf.identity(t) for t in self._encoder(src, training=False))  # drop Keras masks
        batch = tf.shape(src)[0]
        # per-sentence output budget, = decode.default_max_length(source length)
        limits = 2 * tf.cast(tf.reduce_sum(mask, axis=1), tf.int32) + 10
        limit = tf.reduce_max(limits)
        tokens = tf.fill([batch], BOS_ID)
        done = tf.zeros([batch], tf.bool)
        out = tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=tf.TensorShape([None]))

        def cond(t, tokens, h, c, done, out):
            return tf.logical_and(t < limit, tf.logical_not(tf.reduce_all(done)))

        def body(t, tokens, h, c, done, out):
            logits, h, c = self._step([tokens, h, c, memory, keys, mask], training=False)
            nxt = tf.argmax(logits, axis=-1, output_type=tf.int32)
            nxt = tf.where(done, tf.fill(tf.shape(nxt), PAD_ID), nxt)
            done = tf.logical_or(done, tf.logical_or(tf.equal(nxt, EOS_ID), t + 1 >= limits))
            return t + 1, nxt, h, c, done, out.write(t, nxt)

        _, _, _, _, _, out = tf.while_loop(cond, body, (tf.constant(0), tokens, h, c, done, out))
        ids = tf.transpose(out.stack())  # [B, T]
        ids = tf.reshape(ids, [batch, -1])
        before_eos = tf.equal(tf.cumsum(tf.cast(tf.equal(ids, EOS_ID), tf.int32), axis=1), 0)
        keep = tf.logical_and(before_eos, tf.logical_or(ids > EOS_ID, tf.equal(ids, UNK_ID)))
        return tf.ragged.boolean_mask(ids, keep)


@portable_graphs()  # serving functions are traced before they are saved
def export_savedmodel(seq2seq, src_tok, tgt_tok, path) -> Path:
    translator = Translator(seq2seq, src_tok.model_proto, tgt_tok.model_proto)
    fn = translator.translate.get_concrete_function()
    return export_saved_model(
        seq2seq.training, path, signatures={"serving_default": fn, "translate": fn}, module=translator
    )


# ----------------------------------------------------------------------------- TFLite
def encoder_samples(src_ids, n=8):
    return [[np.asarray([s], np.int32)] for s in src_ids[:n]]


def step_samples(seq2seq, src_ids, n_sentences=8, max_steps=None):
    """Real decoder-step inputs (batch 1) collected along Keras greedy decoding."""
    backend = KerasBackend(seq2seq)
    samples = []
    for s in src_ids[:n_sentences]:
        src = np.asarray([s], np.int32)
        memory, keys, h, c = backend.encode(src)
        mask = np.ones_like(src, np.float32)
        token = np.asarray([BOS_ID], np.int32)
        for _ in range(max_steps or default_max_length(len(s))):
            samples.append([token, h, c, memory, keys, mask])
            logits, h, c = backend.step(token, h, c, memory, keys, mask)
            token = np.argmax(logits, axis=-1).astype(np.int32)
            if token[0] == EOS_ID:
                break
    return samples


def check_pairs(directory: TranslationModelDir, check: CheckConfig, count: int):
    """(source ids, references) of up to ``count`` sentences for the runtime check and the int8 calibration."""
    try:
        if check.data:
            pairs = load_pairs(check.data, default_split="validation", limit=count,
                               source_lang=directory.data.source_lang, target_lang=directory.data.target_lang)
        else:
            pairs, _ = held_out_pairs(directory.data, directory.train.seed, count)
    except UserError as err:
        raise UserError(f"{err} (export calibrates and checks on the model's validation pairs; pass --data TSV)") from None
    source_tokenizer, _ = directory.tokenizers()
    return source_ids(source_tokenizer, [p[0] for p in pairs]), [p[1] for p in pairs]


def _calibration(seq2seq, calibration_ids):
    """Representative datasets of the int8 encoder and decoder step."""
    # The TFLite calibrator does not re-propagate shapes when the source length changes between
    # samples: calibrate the step model on sentences of one (the commonest) length.
    lengths = [len(x) for x in calibration_ids]
    common = max(set(lengths), key=lengths.count)
    step_calibration = step_samples(seq2seq, [x for x in calibration_ids if len(x) == common], 100)
    return (lambda: encoder_samples(calibration_ids, len(calibration_ids))), (lambda: step_calibration)


@portable_graphs()  # serving functions are traced before they are saved
def export(config: ExportConfig, check: CheckConfig | None = None) -> dict:
    """Write ``DIR/export/`` (see the module docstring); returns a summary of the export report."""
    check = check or CheckConfig()
    check_quantization(config)
    directory = TranslationModelDir.open(config.model)
    seq2seq = load_seq2seq(directory)
    _, target_tokenizer = directory.tokenizers()
    wanted = max(config.calibration_examples, check.check_sentences)
    ids, references = check_pairs(directory, check, wanted)
    atol = config.atol if config.atol is not None else FLOAT_ATOL
    report: dict = {"quantization": list(config.quantization), "parts": {}}
    with directory.staged_export() as work:
        started = time.time()
        saved_model = export_savedmodel(seq2seq, *directory.tokenizers(), work / SAVED_MODEL)
        report["saved_model"] = {"signatures": ["serving_default", "translate"], "bytes": _dir_size(saved_model)}
        log.info("SavedModel written (%.0fs)", time.time() - started)
        if "float" in config.quantization:
            report["parts"]["float"] = {
                "encoder": export_tflite_report(
                    seq2seq.encoder, work / directory.part_name("encoder", "tflite"),
                    sample_inputs=encoder_samples(ids), atol=atol).as_dict(),
                "decoder_step": export_tflite_report(
                    seq2seq.step, work / directory.part_name("decoder_step", "tflite"),
                    sample_inputs=step_samples(seq2seq, ids, 4), atol=atol).as_dict(),
            }
        if "int8" in config.quantization:
            encoder_calibration, step_calibration = _calibration(seq2seq, ids[: config.calibration_examples])
            report["parts"]["int8"] = {
                "encoder": export_tflite_report(
                    seq2seq.encoder, work / directory.part_name("encoder", "tflite-int8"), quantization="int8",
                    representative_dataset=encoder_calibration).as_dict(),
                "decoder_step": export_tflite_report(
                    seq2seq.step, work / directory.part_name("decoder_step", "tflite-int8"), quantization="int8",
                    representative_dataset=step_calibration).as_dict(),
            }
        if "int8" in config.quantization:
            report["tflm"] = export_tflm(seq2seq, directory, work, ids[: config.calibration_examples],
                                         directory.data.max_length)
        for part in report["parts"].values():
            for details in part.values():
                details["path"] = Path(details["path"]).relative_to(work).as_posix()
                if details.get("tflm") is None:
                    details["tflm"] = LITERT_ONLY
        if check.check_sentences:
            report["greedy_check"] = compare_greedy(
                seq2seq, directory, work, ids[: check.check_sentences], references[: check.check_sentences],
                target_tokenizer, config.quantization,
            )
        record_verdicts(report, _verdicts(directory, work, report))
        write_export_report(work, report)
    return _summary(directory, report)


def _summary(directory: TranslationModelDir, report: dict) -> dict:
    """What ``export`` returns: sizes, the greedy check and the verdicts (the rest is in the report file)."""
    summary = {"export_dir": str(directory.export_dir), "saved_model_bytes": report["saved_model"]["bytes"],
               "verdict": report["verdict"], "verdicts": report["verdicts"]}
    for quantization, parts in report["parts"].items():
        for part, details in parts.items():
            summary[f"{part}_{quantization}_bytes"] = details["size_bytes"]
    summary.update({f"check_{k}": v for k, v in report.get("greedy_check", {}).items()})
    return summary


def _verdicts(directory, work: Path, report: dict) -> list[dict]:
    """Per runtime (its encoder + decoder step): sentences equal to Keras and BLEU vs Keras on the check sentences."""
    check = report.get("greedy_check") or {}
    rows = []
    for runtime, quantization in (("tflite", "float"), ("tflite-int8", "int8"), ("tflm", "int8")):
        if quantization not in report["parts"]:
            continue
        names = [directory.part_name(part, runtime) for part in ("encoder", "decoder_step")]
        key = runtime.replace("-", "_")
        equal, bleu = check.get(f"identical_{key}"), check.get(f"bleu_{key}")
        sentences = check.get("sentences") or 0
        checks = [
            EXPORT_LIMITS["sentences"].check(equal / sentences if sentences and equal is not None else None,
                                             f"{equal} of {sentences}" if sentences else ""),
            EXPORT_LIMITS["bleu"].check(check["bleu_keras"] - bleu if bleu is not None else None,
                                        f"{bleu:.2f} vs Keras {check['bleu_keras']:.2f}" if bleu is not None else ""),
        ]
        rows.append(verdict_row(" + ".join(names), sum((work / n).stat().st_size for n in names), checks))
    return rows


def compare_greedy(seq2seq, directory, work: Path, ids, references, target_tokenizer, quantization) -> dict:
    """Greedy-decode with Keras and every exported runtime: identical outputs and BLEU of each."""
    keras_ids = greedy_decode(KerasBackend(seq2seq), ids)
    result = {"sentences": len(ids), "bleu_keras": corpus_scores(target_tokenizer.decode(keras_ids), references)["bleu"]}
    runtimes = [r for r, q in (("tflite", "float"), ("tflite-int8", "int8"), ("tflm", "int8")) if q in quantization]
    decoded = {}
    for runtime in runtimes:
        parts = [work / directory.part_name(part, runtime) for part in ("encoder", "decoder_step")]
        backend = TFLMBackend(*parts) if runtime == "tflm" else LiteRTBackend(*parts)
        runtime_ids = greedy_decode(backend, ids)
        key = runtime.replace("-", "_")
        decoded[runtime] = runtime_ids
        result[f"identical_{key}"] = identical_count(keras_ids, runtime_ids)
        result[f"bleu_{key}"] = corpus_scores(target_tokenizer.decode(runtime_ids), references)["bleu"]
        if runtime == "tflite" and result[f"identical_{key}"] < len(ids):
            log.warning("LiteRT float greedy output differs from Keras on %d of %d sentences",
                        len(ids) - result[f"identical_{key}"], len(ids))
    if "tflm" in decoded:  # the same int8 arithmetic on two interpreters, padded vs unpadded sources
        result["identical_tflm_vs_tflite_int8"] = identical_count(decoded["tflm"], decoded["tflite-int8"])
    return result


LITERT_ONLY = {
    "loads": False,
    "reason": "dynamic source length: TFLM has no dynamic shapes (the fixed-length TFLM build of this part "
    "is in export/tflm/)",
}


def mcu_samples(encoder, step, ids, source_length: int, max_steps: int = 100):
    """Real (encoder, step) inputs of the fixed-length models along Keras greedy decoding."""
    encoder_inputs, step_inputs = [], []
    for sentence in ids:
        padded, order, mask = padded_source(sentence, source_length)
        encoder_inputs.append([padded, order])
        memory, keys, h, c = (np.asarray(t) for t in encoder([padded, order], training=False))
        token = np.asarray([BOS_ID], np.int32)
        for _ in range(min(max_steps, default_max_length(len(sentence)))):
            step_inputs.append([token, h, c, memory, keys, mask])
            logits, h, c = (np.asarray(t) for t in step([token, h, c, memory, keys, mask], training=False))
            token = np.argmax(logits, axis=-1).astype(np.int32)
            if token[0] == EOS_ID:
                break
    return encoder_inputs, step_inputs


def export_tflm(seq2seq, directory: TranslationModelDir, work: Path, calibration_ids, source_length: int) -> dict:
    """int8 encoder + decoder step with a fixed source length for TFLM, checked there; C sources for firmware.

    Writes ``tflm/encoder_int8.tflite``, ``tflm/decoder_step_int8.tflite`` and, per part,
    ``tflm/<part>/model_data.{cc,h}`` + ``model_ops.h`` (the op resolver). Returns the report's
    ``tflm`` section: per part the TFLM check (arena, ops, |TFLM - LiteRT|) and the sizes.
    """
    from lstm_core.tflm import write_c_array

    encoder, step = mcu_models(seq2seq, source_length)
    encoder_inputs, step_inputs = mcu_samples(encoder, step, calibration_ids, source_length)
    # calibrated on padded sources of every length, as the device will see them
    section = {"source_length": source_length, "parts": {}}
    for part, model, samples in (("encoder", encoder, encoder_inputs), ("decoder_step", step, step_inputs)):
        path = work / directory.part_name(part, "tflm")
        path.parent.mkdir(parents=True, exist_ok=True)
        check = samples[:: max(1, len(samples) // 8)][:8]
        exported = export_tflite_report(model, path, quantization="int8", representative_dataset=lambda s=samples: s,
                                        sample_inputs=check, tflm=True)
        details = {**exported.as_dict(), "path": path.relative_to(work).as_posix()}
        if not details["tflm"].get("loads"):
            raise UserError(f"{path.name}: TensorFlow Lite Micro cannot run it ({details['tflm'].get('reason')})")
        written = write_c_array(path, path.parent / part, name=f"g_{part}",
                                arena_bytes=details["tflm"]["arena_recommended_bytes"])
        details["c_sources"] = [Path(written[n]).relative_to(work).as_posix() for n in ("model_data.cc", "model_data.h", "model_ops.h")]
        section["parts"][part] = details
    section["arena_bytes"] = sum(p["tflm"]["arena_bytes"] for p in section["parts"].values())
    section["model_bytes"] = sum(p["size_bytes"] for p in section["parts"].values())
    return section


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
