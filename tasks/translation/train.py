"""``lstm-suite translation train``: sentencepiece + seq2seq training with TensorBoard and resume."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

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
from tasks.translation.artifacts import SOURCE_SPM, TARGET_SPM, TranslationModelDir
from tasks.translation.config import DataConfig, ModelConfig, MonitorConfig, ScheduleConfig
from tasks.translation.data import (
    Tokenizer,
    encode_pairs,
    filter_length,
    honest_split,
    make_dataset,
    resolve_test_file,
    train_tokenizers,
)
from tasks.translation.decode import KerasBackend, greedy_decode
from tasks.translation.metrics import corpus_scores
from tasks.translation.model import Seq2Seq, build, compile_model

log = logging.getLogger(__name__)

TRAIN_REPORT = "train_report.json"


class BleuCallback(keras.callbacks.Callback):
    """Greedy-decodes validation sentences after every N-th epoch; adds ``val_bleu``/``val_chrf`` to the logs.

    The values go into the epoch's logs (so the progress bar's epoch line shows them) and into
    TensorBoard (``logs/validation``: ``epoch_bleu``, ``epoch_chrf``); nothing is printed
    mid-line while a progress bar is drawn.

    Args:
        seq2seq: the model being trained (its encoder/step share the weights).
        source_ids: encoder inputs of the validation sentences.
        references: their reference translations.
        target_tokenizer: detokenizes the hypotheses.
        every: decode after every N-th epoch (0: never).
        log_dir: TensorBoard directory, or None.
        announce: also log one line per evaluation (when no progress display shows the logs).
    """

    def __init__(self, seq2seq: Seq2Seq, source_ids, references, target_tokenizer: Tokenizer, every: int = 1,
                 log_dir: Path | None = None, announce: bool = False):
        super().__init__()
        self.seq2seq, self.source_ids, self.references = seq2seq, source_ids, references
        self.target_tokenizer, self.every, self.log_dir, self.announce = target_tokenizer, every, log_dir, announce
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not self.every or (epoch + 1) % self.every:
            return
        hypotheses = self.target_tokenizer.decode(greedy_decode(KerasBackend(self.seq2seq), self.source_ids))
        scores = corpus_scores(hypotheses, self.references)
        logs["val_bleu"], logs["val_chrf"] = scores["bleu"], scores["chrf"]
        if self.log_dir is not None:
            if self._writer is None:
                self._writer = tf.summary.create_file_writer(str(self.log_dir))
            with self._writer.as_default():
                tf.summary.scalar("epoch_bleu", scores["bleu"], step=epoch)
                tf.summary.scalar("epoch_chrf", scores["chrf"], step=epoch)
            self._writer.flush()
        if self.announce:
            log.info("epoch %d: val BLEU %.2f chrF %.2f", epoch + 1, scores["bleu"], scores["chrf"])


class CheckpointAverage(keras.callbacks.Callback):
    """Averages the weights of the last ``n`` epochs at the end of training (checkpoint averaging).

    Runs after early stopping restored the best epoch; the average replaces those weights only
    when its validation loss is not higher. ``result`` says what was kept.

    Args:
        n: how many final epochs to average (2 or more).
        val_data: the validation batches (the loss that decides).
    """

    def __init__(self, n: int, val_data):
        super().__init__()
        self.n, self.val_data, self.snapshots, self.result = n, val_data, [], {}

    def on_epoch_end(self, epoch, logs=None):
        self.snapshots = (self.snapshots + [[np.array(w) for w in self.model.get_weights()]])[-self.n:]

    def on_train_end(self, logs=None):
        if len(self.snapshots) < 2:
            return
        kept = self.model.get_weights()
        kept_loss = float(np.ravel(self.model.evaluate(self.val_data, verbose=0))[0])
        self.model.set_weights([np.mean(ws, axis=0) for ws in zip(*self.snapshots)])
        average_loss = float(np.ravel(self.model.evaluate(self.val_data, verbose=0))[0])
        used = average_loss <= kept_loss
        if not used:
            self.model.set_weights(kept)
        self.result = {"epochs": len(self.snapshots), "val_loss_best_epoch": round(kept_loss, 4),
                       "val_loss_average": round(average_loss, 4), "used": used}
        log.info("checkpoint average of the last %d epochs: val_loss %.4f vs %.4f (best epoch): %s",
                 len(self.snapshots), average_loss, kept_loss, "kept" if used else "not kept")


def tokenizers(workdir: Path, train_pairs, config: DataConfig) -> tuple[Tokenizer, Tokenizer]:
    """Train the sentencepiece models into ``workdir``, or reload them when resuming (ids must not change)."""
    source_path, target_path = Path(workdir) / SOURCE_SPM, Path(workdir) / TARGET_SPM
    if source_path.is_file() and target_path.is_file():
        return Tokenizer.load(source_path), Tokenizer.load(target_path)
    started = time.time()
    log.info("training the sentencepiece models on %d pairs ...", len(train_pairs))
    source, target = train_tokenizers(train_pairs, config)
    source.save(source_path)
    target.save(target_path)
    log.info("sentencepiece: source %d / target %d pieces (%.1fs)", source.vocab_size, target.vocab_size,
             time.time() - started)
    return source, target


def warmup_cosine(peak: float, schedule: ScheduleConfig, total_steps: int):
    """Linear warm-up from 1% of ``peak`` to ``peak``, then cosine decay to ``peak * min_lr_ratio`` at
    ``total_steps`` (``decay_steps`` is the part after the warm-up)."""
    total = max(1, total_steps)
    warmup = min(schedule.warmup_steps, max(1, total // 10))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak * 0.01,
        decay_steps=max(1, total - warmup),
        alpha=schedule.min_lr_ratio,
        warmup_target=peak,
        warmup_steps=warmup,
    )


def make_optimizer(train: TrainConfig, schedule: ScheduleConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam with linear warm-up to ``learning_rate`` and cosine decay to ``learning_rate * min_lr_ratio``."""
    learning_rate = warmup_cosine(train.learning_rate, schedule, train.epochs * steps_per_epoch)
    return keras.optimizers.Adam(learning_rate, clipnorm=schedule.clipnorm)


