"""``lstm-suite sentiment train``: tokenizer + model + TensorBoard logs in one model directory.

The directory is built in ``OUT.partial`` (resumable) and renamed onto ``OUT`` when training
finished; an existing ``OUT`` is refused unless ``--overwrite`` (checked before any data is
read). Early stopping watches the validation accuracy of ``--val`` or of a held-out share of
``--data``; report figures on other data (``evaluate``, default ``data/sentiment/dev.tsv``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings

import numpy as np

from lstm_core.config import OutputConfig, TrainConfig, settings_to_dict
from lstm_core.io import write_json_atomic
from lstm_core.training import distribution_scope, epoch_summary, fit, model_directory, set_seed
from tasks.sentiment.artifacts import CALIBRATION_FILE, TOKENIZER_FILE, SentimentModelDir, Tokenizer
from tasks.sentiment.config import DataConfig, ModelConfig, ObjectiveConfig, given
from tasks.sentiment.data import load_training_data, make_dataset, train_tokenizer
from tasks.sentiment.metrics import classification_metrics
from tasks.sentiment.model import KerasPredictor, SentimentTrainer, build_model

log = logging.getLogger(__name__)

CALIBRATION_TEXTS = 500


def train(data: DataConfig, model: ModelConfig, objective: ObjectiveConfig, train: TrainConfig,
          output: OutputConfig) -> dict:
    """Train into ``output.out``; returns the train report (also in ``train_report.json``)."""
    import keras

    start = time.monotonic()
    with model_directory(output.out, overwrite=output.overwrite, resume=output.resume) as work:
        set_seed(train.seed)
        train_examples, val_examples = load_training_data(data, train.seed)
        tokenizer_path = work / TOKENIZER_FILE
        if tokenizer_path.exists():
            log.info("reusing tokenizer %s", tokenizer_path)
        else:
            log.info("training sentencepiece (vocab %d) on %d texts", data.vocab_size, len(train_examples))
            train_tokenizer(train_examples.texts, tokenizer_path, vocab_size=data.vocab_size)
        tokenizer = Tokenizer(tokenizer_path, data.max_tokens)
        use_ratings = (objective.rating_weight > 0 and train_examples.ratings is not None
                       and val_examples.ratings is not None)
        if objective.rating_weight > 0 and not use_ratings:
            log.info("no '%s' column in both training and validation data: rating head off", data.rating_column)
        model = dataclasses.replace(model, vocab_size=tokenizer.vocab_size, rating_head=use_ratings)
        monitor = "val_probability_accuracy" if use_ratings else "val_accuracy"
        train = dataclasses.replace(train, monitor=monitor, monitor_mode="max")
        rating_scale = None
        if use_ratings:
            rating_scale = (float(train_examples.ratings.mean()), max(float(train_examples.ratings.std()), 1e-6))
        directory = SentimentModelDir(work, {"data": data, "model": model, "objective": objective, "train": train},
                                      {"rating_scale": list(rating_scale) if rating_scale else None})
        directory.save_config(work)
        rng = np.random.default_rng(train.seed)
        pick = rng.choice(len(train_examples), size=min(CALIBRATION_TEXTS, len(train_examples)), replace=False)
        write_json_atomic(work / CALIBRATION_FILE, [train_examples.texts[i] for i in sorted(pick)])

        with distribution_scope(train):
            network = build_model(model, seed=train.seed)
            trainer = SentimentTrainer(network, adversarial_epsilon=objective.adversarial_epsilon)
            trainer(np.zeros((1, 2), np.int32))  # built before fit (BackupAndRestore needs the weights)
            losses = {"probability": keras.losses.BinaryCrossentropy()}
            weights = {"probability": 1.0}
            metrics = {"probability": [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]}
            if use_ratings:
                losses["rating"] = keras.losses.MeanSquaredError()
                weights["rating"] = objective.rating_weight
            trainer.compile(optimizer=keras.optimizers.Adam(train.learning_rate), loss=losses,
                            loss_weights=weights, metrics=metrics)
        common = dict(tokenizer_proto=tokenizer.proto, batch_size=data.batch_size, max_tokens=data.max_tokens,
                      seed=train.seed, rating_scale=rating_scale)
        train_ds = make_dataset(train_examples, training=True, sampling_alpha=data.sampling_alpha,
                                repeat=train.steps_per_epoch is not None, **common)
        val_ds = make_dataset(val_examples, training=False, **common)
        hparams = {f"{section}.{key}": value for section, config in (("data", data), ("model", model),
                                                                      ("objective", objective))
                   for key, value in settings_to_dict(config).items()}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Your input ran out of data")
            fit(trainer, train_ds, val_ds, workdir=work, config=train, hparams=hparams)
        network.save(work / "model.keras")

        probs = KerasPredictor(network, tokenizer).predict_proba(val_examples.texts)
        val_metrics = classification_metrics(val_examples.labels, probs)
        report = {
            "train_data": train_examples.source,
            "train_examples": len(train_examples),
            "val_data": val_examples.source if given(data.val) else f"{train_examples.source} (held out)",
            "val_examples": len(val_examples),
            "vocab_size": tokenizer.vocab_size,
            "parameters": int(network.count_params()),
            **epoch_summary(work, train),
            "wall_seconds": round(time.monotonic() - start, 1),
            **{f"val_{key}": value for key, value in val_metrics.items()},
        }
        write_json_atomic(work / "train_report.json", report)
    log.info("val accuracy %.4f after %s epochs (best %s) in %.0f s", report["val_accuracy"],
             report["epochs_run"], report["best_epoch"], report["wall_seconds"])
    return {"model": str(output.out), **report}
