"""``evaluate`` (accuracy + confusion matrix) and ``predict`` (top-k words per WAV file).

Without ``--data``, evaluate scores the model's own held-out test split (``split.json``), the
honest figure. Given clips the model was trained or early-stopped on, it says so in one warning
and counts them in its JSON (``seen_in_training``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from tasks.common import plots
from tasks.common.artifacts import evaluation_result
from tasks.common.config import EvaluateConfig, PredictConfig
from tasks.common.errors import UserError
from tasks.common.io import write_json_atomic

from tasks.speech_commands import data as speech_data
from tasks.speech_commands import metrics as speech_metrics
from tasks.speech_commands.artifacts import SpeechModelDir
from tasks.speech_commands.config import TASK_NAME, EvaluateSelection, PredictOptions
from tasks.speech_commands.model import Classifier

log = logging.getLogger(__name__)


def held_out_examples(directory: SpeechModelDir) -> tuple[list, str]:
    """The test split recorded at training time, as examples, and where it lives."""
    split = directory.split()
    if not split or "testing" not in split:
        raise UserError(f"{directory.path}: no recorded test split (split.json); pass --data DIR")
    root = Path(split["data"])
    if not split["testing"]:
        raise UserError(f"{directory.path / 'split.json'}: the test split is empty; pass --data DIR")
    if not root.is_dir():
        raise UserError(f"{root}: the model's data folder is not there any more; pass --data DIR")
    examples = []
    for name in split["testing"]:
        path = root / name
        examples.append(speech_data.Example(path, path.parent.name, speech_data.speaker_of(path)))
    return examples, f"{root} (test split: {', '.join(split['speakers']['testing'])})"


def seen_in_training(directory: SpeechModelDir, examples, data_root) -> dict:
    """How many of ``examples`` the model trained or early-stopped on (files and speakers)."""
    split = directory.split()
    if not split or "training" not in split:
        return {}
    names = [speech_data.relative_name(e.path, data_root) for e in examples]
    trained, validated = set(split["training"]), set(split["validation"])
    speakers = sorted({e.speaker for e in examples} & set(split["speakers"]["training"]))
    return {
        "training_files": sum(name in trained for name in names),
        "validation_files": sum(name in validated for name in names),
        "training_speakers": speakers,
    }


def _tfds_test_clips(directory: SpeechModelDir, limit: int | None):
    config = directory.data
    dataset, _ = speech_data.load_tfds("test", config, name=config.tfds_name)
    pairs = list(dataset.take(limit or config.max_eval_clips).as_numpy_iterator())
    return np.stack([x for x, _ in pairs]), np.array([y for _, y in pairs], np.int32)


def evaluate(config: EvaluateConfig, selection: EvaluateSelection | None = None) -> dict:
    """Score ``config.model`` in ``config.runtime``; the shared evaluate JSON plus accuracy figures.

    Args:
        config: model, data (none: the held-out test split), runtime, output folder, limit.
        selection: only clips of these speakers.
    """
    selection = selection or EvaluateSelection()
    directory = SpeechModelDir.open(config.model)
    classify = Classifier(directory, config.runtime)  # model / export checked before any data is read
    words = directory.labels
    seen, speakers = {}, None
    if config.data is None and directory.data.tfds_name:
        clips, labels_true = _tfds_test_clips(directory, config.limit)
        data_name = f"{directory.data.data} (test split)"
    else:
        if config.data is None:
            examples, data_name = held_out_examples(directory)
            data_root = Path(directory.split()["data"])
        else:
            data_root = Path(config.data)
            examples, data_name = speech_data.scan_folder(data_root, require_classes=1), config.data
        if selection.speakers:
            examples = [e for e in examples if e.speaker in set(selection.speakers)]
            if not examples:
                raise UserError(f"--speakers: no clips of {', '.join(selection.speakers)} in {data_name}")
        examples = examples[: config.limit] if config.limit else examples
        unknown = sorted({e.word for e in examples} - set(words))
        if unknown:
            raise UserError(
                f"{data_name}: folder(s) {', '.join(unknown)} are not words this model knows ({', '.join(words)})")
        seen = seen_in_training(directory, examples, data_root)
        if seen and (seen["training_files"] or seen["validation_files"] or seen["training_speakers"]):
            log.warning(
                "%s: %d of %d clips were used in training and %d for early stopping; training speakers %s: "
                "this accuracy is not a held-out figure (evaluate without --data scores the test split)",
                data_name, seen["training_files"], len(examples), seen["validation_files"],
                ", ".join(seen["training_speakers"]) or "none")
        log.info("evaluating %d clips with %s", len(examples), config.runtime)
        clips = speech_data.load_clips([e.path for e in examples], directory.data)
        labels_true = np.array([words.index(e.word) for e in examples], np.int32)
        speakers = [e.speaker for e in examples]
    predicted = classify(clips).argmax(-1)
    scores = speech_metrics.classification_metrics(labels_true, predicted, words, speakers)
    out_dir = directory.evaluation_dir(config.out)
    plot = None
    result = evaluation_result(
        task=TASK_NAME, model=directory.path, runtime=config.runtime, data=data_name, examples=len(labels_true),
        plot=None, **scores, speaker_filter=list(selection.speakers), seen_in_training=seen,
    )
    if out_dir is not None:
        title = f"{Path(str(data_name).split(' (')[0]).name} ({config.runtime}), accuracy {scores['accuracy']:.3f}"
        plot = plots.save_png(out_dir / f"confusion_{config.runtime}.png", speech_metrics.confusion_png(scores, title))
        result["plot"] = str(plot)
        write_json_atomic(out_dir / f"evaluate_{config.runtime}.json", result)
    return result


def predict(config: PredictConfig, inputs, options: PredictOptions | None = None) -> list[dict]:
    """Top-k words of every WAV file in ``inputs``: ``[{"file", "top": [[word, p], ...]}, ...]``."""
    options = options or PredictOptions()
    directory = SpeechModelDir.open(config.model)
    classify = Classifier(directory, config.runtime)
    words = directory.labels
    clips = np.stack([speech_data.load_clip(path, directory.data) for path in inputs])  # errors name the file
    probabilities = classify(clips)
    k = min(options.top_k, len(words))
    return [
        {"file": str(path), "top": [[words[i], float(p[i])] for i in np.argsort(-p)[:k]]}
        for path, p in zip(inputs, probabilities)
    ]