def _count_batches(dataset) -> int:
    return int(dataset.reduce(0, lambda n, _: n + 1).numpy())


def _log_split(report: dict) -> None:
    if report.get("test"):
        log.info("test file %s: %d of its %d source sentences occur in --data; dropped %d training pair(s) with them",
                 report["test"], report["test_sources_in_training_file"], report["test_sources"],
                 report["train_pairs_dropped_for_test"])
    if report.get("val_sources_in_training"):
        log.warning("%d validation source sentence(s) also occur in the training pairs (--val overlaps --data)",
                    report["val_sources_in_training"])


def _final_report(work, train, data, seq2seq, val_source, val_pairs, target_tokenizer, history, n_kept,
                  extra: dict) -> dict:
    """Greedy validation BLEU/chrF of the trained model and the run's figures, written to train_report.json."""
    with step(f"greedy decoding of {len(val_source)} validation sentences"):
        hypotheses = target_tokenizer.decode(greedy_decode(KerasBackend(seq2seq), val_source))
    scores = corpus_scores(hypotheses, [p[1] for p in val_pairs])
    report = {
        **epoch_summary(work, train),
        "val_bleu_greedy": scores["bleu"],
        "val_chrf_greedy": scores["chrf"],
        "val_data": str(data.val or f"{data.data} (held out by source {data.val_fraction:g})"),
        **extra,
        **run_times(),
        "train_pairs": n_kept,
        "val_pairs": len(val_pairs),
        "params": int(seq2seq.training.count_params()),
        "history": {k: [float(v) for v in values] for k, values in history.history.items()},
    }
    write_json_atomic(work / TRAIN_REPORT, report)
    log.info("validation BLEU %.2f chrF %.2f (greedy), %.0fs", scores["bleu"], scores["chrf"], report["wall_seconds"])
    return report


