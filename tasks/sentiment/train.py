"""``lstm-suite sentiment train``: tokenizer + model + TensorBoard logs in one model directory.

The directory is built in ``OUT.partial`` (resumable) and renamed onto ``OUT`` when training
finished; an existing ``OUT`` is refused unless ``--overwrite`` (checked before any data is
read). Early stopping watches the validation accuracy of ``--val`` or of a held-out share of
``--data``: with several members (``--member-folds``, the default) each member holds out its own
fold, so the ensemble learns from all of ``--data``, and the reported validation figures are the
members' out-of-fold ones. Report figures on other data (``evaluate``, default
the shipped ``sentiment/dev.tsv``).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from pathlib import Path

import numpy as np

from tasks.common.config import OutputConfig, TrainConfig, settings_to_dict
from tasks.common.errors import UserError
from tasks.common.io import read_json, remove, write_json_atomic
from tasks.common.progress import step
from tasks.common.resume import HISTORY_FILE, MEMBER_FILE
from tasks.common.training import (
    check_same_on_workers,
    chief_says,
    distribution_scope,
    epoch_summary,
    fit,
    interruption_point,
    join_for_training,
    model_directory,
    run_times,
    set_seed,
)
from tasks.sentiment.augment import augment
from tasks.sentiment.artifacts import CALIBRATION_FILE, TOKENIZER_FILE, SentimentModelDir, Tokenizer
from tasks.sentiment.config import DataConfig, ModelConfig, ObjectiveConfig, StudentConfig, given
from tasks.sentiment.data import load_training_data, make_dataset, train_tokenizer
from tasks.sentiment.metrics import classification_metrics
from tasks.sentiment.ngram import MAX_VOCABULARY as NGRAM_MAX_VOCABULARY, fit_ngram_weights, scope_flags
from tasks.sentiment.model import KerasPredictor, SentimentTrainer, average_members, build_model, ngram_model

log = logging.getLogger(__name__)

CALIBRATION_TEXTS = 500


def train(data: DataConfig, model: ModelConfig, objective: ObjectiveConfig, train: TrainConfig,
          output: OutputConfig, student: StudentConfig | None = None) -> dict:
    """Train into ``output.out``; returns the train report (also in ``train_report.json``).

    The ensemble is ``model.keras``; with ``student.distill`` a small LSTM distilled from it is
    ``student.keras`` (:mod:`tasks.sentiment.distill`), the model of the MCU export.
    """
    student = student or StudentConfig()
    settings = {"data": data, "model": model, "objective": objective, "train": train, "student": student}
    output = join_for_training(train, output, settings)
    with model_directory(output.out, overwrite=output.overwrite, resume=output.resume, task="sentiment",
                         settings=settings) as work:
        loaded = load_training_data(data, train.seed, model.members)
        tokenizer = _tokenizer(work, loaded.pool, data)
        check_same_on_workers("tokenizers", (work / TOKENIZER_FILE).read_bytes())
        model, train, rating_scale = _resolve(loaded, tokenizer, data, model, objective, train)
        train_ids = tokenizer.encode_many(loaded.pool.texts)  # deterministic segmentation
        _save_config(work, loaded.pool, train_ids, rating_scale,
                     {"data": data, "model": model, "objective": objective, "train": train, "student": student})
        common = dict(tokenizer_proto=tokenizer.proto, batch_size=data.batch_size, max_tokens=data.max_tokens,
                      seed=train.seed, rating_scale=rating_scale)

        def datasets(index):  # made after each member's seed is set (setting it drops the tokenizer resource)
            member_train, member_val = loaded.splits[index]
            member_train = augment(member_train, data.augment, train.seed + index)
            return (make_dataset(member_train, training=True, sampling_alpha=data.sampling_alpha,
                                 repeat=train.steps_per_epoch is not None,
                                 same_batches_everywhere=train.distribute == "multi-worker", **common),
                    make_dataset(member_val, training=False, **common))

        hparams = {f"{section}.{key}": value for section, config in (("data", data), ("model", model),
                                                                      ("objective", objective))
                   for key, value in settings_to_dict(config).items()}
        prior = _prior(model, tokenizer)
        members, summaries = _train_members(work, model, objective, train, datasets, hparams, prior)
        ngram, ngram_report = _ngram_member(model, loaded.pool, tokenizer, train.seed)
        lstm_network = average_members(members)
        network = average_members(members, ngram)
        with step("saving the model"):
            network.save(work / "model.keras")
        if student.distill:
            from tasks.sentiment.distill import train_student

            student_summary = train_student(work, network, tokenizer, loaded.pool, data, model, objective, train,
                                            student, prior)[1]
        interruption_point("final_save")
        with step("validation figures"):
            report = _report(loaded, data, tokenizer, network, lstm_network, members, summaries, ngram_report)
        if student.distill:
            report["student"] = student_summary
        report.update(run_times())
        _write_history(work, model)
        write_json_atomic(work / "train_report.json", report)
    log.info("val accuracy %.4f after %s epochs (best %s) in %.0f s", report["val_accuracy"],
             report["epochs_run"], report["best_epoch"], report["wall_seconds"])
    return {"model": str(output.out), **report}


def _tokenizer(work: Path, pool, data: DataConfig) -> Tokenizer:
    """The sentencepiece model of an interrupted run, or a new one trained on the training texts."""
    tokenizer_path = work / TOKENIZER_FILE
    if tokenizer_path.exists():
        log.info("reusing tokenizer %s", tokenizer_path)
    else:
        log.info("training sentencepiece (vocab %d) on %d texts", data.vocab_size, len(pool))
        train_tokenizer(pool.texts, tokenizer_path, vocab_size=data.vocab_size, whole_negators=data.whole_negators)
    return Tokenizer(tokenizer_path, data.max_tokens)


def _resolve(loaded, tokenizer, data: DataConfig, model: ModelConfig, objective: ObjectiveConfig,
             train: TrainConfig):
    """Settings measured on the data: vocabulary, rating head, monitored metric, rating scale."""
    pool = loaded.pool
    use_ratings = objective.rating_weight > 0 and all(
        part.ratings is not None for split in loaded.splits for part in split)
    if objective.rating_weight > 0 and not use_ratings:
        log.info("no '%s' column in both training and validation data: rating head off", data.rating_column)
    model = dataclasses.replace(model, vocab_size=tokenizer.vocab_size, rating_head=use_ratings)
    if model.ngram_member and tokenizer.vocab_size > NGRAM_MAX_VOCABULARY:
        raise UserError(f"--vocab-size: the n-gram member hashes with int32 arithmetic that allows at most "
                        f"{NGRAM_MAX_VOCABULARY} pieces, the tokenizer has {tokenizer.vocab_size} "
                        "(pass --no-ngram-member or a smaller --vocab-size)")
    monitor = "val_probability_accuracy" if use_ratings else "val_accuracy"
    train = dataclasses.replace(train, monitor=monitor, monitor_mode="max")
    rating_scale = (float(pool.ratings.mean()), max(float(pool.ratings.std()), 1e-6)) if use_ratings else None
    return model, train, rating_scale


def _save_config(work: Path, pool, train_ids, rating_scale, sections: dict) -> None:
    """``config.json`` (with the measured text lengths) and the calibration texts for int8 export."""
    lengths = np.array([len(x) for x in train_ids])
    text_tokens = {"max": int(lengths.max()), "p99": int(np.percentile(lengths, 99)),
                   "mean": round(float(lengths.mean()), 1)}
    directory = SentimentModelDir(work, sections, {"rating_scale": list(rating_scale) if rating_scale else None,
                                                   "text_tokens": text_tokens})
    directory.save_config(work)
    rng = np.random.default_rng(sections["train"].seed)
    pick = rng.choice(len(pool), size=min(CALIBRATION_TEXTS, len(pool)), replace=False)
    write_json_atomic(work / CALIBRATION_FILE, [pool.texts[i] for i in sorted(pick)])


def _prior(model: ModelConfig, tokenizer):
    """The lexicon's per-piece prior table (``--lexicon``), or None."""
    if not model.lexicon:
        return None
    from tasks.sentiment.lexicon import prior_table

    prior = prior_table([tokenizer.sp.id_to_piece(i) for i in range(tokenizer.vocab_size)], model.lexicon)
    log.info("lexicon %s: %d of %d pieces have a prior", model.lexicon, int((prior != 0).any(1).sum()),
             tokenizer.vocab_size)
    return prior


