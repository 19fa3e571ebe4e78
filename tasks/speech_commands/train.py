"""``lstm-suite speech_commands train``: a folder of WAVs (or tfds) -> a model directory."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tasks.common.artifacts import TRAIN_REPORT_FILE
from tasks.common.config import OutputConfig, TrainConfig
from tasks.common.errors import UserError
from tasks.common.io import write_json_atomic
from tasks.common.progress import step
from tasks.common.training import (
    check_same_on_workers,
    distribution_scope,
    epoch_summary,
    fit,
    interruption_point,
    join_for_training,
    model_directory,
    run_times,
    set_seed,
)

from tasks.speech_commands import data as speech_data
from tasks.speech_commands import metrics as speech_metrics
from tasks.speech_commands import model as speech_model
from tasks.speech_commands.artifacts import SpeechModelDir
from tasks.speech_commands.config import DataConfig, ModelConfig
from tasks.speech_commands.frontend import frontend_constants

log = logging.getLogger(__name__)

STATS_CLIPS = 2000  # clips used for the front-end gains and the feature standardisation


class ConfusionMatrixImage(keras.callbacks.Callback):
    """Writes the validation confusion matrix as a TensorBoard image after every epoch."""

    def __init__(self, clips, labels_true, words, log_dir, tag="confusion_matrix/validation"):
        super().__init__()
        self.clips, self.labels_true, self.words, self.tag = clips, labels_true, words, tag
        self.writer = tf.summary.create_file_writer(str(Path(log_dir) / "validation"))

    def on_epoch_end(self, epoch, logs=None):
        write_confusion_image(self.model, self.clips, self.labels_true, self.words, self.writer, self.tag, epoch)


def write_confusion_image(model, clips, labels_true, words, writer, tag, step) -> dict:
    predicted = speech_model.predict_proba(model, clips).argmax(-1)
    metrics = speech_metrics.classification_metrics(labels_true, predicted, words)
    png = speech_metrics.confusion_png(metrics, title=f"{tag} (step {step})")
    with writer.as_default():
        tf.summary.image(tag, tf.image.decode_png(png)[None], step=step)
    writer.flush()
    return metrics


def add_synthetic_voices(train_x, train_y, labels, config: DataConfig, seed: int):
    """Training data plus every word spoken by ``config.synthetic_voices`` espeak-ng voices."""
    if config.synthetic_voices <= 0:
        return train_x, train_y, 0
    from tasks.speech_commands.synthetic import synthetic_clips

    started = time.time()
    x, y, _ = synthetic_clips(labels, config.synthetic_voices, config, seed=seed)
    log.info("synthesised %d clips (%d voices) in %.1fs", len(x), config.synthetic_voices, time.time() - started)
    if len(x) == 0:
        return train_x, train_y, 0
    if isinstance(train_x, tf.data.Dataset):  # tfds: interleave at random, in proportion to the sizes
        real = int(train_x.cardinality().numpy())
        weight = len(x) / (len(x) + real) if real > 0 else 0.1
        synthetic = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed).repeat()
        mixed = tf.data.Dataset.sample_from_datasets(
            [train_x, synthetic], weights=[1 - weight, weight], seed=seed, stop_on_empty_dataset=True)
        return mixed, None, len(x)
    return np.concatenate([train_x, x]), np.concatenate([train_y, y]), len(x)


def check_front_end(config: ModelConfig) -> None:
    """Front-end settings that are each in range but do not fit together -> one error line."""
    try:
        config.decimation
        frontend_constants(config)
    except ValueError as err:
        raise UserError(f"front-end settings: {err}") from None


def _statistics_clips(train_x, seed: int):
    if isinstance(train_x, tf.data.Dataset):
        return np.stack([x for x, _ in train_x.take(STATS_CLIPS).as_numpy_iterator()])
    pick = np.random.default_rng(seed).permutation(len(train_x))[:STATS_CLIPS]
    return train_x[np.sort(pick)]


def _report(work, train: TrainConfig, keras_model, loaded, train_y, synthetic: int) -> dict:
    """``train_report.json`` (without the wall time); final confusion images in ``logs/evaluation``."""
    report = {
        **epoch_summary(work, train),
        "training_examples": int(len(train_y)) if train_y is not None else None,
        "synthetic_training_examples": synthetic,
        "split": loaded.split.get("method"),
        "speakers": loaded.split.get("speakers"),
    }
    writer = tf.summary.create_file_writer(str(work / "logs" / "evaluation"))
    for name, split in (("validation", loaded.validation), ("test", loaded.test)):
        if split is None or len(split[0]) == 0:
            continue
        scores = write_confusion_image(keras_model, split[0], split[1], loaded.labels, writer,
                                       f"confusion_matrix/{name}_final", report["epochs_run"])
        report[f"{name}_accuracy"] = scores["accuracy"]
        report[f"{name}_examples"] = int(len(split[1]))
    return report


def train(data: DataConfig, model: ModelConfig, train: TrainConfig, output: OutputConfig) -> dict:
    """Train a keyword spotter into ``output.out``; returns the train report.

    Args:
        data: clips, split and augmentation.
        model: front end and LSTM.
        train: optimisation (epochs, learning rate, early stopping, seed, distribution).
        output: the model directory and whether it may be replaced or resumed.

    Example:

    ```python
    report = train(DataConfig(data="../shared/data/speech_digits"), ModelConfig(units=32),
                   DEFAULT_TRAIN, OutputConfig(out="saved_models/kws"))
    ```
    """
    settings = {"data": data, "model": model, "train": train}
    output = join_for_training(train, output, settings)
    model = dataclasses.replace(model, sample_rate=data.sample_rate, clip_samples=data.clip_samples)
    with model_directory(output.out, overwrite=output.overwrite, resume=output.resume, task="speech_commands",
                         settings=settings) as work:
        check_front_end(model)
        loaded = speech_data.load_training_data(data)
        val_x, val_y = loaded.validation
        if len(val_x) == 0:
            raise UserError(f"--data {data.data}: the validation split is empty; add validation_list.txt or speakers")
        train_x, train_y, synthetic = add_synthetic_voices(
            loaded.train_x, loaded.train_y, loaded.labels, data, train.seed)
        set_seed(train.seed)
        train_ds = speech_data.make_dataset(train_x, train_y, data, training=True, noise=loaded.noise, seed=train.seed)
        val_ds = speech_data.make_dataset(val_x, val_y, data, training=False)
        steps = train.steps_per_epoch or int(train_ds.cardinality().numpy())
        with distribution_scope(train):
            with step("front-end gains and feature statistics"):
                keras_model = speech_model.build_calibrated_model(
                    model, len(loaded.labels), _statistics_clips(train_x, train.seed))
            learning_rate = train.learning_rate if steps <= 0 else keras.optimizers.schedules.CosineDecay(
                train.learning_rate, decay_steps=max(1, steps * train.epochs), alpha=0.05)
            keras_model.compile(
                optimizer=keras.optimizers.Adam(learning_rate),
                loss="sparse_categorical_crossentropy",
                weighted_metrics=["accuracy"],  # evaluation batches carry 0-weight padding
            )
        check_same_on_workers("front-end statistics", *[w.numpy() for w in keras_model.non_trainable_weights])
        keras_model.summary(print_fn=lambda line, **_: log.info(line))
        directory = SpeechModelDir(work, {"data": data, "model": model, "train": train})
        directory.save_config(work)
        directory.save_assets(work, loaded.labels, loaded.split)
        hparams = {**{f"data.{k}": v for k, v in dataclasses.asdict(data).items() if k != "test_speakers"},
                   **{f"model.{k}": v for k, v in dataclasses.asdict(model).items()},
                   "test_speakers": ",".join(data.test_speakers)}
        confusion = ConfusionMatrixImage(val_x, val_y, loaded.labels, work / "logs")
        fit(keras_model, train_ds, val_ds, workdir=work, config=train, hparams=hparams, callbacks=[confusion])
        keras_model.save(work / "model.keras")  # small (a keyword spotter): no progress line needed
        interruption_point("final_save")
        report = {**_report(work, train, keras_model, loaded, train_y, synthetic), **run_times()}
        write_json_atomic(work / TRAIN_REPORT_FILE, report)
    log.info("validation accuracy %.4f%s", report.get("validation_accuracy", float("nan")),
             f", test accuracy {report['test_accuracy']:.4f}" if "test_accuracy" in report else "")
    return {**report, "model": str(output.out)}
