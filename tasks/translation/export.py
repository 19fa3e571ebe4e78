"""``lstm-suite translation export``: SavedModel (``translate``: strings -> strings) and TFLite.

Writes into ``DIR/export/``:
  * ``saved_model/`` with signatures ``translate`` (= ``serving_default``): ``sentences`` [N]
    strings -> ``translations`` [N] strings. Tokenization, greedy decoding (``tf.while_loop``)
    and detokenization run in the graph (``tensorflow_text.SentencepieceTokenizer``).
  * ``encoder.tflite``: ``source_ids`` [1, S] int32 (S dynamic: no padding) ->
    ``memory`` [1, S, M], ``keys`` [1, S, H], ``h0`` [1, H], ``c0`` [1, H]. The BiLSTM is two fused
    ``UNIDIRECTIONAL_SEQUENCE_LSTM`` ops.
  * ``decoder_step.tflite``: ``token`` [1] int32, ``h``, ``c`` [1, H], ``memory``, ``keys``,
    ``source_mask`` [1, S] (ones) -> ``logits`` [1, V], ``h``, ``c``. One LSTM step (cell math),
    attention and output layer; an app loops it (see ``tasks.translation.decode``).
  * with ``--int8``: ``encoder_int8.tflite`` / ``decoder_step_int8.tflite`` (full integer,
    calibrated on validation sentences and on decoder states of their greedy decoding).
  * ``export_report.json``: sizes, ops, max |LiteRT - Keras|, greedy agreement and BLEU.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from lstm_core.export import export_saved_model, export_tflite_report
from lstm_core.io import write_json_atomic
from tasks.translation import data as D
from tasks.translation.decode import KerasBackend, LiteRTBackend, default_max_length, greedy_decode
from tasks.translation.evaluate import ENCODER_INT8, ENCODER_TFLITE, STEP_INT8, STEP_TFLITE, corpus_scores

log = logging.getLogger(__name__)

SAVED_MODEL = "saved_model"
REPORT = "export_report.json"


# ----------------------------------------------------------------------------- SavedModel
class Translator(tf.Module):
    """Strings in, strings out: sentencepiece -> encoder -> greedy ``tf.while_loop`` -> detokenize."""

    def __init__(self, seq2seq, src_proto: bytes, tgt_proto: bytes):
        super().__init__(name="translator")
        import tensorflow_text as tft

        # Not tracked attributes: export_saved_model tracks the variables once (tracking the
        # Keras models as well would store every weight twice).
        self.__dict__["_encoder"] = seq2seq.encoder
        self.__dict__["_step"] = seq2seq.step
        self.source_tokenizer = tft.SentencepieceTokenizer(model=src_proto, add_eos=True, name="source_sentencepiece")
        self.target_tokenizer = tft.SentencepieceTokenizer(model=tgt_proto, name="target_sentencepiece")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def translate(self, sentences):
        src = self.source_tokenizer.tokenize(sentences).to_tensor(default_value=D.PAD_ID)
        src = tf.cast(src, tf.int32)
        ids = self.greedy(src)
        return {"translations": self.target_tokenizer.detokenize(ids)}

    def greedy(self, src):
        mask = tf.cast(tf.not_equal(src, D.PAD_ID), tf.float32)
        memory, keys, h, c = (tf.identity(t) for t in self._encoder(src, training=False))  # drop Keras masks
        batch = tf.shape(src)[0]
        # per-sentence output budget, = decode.default_max_length(source length)
        limits = 2 * tf.cast(tf.reduce_sum(mask, axis=1), tf.int32) + 10
        limit = tf.reduce_max(limits)
        tokens = tf.fill([batch], D.BOS_ID)
        done = tf.zeros([batch], tf.bool)
        out = tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=tf.TensorShape([None]))

        def cond(t, tokens, h, c, done, out):
            return tf.logical_and(t < limit, tf.logical_not(tf.reduce_all(done)))

        def body(t, tokens, h, c, done, out):
            logits, h, c = self._step([tokens, h, c, memory, keys, mask], training=False)
            nxt = tf.argmax(logits, axis=-1, output_type=tf.int32)
            nxt = tf.where(done, tf.fill(tf.shape(nxt), D.PAD_ID), nxt)
            done = tf.logical_or(done, tf.logical_or(tf.equal(nxt, D.EOS_ID), t + 1 >= limits))
            return t + 1, nxt, h, c, done, out.write(t, nxt)

        _, _, _, _, _, out = tf.while_loop(cond, body, (tf.constant(0), tokens, h, c, done, out))
        ids = tf.transpose(out.stack())  # [B, T]
        ids = tf.reshape(ids, [batch, -1])
        before_eos = tf.equal(tf.cumsum(tf.cast(tf.equal(ids, D.EOS_ID), tf.int32), axis=1), 0)
        keep = tf.logical_and(before_eos, tf.logical_or(ids > D.EOS_ID, tf.equal(ids, D.UNK_ID)))
        return tf.ragged.boolean_mask(ids, keep)


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
        token = np.asarray([D.BOS_ID], np.int32)
        for _ in range(max_steps or default_max_length(len(s))):
            samples.append([token, h, c, memory, keys, mask])
            logits, h, c = backend.step(token, h, c, memory, keys, mask)
            token = np.argmax(logits, axis=-1).astype(np.int32)
            if token[0] == D.EOS_ID:
                break
    return samples


def check_sentences(args, config, src_tok):
    """(src_ids, references) for the LiteRT-vs-Keras check and int8 calibration."""
    spec = args.data or config.validation or None
    if spec and (D.is_tfds(spec) or Path(spec).is_file()):
        pairs = D.load_pairs(spec, default_split="validation")
    else:
        log.warning("no validation data found (pass --data); checking on synthetic sentences")
        pairs = [(s, s) for s in ("Hello.", "Where is the station?", "I like tea.", "Tom is here.")]
    src_ids = [s + [D.EOS_ID] for s in src_tok.encode([p[0] for p in pairs])]
    return src_ids, [p[1] for p in pairs]


def run_export(args) -> dict:
    from tasks.translation.train import load_model

    model_dir = Path(args.model)
    config, seq2seq, src_tok, tgt_tok = load_model(model_dir)
    out = model_dir / "export"
    src_ids, references = check_sentences(args, config, src_tok)
    report: dict = {}

    t0 = time.time()
    sm_path = export_savedmodel(seq2seq, src_tok, tgt_tok, out / SAVED_MODEL)
    report["saved_model"] = {"path": str(sm_path), "size_bytes": _dir_size(sm_path), "signatures": ["serving_default", "translate"]}
    log.info("SavedModel written to %s (%.0fs)", sm_path, time.time() - t0)

    enc = export_tflite_report(seq2seq.encoder, out / ENCODER_TFLITE, sample_inputs=encoder_samples(src_ids))
    step = export_tflite_report(seq2seq.step, out / STEP_TFLITE, sample_inputs=step_samples(seq2seq, src_ids, 4))
    report["tflite"] = {"encoder": enc.as_dict(), "decoder_step": step.as_dict()}
    if args.int8:
        calib = src_ids[:200]
        enc8 = export_tflite_report(
            seq2seq.encoder, out / ENCODER_INT8, quantization="int8",
            representative_dataset=lambda: encoder_samples(calib, len(calib)),
        )
        # The TFLite calibrator does not re-propagate shapes when the source length changes
        # between samples: calibrate the step model on sentences of one (the commonest) length.
        lengths = [len(x) for x in calib]
        common = max(set(lengths), key=lengths.count)
        step_calib = step_samples(seq2seq, [x for x in calib if len(x) == common], 100)
        step8 = export_tflite_report(
            seq2seq.step, out / STEP_INT8, quantization="int8",
            representative_dataset=lambda: step_calib,
        )
        report["tflite_int8"] = {"encoder": enc8.as_dict(), "decoder_step": step8.as_dict()}

    n = args.check_sentences
    if n:
        report["greedy_check"] = compare_greedy(seq2seq, out, src_ids[:n], references[:n], tgt_tok, int8=args.int8)
    write_json_atomic(out / REPORT, report)
    summary = {
        "export_dir": str(out),
        "saved_model_bytes": report["saved_model"]["size_bytes"],
        "encoder_tflite_bytes": enc.size_bytes,
        "decoder_step_tflite_bytes": step.size_bytes,
        "encoder_ops": enc.ops,
        **{f"check_{k}": v for k, v in report.get("greedy_check", {}).items()},
    }
    if args.int8:
        summary.update(encoder_int8_bytes=enc8.size_bytes, decoder_step_int8_bytes=step8.size_bytes)
    return summary


def compare_greedy(seq2seq, out_dir, src_ids, references, tgt_tok, *, int8=False) -> dict:
    """Greedy-decode with Keras and LiteRT: identical-output rate and BLEU of each."""
    keras_ids = greedy_decode(KerasBackend(seq2seq), src_ids)
    lite_ids = greedy_decode(LiteRTBackend(out_dir / ENCODER_TFLITE, out_dir / STEP_TFLITE), src_ids)
    same = sum(a == b for a, b in zip(keras_ids, lite_ids))
    result = {
        "sentences": len(src_ids),
        "identical_float": same,
        "bleu_keras": corpus_scores(tgt_tok.decode(keras_ids), references)["bleu"],
        "bleu_tflite": corpus_scores(tgt_tok.decode(lite_ids), references)["bleu"],
    }
    if int8:
        int8_ids = greedy_decode(LiteRTBackend(out_dir / ENCODER_INT8, out_dir / STEP_INT8), src_ids)
        result["identical_int8"] = sum(a == b for a, b in zip(keras_ids, int8_ids))
        result["bleu_tflite_int8"] = corpus_scores(tgt_tok.decode(int8_ids), references)["bleu"]
    if same < len(src_ids):
        log.warning("LiteRT greedy output differs from Keras on %d of %d sentences", len(src_ids) - same, len(src_ids))
    return result


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