def _member_work(work: Path, model: ModelConfig, index: int) -> Path:
    return work if model.members == 1 else work / "logs" / f"member{index}"


def _train_members(work, model, objective, train, datasets, hparams, prior):
    """Every LSTM member, each with its own seed and held-out fold; their summaries."""
    members, summaries = [], []
    for index in range(model.members):
        member_train = dataclasses.replace(train, seed=train.seed + 1000 * index)
        member, summary = _train_member(model, objective, member_train, _member_work(work, model, index),
                                        lambda index=index: datasets(index), hparams,
                                        name="sentiment_lstm" if model.members == 1 else f"member{index}",
                                        prior=prior, member=index)
        members.append(member)
        summaries.append(summary)
        interruption_point(f"after_member:{index + 1}")
    return members, summaries


def _write_history(work: Path, model: ModelConfig) -> None:
    """``history.json``: every epoch's logs; with several members, ``{"member0": {epoch: logs}, ...}``."""
    if model.members == 1:
        return  # the one member trained in ``work`` and wrote it there
    history = {}
    for index in range(model.members):
        path = _member_work(work, model, index) / HISTORY_FILE
        history[f"member{index}"] = read_json(path) if path.is_file() else {}
    write_json_atomic(work / HISTORY_FILE, history)


def _ngram_member(model: ModelConfig, pool, tokenizer, seed: int):
    """The linear n-gram member (``--ngram-member``) and its report entry, or (None, None).

    Fitted on the training texts as they are: the ``--augment`` rows are for the LSTMs, which read
    word order; a bag of n-grams lost dev accuracy with them (0.797 -> 0.789, docs/experiments/sentiment.md).
    """
    if not model.ngram_member:
        return None, None
    flags = None
    if model.ngram_negation_scope:
        flags = scope_flags([tokenizer.sp.id_to_piece(i) for i in range(tokenizer.vocab_size)])
    with step(f"n-gram member: choosing its regularisation by 5-fold cross-validation on {len(pool)} texts"):
        fitted = fit_ngram_weights(tokenizer.encode_many(pool.texts), pool.labels, tokenizer.vocab_size, seed=seed,
                                   flags=flags)
    log.info("n-gram member: C %g, 5-fold CV accuracy %.4f", fitted["C"], fitted["cv_accuracy"])
    report = {"C": fitted["C"], "cv_accuracy": round(fitted["cv_accuracy"], 4), "examples": len(pool),
              "negation_scope": flags is not None}
    return ngram_model(tokenizer.vocab_size, fitted, negation_scope=flags is not None), report


