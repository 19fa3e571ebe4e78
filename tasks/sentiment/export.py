"""``lstm-suite sentiment export``: SavedModel over raw strings + LiteRT float/int8 over token ids.

``DIR/export/``::

    saved_model/          signatures: serving_default = serve_text (string [B] → probability,
                          label), serve_ids (int32 ids [B, T], 0 = padding → probability).
                          Tokenizes in-graph with tensorflow-text (``import tensorflow_text``
                          before ``tf.saved_model.load``).
    model_float.tflite    int32 token ids [1, T] (no padding) → P(positive) [1, 1]
    model_int8.tflite     same, full-integer quantized (int8 weights/activations/output)
    tokenizer.model       the sentencepiece model producing those ids (pad 0, unk 1)
    labels.txt            negative, positive
    export_report.json    sizes, ops, max |tflite - keras|, label agreement with Keras
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from lstm_core.errors import ExportMismatchError, UserError
from lstm_core.io import read_json, write_bytes_atomic, write_json_atomic
from tasks.sentiment.data import PAD_ID, TOKENIZER_FILE, UNK_ID, Tokenizer
from tasks.sentiment.evaluate import EXPORT_DIR, TFLITE_FILES, KerasPredictor, TFLitePredictor, load_predictor

log = logging.getLogger(__name__)


def serving_module(model, tokenizer_proto: bytes, max_tokens: int, labels):
    """A ``tf.Module`` with the tokenizer and the two serving functions."""
    import tensorflow as tf
    import tensorflow_text as tf_text

    module = tf.Module()
    module.tokenizer = tf_text.SentencepieceTokenizer(model=tokenizer_proto, out_type=tf.int32)
    label_names = tf.constant(list(labels))

    def classify(ids):
        probability = model(ids, training=False)[:, 0]
        label = tf.gather(label_names, tf.cast(probability >= 0.5, tf.int32))
        return {"probability": probability, "label": label}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(text):
        ids = module.tokenizer.tokenize(text)[:, :max_tokens]
        # a text without pieces becomes [UNK], as in training and in the Python tokenizer
        empty = tf.cast(ids.row_lengths() == 0, tf.int64)
        filler = tf.RaggedTensor.from_row_lengths(
            tf.fill([tf.reduce_sum(empty)], tf.constant(UNK_ID, tf.int32)), empty
        )
        dense = tf.concat([ids, filler], axis=1).to_tensor(PAD_ID)
        dense = tf.pad(dense, [[0, 0], [0, tf.maximum(0, 1 - tf.shape(dense)[1])]])
        return classify(dense)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="token_ids")])
    def serve_ids(token_ids):
        return classify(token_ids)

    module.serve_text = serve_text
    module.serve_ids = serve_ids
    return module


def _calibration_texts(model_dir: Path, data: str | None, limit: int, config) -> list[str]:
    from tasks.sentiment.data import load_examples
    from tasks.sentiment.train import CALIBRATION_FILE

    if data:
        examples = load_examples(
            data, default_split="train", text_column=config.data.text_column,
            label_column=config.data.label_column, limit=limit,
        )
        return examples.texts
    path = model_dir / CALIBRATION_FILE
    if not path.is_file():
        raise UserError(f"{path}: missing; pass --calibration-data FILE (training texts) for int8 calibration")
    texts = read_json(path)
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise UserError(f"{path}: expected a non-empty JSON list of texts")
    return texts[:limit]


def export(model_dir, *, calibration_data: str | None = None, calibration_examples: int = 200,
           check_examples: int = 16) -> dict:
    """Write ``DIR/export/`` (see module docstring); returns the export report."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  registers the sentencepiece ops for the reload check

    from lstm_core.export import export_saved_model, export_tflite_report
    from tasks.sentiment.train import SentimentConfig

    model_dir = Path(model_dir)
    config = SentimentConfig.load(model_dir)
    keras_predictor: KerasPredictor = load_predictor(model_dir, "keras")
    model, tokenizer = keras_predictor.model, keras_predictor.tokenizer
    texts = _calibration_texts(model_dir, calibration_data, calibration_examples, config)
    ids = tokenizer.encode_many(texts)
    keras_probs = keras_predictor.predict_ids(ids)
    out = model_dir / EXPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / TOKENIZER_FILE, tokenizer.proto)
    write_bytes_atomic(out / "labels.txt", ("\n".join(config.labels) + "\n").encode())
    report: dict = {"model": str(model_dir), "calibration_examples": len(ids), "max_tokens": config.data.max_tokens}

    # SavedModel over raw strings, checked by reloading it.
    module = serving_module(model, tokenizer.proto, config.data.max_tokens, config.labels)
    saved = export_saved_model(
        model,
        out / "saved_model",
        signatures={
            "serving_default": module.serve_text,
            "serve_text": module.serve_text,
            "serve_ids": module.serve_ids,
        },
        module=module,
    )
    reloaded = tf.saved_model.load(str(saved))
    served = reloaded.signatures["serving_default"](text=tf.constant(texts[:64]))
    saved_diff = float(np.max(np.abs(served["probability"].numpy() - keras_probs[:64])))
    if saved_diff > 1e-4:
        raise ExportMismatchError(f"{saved}: SavedModel disagrees with Keras by {saved_diff:.3g}; not trusted")
    report["saved_model"] = {"path": str(saved), "size_bytes": _size(saved), "max_abs_diff": saved_diff,
                             "signatures": sorted(reloaded.signatures)}
    log.info("SavedModel %s (max |saved - keras| = %.2g)", saved, saved_diff)

    samples = [[np.asarray([x], dtype=np.int32)] for x in ids[:check_examples]]

    def representative():
        for x in ids:
            yield [np.asarray([x], dtype=np.int32)]

    for runtime, quantization in (("tflite", None), ("tflite-int8", "int8")):
        path = out / TFLITE_FILES[runtime]
        log.info("converting %s (%s)", path, quantization or "float")
        with warnings.catch_warnings():
            # the int8 calibrator uses tf.lite.Interpreter internally; we run LiteRT ourselves
            warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
            tflite = export_tflite_report(
                model,
                path,
                quantization=quantization,
                representative_dataset=representative if quantization else None,
                sample_inputs=samples,
            ).as_dict()
        probs = TFLitePredictor(path, tokenizer).predict_ids(ids)
        tflite["calibration_max_abs_diff"] = float(np.max(np.abs(probs - keras_probs)))
        tflite["calibration_label_agreement"] = float(np.mean((probs >= 0.5) == (keras_probs >= 0.5)))
        report[runtime] = tflite
        log.info("%s: %d bytes, ops %s, label agreement with Keras %.3f", path, tflite["size_bytes"],
                 tflite["ops"], tflite["calibration_label_agreement"])
    report["keras_size_bytes"] = _size(model_dir / "model.keras")
    write_json_atomic(out / "export_report.json", report)
    return report


def _size(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