def train(
    data: DataConfig,
    model: ModelConfig,
    train: TrainConfig,
    output: OutputConfig,
    schedule: ScheduleConfig | None = None,
    monitor: MonitorConfig | None = None,
) -> dict:
    """Train sentencepiece models and the seq2seq into ``output.out``; returns the train report.

    Args:
        data: which pairs and how they are batched.
        model: layer sizes (the vocabulary sizes are measured here).
        train: epochs, learning rate, early stopping, seed, progress display.
        output: the model directory and whether it may be replaced or resumed.
        schedule: warm-up / cosine decay / clipping (default: ``ScheduleConfig()``).
        monitor: the per-epoch validation BLEU (default: ``MonitorConfig()``).
    """
    schedule, monitor = schedule or ScheduleConfig(), monitor or MonitorConfig()
    settings = {"data": data, "model": model, "train": train, "schedule": schedule, "monitor": monitor}
    output = join_for_training(train, output, settings)
    with model_directory(output.out, overwrite=output.overwrite, resume=output.resume, task="translation",
                         settings=settings) as work:
        set_seed(train.seed)
        data = dataclasses.replace(data, test=resolve_test_file(data))  # config.json names the file (or none)
        split = honest_split(data, train.seed)
        train_pairs, val_pairs = split.train, split.val
        _log_split(split.report)
        source_tokenizer, target_tokenizer = tokenizers(work, train_pairs, data)
        check_same_on_workers("tokenizers", (work / SOURCE_SPM).read_bytes(), (work / TARGET_SPM).read_bytes())
        model = dataclasses.replace(
            model, src_vocab_size=source_tokenizer.vocab_size, tgt_vocab_size=target_tokenizer.vocab_size
        )
        train_data, val_data, val_source, n_train, kept = _datasets(
            data, train.seed, train_pairs, val_pairs, source_tokenizer, target_tokenizer)
        with distribution_scope(train):
            seq2seq = build(model)
            compile_model(seq2seq.training, model, make_optimizer(train, schedule, train.steps_per_epoch or n_train))
        directory = TranslationModelDir(
            work, {"data": data, "model": model, "train": train, "schedule": schedule, "monitor": monitor}
        )
        directory.save_config(work)
        callbacks = _bleu_callbacks(monitor, seq2seq, val_source, val_pairs, target_tokenizer, work, train)
        average = CheckpointAverage(schedule.average_last, val_data) if schedule.average_last > 1 else None
        history = fit(
            seq2seq.training, train_data, val_data, workdir=work, config=train,
            hparams={**_flat("data", data), **_flat("model", model), **_flat("schedule", schedule)},
            callbacks=callbacks + ([average] if average else []),
        )
        with step("saving the model"):
            seq2seq.training.save(work / "model.keras")
        interruption_point("final_save")
        report = _final_report(work, train, data, seq2seq, val_source, val_pairs, target_tokenizer, history,
                               len(kept),
                               {"split": split.report, "checkpoint_average": average.result if average else None})
    return {k: v for k, v in report.items() if k != "history"}


def _bleu_callbacks(monitor: MonitorConfig, seq2seq, val_source, val_pairs, target_tokenizer, work: Path,
                    train: TrainConfig) -> list:
    """The per-epoch validation BLEU (``--bleu-every``), or none."""
    if not monitor.bleu_every:
        return []
    n = min(len(val_pairs), monitor.bleu_sentences)
    return [BleuCallback(seq2seq, val_source[:n], [p[1] for p in val_pairs[:n]], target_tokenizer,
                         monitor.bleu_every, work / "logs" / "validation", announce=train.keras_verbose == 0)]


def _datasets(data: DataConfig, seed: int, train_pairs, val_pairs, source_tokenizer, target_tokenizer):
    """Encoded, length-filtered, bucketed datasets with their batch counts stated.

    Returns ``(train_data, val_data, val_source, n_train, kept)``: ``val_source`` holds every
    validation sentence's ids (for BLEU), ``kept`` the training pairs within ``--max-length``.
    """
    source, target = encode_pairs(train_pairs, source_tokenizer, target_tokenizer)
    source, target, kept = filter_length(source, target, data.max_length)
    if not kept:
        raise UserError(f"{data.data}: no training pair is within --max-length {data.max_length} tokens")
    log.info("training pairs: %d (dropped %d longer than %d tokens), validation pairs: %d",
             len(kept), len(train_pairs) - len(kept), data.max_length, len(val_pairs))
    val_source, val_target = encode_pairs(val_pairs, source_tokenizer, target_tokenizer)
    val_source_kept, val_target_kept, _ = filter_length(val_source, val_target, data.max_length)
    if not val_source_kept:  # every validation pair is long: score truncated ones rather than none
        val_source_kept = [s[: data.max_length] for s in val_source]
        val_target_kept = [t[: data.max_length - 1] for t in val_target]
    train_data = make_dataset(source, target, data, shuffle=True, seed=seed)
    val_data = make_dataset(val_source_kept, val_target_kept, data, shuffle=False)
    # bucketing hides the dataset length from Keras (no ETA); the batch count is fixed, so state it
    n_train, n_val = _count_batches(train_data), _count_batches(val_data)
    train_data = train_data.apply(tf.data.experimental.assert_cardinality(n_train))
    val_data = val_data.apply(tf.data.experimental.assert_cardinality(n_val))
    return train_data, val_data, val_source, n_train, kept


def _flat(prefix: str, settings) -> dict:
    return {f"{prefix}.{k}": v for k, v in dataclasses.asdict(settings).items()}