def _report(loaded, data, tokenizer, network, lstm_network, members, summaries, ngram_report) -> dict:
    """``train_report.json`` (without the wall time)."""
    # the n-gram member saw every example, so validation figures are the LSTMs' alone
    val_metrics, val_scope = _validation_metrics(lstm_network, members, summaries, loaded, tokenizer)
    val_source = loaded.splits[0][1].source
    if not given(data.val):
        val_source += " (held out)" if loaded.shared_val else " (a held-out fold per member)"
    return {
        "train_data": loaded.pool.source,
        "train_examples": len(loaded.pool),
        "val_data": val_source,
        "val_examples": val_metrics.pop("examples"),
        "val_scope": val_scope,
        "vocab_size": tokenizer.vocab_size,
        "parameters": int(network.count_params()),
        **(summaries[0] if len(summaries) == 1 else {
            "epochs_run": sum(m["epochs_run"] for m in summaries),
            "best_epoch": [m["best_epoch"] for m in summaries], "members": summaries}),
        **({"ngram_member": ngram_report} if ngram_report else {}),
        **{f"val_{key}": value for key, value in val_metrics.items()},
    }




def _validation_metrics(network, members, summaries, loaded, tokenizer) -> tuple[dict, str]:
    """Held-out metrics (and their scope): the ensemble on the shared early-stopping set, or, with
    a fold per member, each member on its own fold, pooled. Every example of a member's fold was
    trained on by the other members, so no ensemble figure is clean there; each member's own
    accuracy goes into its summary."""
    if loaded.shared_val:
        val = loaded.splits[0][1]
        probs = KerasPredictor(network, tokenizer).predict_proba(val.texts)
        return {**classification_metrics(val.labels, probs), "examples": len(val)}, "ensemble"
    labels, probs = [], []
    for member, summary, (_, val) in zip(members, summaries, loaded.splits):
        member_probs = KerasPredictor(member, tokenizer).predict_proba(val.texts)
        summary["val_examples"] = len(val)
        summary["val_accuracy"] = classification_metrics(val.labels, member_probs)["accuracy"]
        labels.append(val.labels)
        probs.append(member_probs)
    labels = np.concatenate(labels)
    return {**classification_metrics(labels, np.concatenate(probs)), "examples": len(labels)}, "members, out of fold"


def _train_member(model: ModelConfig, objective: ObjectiveConfig, train: TrainConfig, work: Path, datasets,
                  hparams: dict, name: str, prior=None, member: int = 0):
    """Train one LSTM in ``work`` (resumable; a finished member of an interrupted run is reused)."""
    import keras

    from tasks.common.artifacts import load_keras_model

    work.mkdir(parents=True, exist_ok=True)
    saved = work / MEMBER_FILE
    if chief_says(saved.is_file()):  # every worker of a cluster follows the chief
        if saved.is_file():
            log.info("reusing the finished member %s", saved)
            return load_keras_model(saved), epoch_summary(work, train)
        return build_model(model, seed=train.seed, name=name, prior=prior, member=member), epoch_summary(work, train)
    set_seed(train.seed)
    train_ds, val_ds = datasets()
    with distribution_scope(train):
        network = build_model(model, seed=train.seed, name=name, prior=prior, member=member)
        trainer = SentimentTrainer(network, adversarial_epsilon=objective.adversarial_epsilon)
        trainer(np.zeros((1, 2), np.int32))  # built before fit (BackupAndRestore needs the weights)
        losses = {"probability": keras.losses.BinaryCrossentropy()}
        weights = {"probability": 1.0}
        metrics = {"probability": [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]}
        if model.rating_head:
            losses["rating"] = keras.losses.MeanSquaredError()
            weights["rating"] = objective.rating_weight
        trainer.compile(optimizer=keras.optimizers.Adam(train.learning_rate), loss=losses, loss_weights=weights,
                        metrics=metrics)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Your input ran out of data")
        fit(trainer, train_ds, val_ds, workdir=work, config=train, hparams={**hparams, "member": name},
            part=(member + 1, model.members, "member"))
    network.save(saved)
    if work.name.startswith("member"):
        remove(work / "backup")  # this member is done; the run's own backup goes when training succeeds
    return network, epoch_summary(work, train)
