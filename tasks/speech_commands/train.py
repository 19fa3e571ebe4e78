"""``lstm-suite speech_commands train``: folder (or tfds) -> trained model directory."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from lstm_core import plots
from lstm_core.errors import UserError
from lstm_core.io import write_json_atomic
from lstm_core.training import TrainConfig, fit, model_directory, set_seed

from tasks.speech_commands import data as D
from tasks.speech_commands import model as M
from tasks.speech_commands.artifacts import save_model_dir

log = logging.getLogger(__name__)

DEFAULT_TRAIN = TrainConfig(epochs=30, learning_rate=3e-3, patience=12, monitor="val_loss")
STATS_CLIPS = 2000  # clips used for the feature standardisation statistics


class ConfusionMatrixImage(keras.callbacks.Callback):
    """Writes the validation confusion matrix as a TensorBoard image every ``every`` epochs."""

    def __init__(self, clips, labels_true, label_names, log_dir, every: int = 1, tag="confusion_matrix/validation"):
        super().__init__()
        self.clips, self.labels_true, self.names = clips, labels_true, label_names
        self.writer = tf.summary.create_file_writer(str(Path(log_dir) / "validation"))
        self.every, self.tag = max(1, every), tag

    def on_epoch_end(self, epoch, logs=None):
        if epoch % self.every and epoch + 1 != self.params.get("epochs"):
            return
        write_confusion_image(self.model, self.clips, self.labels_true, self.names, self.writer, self.tag, epoch)


def write_confusion_image(model, clips, y, names, writer, tag, step):
    pred = M.predict_proba(model, clips).argmax(-1)
    cm = plots.confusion_matrix(y, pred, len(names))
    png = plots.confusion_matrix_png(cm, names, title=f"{tag} (step {step})")
    with writer.as_default():
        tf.summary.image(tag, tf.image.decode_png(png)[None], step=step)
    writer.flush()
    return cm, pred


def _take_arrays(ds, limit: int):
    xs, ys = [], []
    count = 0
    for x, y in ds.as_numpy_iterator():
        xs.append(x)
        ys.append(y)
        count += 1
        if count >= limit:
            break
    if not xs:
        return np.zeros((0, 1), np.float32), np.zeros((0,), np.int32)
    return np.stack(xs), np.asarray(ys, np.int32)


def load_training_data(args, dcfg: D.DataConfig):
    """Returns ``(labels, train_x/ds, train_y, (val_x, val_y), (test_x, test_y) or None, source, noise)``."""
    if getattr(args, "tfds", False):
        train_ds, labels = D.load_tfds("train", dcfg, data_dir=args.tfds_data_dir)
        val_ds, _ = D.load_tfds("validation", dcfg, data_dir=args.tfds_data_dir)
        test_ds, _ = D.load_tfds("test", dcfg, data_dir=args.tfds_data_dir)
        val = _take_arrays(val_ds, args.max_eval_clips)
        test = _take_arrays(test_ds, args.max_eval_clips)
        noise = D.background_noise(None, dcfg.sample_rate)
        source = {"tfds": D.TFDS_NAME, "tfds_data_dir": args.tfds_data_dir}
        return labels, train_ds, None, val, test, source, noise
    if args.data is None:
        raise UserError("train needs --data DIR (a <word>/<speaker>_nohash_<n>.wav folder) or --tfds")
    folder = D.split_folder(args.data, dcfg)
    t0 = time.time()
    train = folder.arrays("training", dcfg)
    val = folder.arrays("validation", dcfg)
    test = folder.arrays("testing", dcfg) if folder.splits["testing"] else None
    log.info("loaded %d clips in %.1fs", len(train[0]) + len(val[0]) + (len(test[0]) if test else 0), time.time() - t0)
    noise = D.background_noise(args.data, dcfg.sample_rate)
    source = {"data": str(Path(args.data).resolve())}
    return folder.labels, train[0], train[1], val, test, source, noise


def add_synthetic_voices(train_x, train_y, labels, dcfg: D.DataConfig, seed: int):
    """Training data plus every word spoken by ``dcfg.synthetic_voices`` espeak-ng voices."""
    if dcfg.synthetic_voices <= 0:
        return train_x, train_y, 0
    from tasks.speech_commands.synthetic import synthetic_clips

    t0 = time.time()
    x, y, _ = synthetic_clips(labels, dcfg.synthetic_voices, dcfg, seed=seed)
    log.info("synthesised %d clips (%d voices x %d speakable words) in %.1fs",
             len(x), dcfg.synthetic_voices, len(x) // max(dcfg.synthetic_voices, 1), time.time() - t0)
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


def train(args, dcfg: D.DataConfig, mcfg: M.ModelConfig, tcfg: TrainConfig) -> dict:
    started = time.time()
    labels, train_x, train_y, val, test, source, noise = load_training_data(args, dcfg)
    train_x, train_y, synthetic = add_synthetic_voices(train_x, train_y, labels, dcfg, tcfg.seed)
    if len(val[0]) == 0:
        raise UserError("the validation split is empty; add validation_list.txt or more speakers")
    mcfg = dataclasses.replace(mcfg, sample_rate=dcfg.sample_rate, clip_samples=dcfg.clip_samples)
    with model_directory(args.out) as work:
        set_seed(tcfg.seed)
        if isinstance(train_x, tf.data.Dataset):
            stats_clips, _ = _take_arrays(train_x, STATS_CLIPS)
        else:
            rng = np.random.default_rng(tcfg.seed)
            pick = rng.permutation(len(train_x))[:STATS_CLIPS]
            stats_clips = train_x[np.sort(pick)]
        model = M.build_calibrated_model(mcfg, len(labels), stats_clips)
        train_ds = D.make_dataset(train_x, train_y, dcfg, training=True, noise=noise, seed=tcfg.seed)
        val_ds = D.make_dataset(val[0], val[1], dcfg, training=False)
        steps = tcfg.steps_per_epoch or int(train_ds.cardinality().numpy())
        if steps <= 0:  # unknown cardinality (tfds): a plain learning rate
            lr = tcfg.learning_rate
        else:
            lr = keras.optimizers.schedules.CosineDecay(
                tcfg.learning_rate, decay_steps=max(1, steps * tcfg.epochs), alpha=0.05
            )
        model.compile(
            optimizer=keras.optimizers.Adam(lr),
            loss="sparse_categorical_crossentropy",
            weighted_metrics=["accuracy"],  # evaluation batches carry 0-weight padding
        )
        model.summary(print_fn=lambda s, **_: log.info(s))
        save_model_dir(work, dcfg, mcfg, tcfg, labels, source)
        cm_cb = ConfusionMatrixImage(val[0], val[1], labels, work / "logs")
        hparams = {**{f"data.{k}": v for k, v in dataclasses.asdict(dcfg).items() if k != "test_speakers"},
                   **{f"model.{k}": v for k, v in dataclasses.asdict(mcfg).items()},
                   "test_speakers": ",".join(dcfg.test_speakers)}
        history = fit(model, train_ds, val_ds, workdir=work, config=tcfg, hparams=hparams, callbacks=[cm_cb])
        model.save(work / "model.keras")

        metrics = {"labels": labels, "epochs_run": len(history.history.get("loss", [])),
                   "training_examples": int(len(train_y)) if train_y is not None else None,
                   "synthetic_training_examples": synthetic}
        writer = tf.summary.create_file_writer(str(work / "logs" / "evaluation"))
        for name, split in (("validation", val), ("testing", test)):
            if split is None or len(split[0]) == 0:
                continue
            cm, pred = write_confusion_image(
                model, split[0], split[1], labels, writer, f"confusion_matrix/{name}_final", metrics["epochs_run"]
            )
            plots.save_png(work / f"confusion_{name}.png", plots.confusion_matrix_png(cm, labels, title=name))
            metrics[f"{name}_accuracy"] = float(np.mean(pred == split[1]))
            metrics[f"{name}_examples"] = int(len(split[1]))
        if dcfg.test_speakers:
            metrics["test_speakers"] = list(dcfg.test_speakers)
        metrics["train_seconds"] = round(time.time() - started, 1)
        write_json_atomic(work / "metrics.json", metrics)
    log.info("validation accuracy %.4f%s", metrics.get("validation_accuracy", float("nan")),
             f", test accuracy {metrics['testing_accuracy']:.4f}" if "testing_accuracy" in metrics else "")
    return {k: v for k, v in metrics.items() if k != "labels"} | {"model": str(args.out)}
