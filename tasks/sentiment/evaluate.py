"""``evaluate`` and ``predict``: one predictor per runtime, the peers beside the model.

Runtimes: ``keras`` (``model.keras``, pre-padded batches), ``tflite`` / ``tflite-int8`` (LiteRT,
``export/model_{float,int8}.tflite``, one text at its true length), ``tflm`` (TensorFlow Lite
Micro, ``export/model_mcu_int8.tflite``: fixed length, pre-padded).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from tasks.common.artifacts import evaluation_result
from tasks.common.config import EvaluateConfig, PredictConfig
from tasks.common.errors import UserError
from tasks.common.io import stdin_batches, write_bytes_atomic
from tasks.sentiment.artifacts import MCU_FILES, SentimentModelDir
from tasks.sentiment.config import LABELS, BaselineConfig, ModelChoiceConfig, given
from tasks.sentiment.data import load_config_examples
from tasks.sentiment.metrics import SUMMARY_KEYS, TfidfSvmPeer, classification_metrics, vader_predictions
from tasks.sentiment.model import KerasPredictor, TFLitePredictor

log = logging.getLogger(__name__)


def load_predictor(directory: SentimentModelDir, runtime: str = "keras", student: bool = False):
    """The predictor of ``directory`` for ``runtime`` (keras | tflite | tflite-int8 | tflm).

    ``student``: the distilled MCU model instead of the ensemble (``student.keras`` in Keras,
    ``model_mcu_{float,int8}.tflite`` on LiteRT); ``tflm`` always runs the MCU export.
    """
    if student and runtime != "tflm":
        return _student_predictor(directory, runtime)
    if runtime == "keras":
        return KerasPredictor(directory.keras_model(), directory.tokenizer())
    if runtime in ("tflite", "tflite-int8"):
        path = directory.export_file(runtime)
        return TFLitePredictor(path, directory.tokenizer())
    if runtime == "tflm":
        from tasks.sentiment.model import TFLMPredictor

        path = directory.export_file(MCU_FILES["int8"])
        return TFLMPredictor(path, directory.tokenizer(), directory.export_report().get("mcu_max_tokens"))
    raise UserError(f"--runtime: expected keras, tflite, tflite-int8 or tflm, got {runtime!r}")


def _student_predictor(directory: SentimentModelDir, runtime: str):
    if runtime == "keras":
        model = directory.student_model()
        if model is None:
            raise UserError(f"{directory.student_file}: no distilled student (the model was trained with --no-distill)")
        return KerasPredictor(model, directory.tokenizer())
    if runtime in ("tflite", "tflite-int8"):
        path = directory.export_file(MCU_FILES["float" if runtime == "tflite" else "int8"])
        return TFLitePredictor(path, directory.tokenizer(), directory.export_report().get("mcu_max_tokens"))
    raise UserError(f"--runtime: expected keras, tflite, tflite-int8 or tflm, got {runtime!r}")


def _peer(directory: SentimentModelDir) -> TfidfSvmPeer:
    data = directory.data
    return TfidfSvmPeer(directory.baseline_file, data.data,
                        lambda: load_config_examples(data, data.data, default_split="train"))


def _score(predictor, examples, peer) -> tuple[dict, dict]:
    """Model metrics and per-example predictions (model, and the peers when ``peer``)."""
    start = time.monotonic()
    probs = predictor.predict_proba(examples.texts)
    seconds = time.monotonic() - start
    metrics = classification_metrics(examples.labels, probs)
    metrics["ms_per_example"] = round(1000 * seconds / max(1, len(examples)), 3)
    columns = {"probability": probs}
    if peer is not None:
        for name, predictions in (("tfidf_svm", peer.predict(examples.texts)), ("vader", vader_predictions(examples.texts))):
            peer_metrics = classification_metrics(examples.labels, predictions)
            metrics.update({f"{name}_{key}": peer_metrics[key] for key in SUMMARY_KEYS})
            columns[name] = predictions
    return metrics, columns


PROBABILITY_COLUMN = "p_positive"  # what evaluate's TSVs and predict print: P(positive), whatever the label


def _predictions_tsv(examples, columns) -> bytes:
    names = list(columns)
    lines = ["\t".join(["text", "label", *(PROBABILITY_COLUMN if n == "probability" else n for n in names)])]
    for i, text in enumerate(examples.texts):
        values = [f"{float(columns[n][i]):.4f}" if n == "probability" else LABELS[int(columns[n][i])] for n in names]
        lines.append("\t".join([text.replace("\t", " "), LABELS[int(examples.labels[i])], *values]))
    return ("\n".join(lines) + "\n").encode()


def _stem(source: str) -> str:
    return Path(source).stem if not source.startswith("tfds:") else source[5:].replace("/", "_").replace(":", "_")


def evaluate(config: EvaluateConfig, baseline: BaselineConfig | None = None,
             which: ModelChoiceConfig | None = None) -> dict:
    """Score ``config.model`` on ``config.data`` (and the negation set); returns the evaluate JSON.

    Files (in ``--out``, default ``MODEL/eval``): ``confusion_<data>_<runtime>.png`` and
    ``predictions_<data>_<runtime>.tsv`` (per text: probability and the peers' labels), the same
    for the negation set.
    """
    from tasks.common.plots import confusion_matrix_png, save_png

    baseline = baseline or BaselineConfig()
    student = bool(which and which.student)
    directory = SentimentModelDir.open(config.model)
    predictor = load_predictor(directory, config.runtime, student)
    data = config.data if given(config.data) else directory.data.data
    examples = load_config_examples(directory.data, data, default_split="test", limit=config.limit)
    if given(directory.data.val) and Path(examples.source).resolve() == Path(directory.data.val).resolve():
        log.warning("%s was this model's early-stopping (--val) data: its accuracy is optimistic", examples.source)
    negation = None
    if given(baseline.negation):
        negation = load_config_examples(directory.data, baseline.negation, default_split="test")
    peer = _peer(directory) if baseline.baseline else None
    log.info("evaluating %s (%s) on %d examples of %s", directory.path, config.runtime, len(examples), examples.source)
    metrics, columns = _score(predictor, examples, peer)
    out_dir = directory.evaluation_dir(config.out)
    plot = None
    runtime_name = f"{config.runtime}_student" if student and config.runtime != "tflm" else config.runtime
    stem = f"{_stem(examples.source)}_{runtime_name}"
    if out_dir is not None:
        matrix = np.asarray(metrics["confusion_matrix"])
        title = f"{config.runtime}\naccuracy {metrics['accuracy']:.3f}"
        plot = save_png(out_dir / f"confusion_{stem}.png", confusion_matrix_png(matrix, list(LABELS), title=title))
        write_bytes_atomic(out_dir / f"predictions_{stem}.tsv", _predictions_tsv(examples, columns))
    if negation is not None:
        negation_metrics, negation_columns = _score(predictor, negation, peer)
        metrics["negation_data"] = negation.source
        metrics["negation_examples"] = len(negation)
        for key in ("accuracy", "tfidf_svm_accuracy", "vader_accuracy"):
            if key in negation_metrics:
                metrics[f"negation_{key}"] = negation_metrics[key]
        if out_dir is not None:
            path = out_dir / f"predictions_{_stem(negation.source)}_{runtime_name}.tsv"
            write_bytes_atomic(path, _predictions_tsv(negation, negation_columns))
            metrics["negation_predictions"] = str(path)
    if peer is not None:
        metrics["tfidf_svm_c"] = peer.info["c"]
    if student or config.runtime == "tflm":
        metrics["scored_model"] = "student" if directory.student_file.is_file() else "ensemble"
    return evaluation_result(task="sentiment", model=directory.path, runtime=config.runtime, data=examples.source,
                             examples=len(examples), plot=plot, **metrics)


def predict(config: PredictConfig, texts: Sequence[str], threshold: float = 0.5) -> list[tuple[str, float]]:
    """``(label, P(positive))`` per text."""
    if not texts:
        raise UserError("no text given; pass one or more texts (or '-' to read lines from stdin)")
    check_texts(texts)
    return [(label, p) for _, label, p in next(predict_batches(config, [list(texts)], threshold))]


def check_texts(texts: Sequence[str]) -> None:
    for i, text in enumerate(texts, 1):
        if not text.strip():
            raise UserError(f"text {i} is empty")


def predict_batches(config: PredictConfig, batches: Iterable[list[str]],
                    threshold: float = 0.5) -> Iterator[list[tuple[str, str, float]]]:
    """``[(text, label, P(positive))]`` per batch of texts, as each batch arrives.

    The model is loaded once; ``batches`` may be a stream (:func:`stdin_batches`), so a pipeline
    gets each answer as soon as its line was read.
    """
    directory = SentimentModelDir.open(config.model)
    predictor = load_predictor(directory, config.runtime)
    for batch in batches:
        if batch:
            probs = predictor.predict_proba(list(batch))
            yield [(text, LABELS[int(p >= threshold)], float(p)) for text, p in zip(batch, probs)]


def read_stdin_texts() -> list[str]:
    """Every non-blank stdin line (see :func:`stdin_batches`)."""
    return [text for batch in stdin_batches() for text in batch]


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def escape_text(text: str) -> str:
    r"""The text as one TSV field: backslash, tab, newline and CR written as ``\\``, ``\t``, ``\n``, ``\r``."""
    return text.translate(_ESCAPES)
