"""Knowledge distillation: one small LSTM (the microcontroller "student") learns the ensemble's answers.

The ensemble (six LSTMs with 8,000 × 128 embeddings and the n-gram member) is the model for
phones and servers; its int8 file is several MB. The student is a single :func:`build_model`
member — a ``--student-embedding-dim`` embedding over the same sentencepiece vocabulary (plus
the fixed lexicon columns), one ``lstm_core.LSTM(--student-units)``, last-output pooling, no
n-gram tables — trained with binary cross-entropy against the teacher's probability (Hinton et
al. 2015; for a sigmoid output the soft target is the probability itself) on:

- the training texts (minus a stratified ``--val-fraction`` held out, with their true labels, for
  the student's early stopping),
- ``--distill-copies`` word-dropout copies of each (every word dropped with probability
  :data:`WORD_DROPOUT`) and the halves of texts that split at a comma or a contrast word: new text the
  teacher labels, so the student learns the teacher's function beyond the training points,
- the ``--augment`` rows (negation, contrast; :mod:`tasks.sentiment.augment`), also labelled by the
  teacher.

The target mixes in the true label where there is one (``LABEL_WEIGHT``). ``student.keras`` is
what ``export`` writes as ``model_mcu_{float,int8}.tflite`` and the C array.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import warnings
from pathlib import Path

import numpy as np

from tasks.sentiment.artifacts import STUDENT_FILE
from tasks.sentiment.config import ModelConfig, ObjectiveConfig, StudentConfig

log = logging.getLogger(__name__)

WORD_DROPOUT = 0.15
LABEL_WEIGHT = 0.0  # share of the true label in the target of an original training text
HALF_SPLIT = re.compile(r",\s+(?:(?:but|though|although|yet)\s+)?|\s+(?:but|though|although|yet)\s+", re.IGNORECASE)
MIN_HALF_WORDS = 3


def student_model_config(model: ModelConfig, student: StudentConfig) -> ModelConfig:
    """The student's architecture: one member, ``--student-*`` sizes, last-output pooling, no extras."""
    return dataclasses.replace(model, embedding_dim=student.student_embedding_dim, units=student.student_units,
                               pooling=("last",), members=1, ngram_member=False, wide=False, rating_head=False)


def word_dropout(text: str, rng: np.random.Generator, rate: float = WORD_DROPOUT) -> str:
    """``text`` with each word dropped with probability ``rate`` (at least one word kept)."""
    words = text.split()
    kept = [w for w in words if rng.random() >= rate]
    return " ".join(kept or words[:1])


def halves(text: str) -> list[str]:
    """The parts of ``text`` on either side of its first comma or contrast word, if both have words."""
    parts = HALF_SPLIT.split(text, maxsplit=1)
    if len(parts) != 2 or min(len(p.split()) for p in parts) < MIN_HALF_WORDS:
        return []
    return [p.strip() for p in parts]


def transfer_texts(texts: list[str], copies: int, seed: int) -> list[str]:
    """Unlabelled texts for the teacher to label: ``copies`` word-dropout copies and the halves of ``texts``."""
    rng = np.random.default_rng(seed)
    extra = [word_dropout(text, rng) for _ in range(copies) for text in texts]
    extra += [half for text in texts for half in halves(text)]
    return extra


def teacher_probabilities(network, tokenizer, texts: list[str]) -> np.ndarray:
    """P(positive) of the teacher (the ensemble) for ``texts``."""
    from tasks.sentiment.model import KerasPredictor

    return KerasPredictor(network, tokenizer, batch_size=256).predict_proba(texts)


def distillation_examples(pool, teacher, tokenizer, student: StudentConfig, data, seed: int):
    """``(train, val)`` Examples: soft targets (float labels) for training, true labels for early stopping."""
    from tasks.sentiment.augment import augment
    from tasks.sentiment.data import Examples, split_validation

    train, val = split_validation(pool, data.val_fraction, seed)
    augmented = augment(train, data.augment, seed)
    texts = augmented.texts + transfer_texts(train.texts, student.distill_copies, seed)
    soft = teacher_probabilities(teacher, tokenizer, texts)
    hard = np.concatenate([train.labels, augmented.labels[len(train):]]).astype(np.float32)
    target = soft.copy()
    target[:len(hard)] = (1 - LABEL_WEIGHT) * soft[:len(hard)] + LABEL_WEIGHT * hard
    log.info("distillation: %d texts (%d training, %d augmented, %d transfer) labelled by the teacher", len(texts),
             len(train), len(augmented) - len(train), len(texts) - len(augmented))
    return Examples(texts, target.astype(np.float32), pool.source), val


def train_student(work: Path, teacher, tokenizer, pool, data, model: ModelConfig, objective: ObjectiveConfig,
                  train, student: StudentConfig, prior=None):
    """Train (or, resuming, reuse) ``work/student.keras``; returns ``(student model, summary)``.

    Args:
        work: the model directory being built.
        teacher: the ensemble (token ids → ``{"probability"}``).
        tokenizer: the shared :class:`tasks.sentiment.artifacts.Tokenizer`.
        pool: all training :class:`tasks.sentiment.data.Examples`.
        data, model, objective, train: the run's settings (the student keeps the tokenizer, batch
            size, sampling, lexicon, adversarial ε and the epoch/patience schedule).
        student: its sizes and transfer set.
        prior: the lexicon table (as for the members).
    """
    import keras

    from tasks.common.artifacts import load_keras_model
    from tasks.common.training import distribution_scope, epoch_summary, fit, set_seed
    from tasks.sentiment.data import make_dataset
    from tasks.sentiment.model import SentimentTrainer, build_model

    logs = work / "logs" / "student"
    saved = work / STUDENT_FILE
    config = student_model_config(model, student)
    train = dataclasses.replace(train, monitor="val_accuracy", monitor_mode="max", seed=train.seed + 7919)
    if saved.is_file():
        log.info("reusing the finished student %s", saved)
        return load_keras_model(saved), epoch_summary(logs, train)
    set_seed(train.seed)
    soft, val = distillation_examples(pool, teacher, tokenizer, student, data, train.seed)
    common = dict(tokenizer_proto=tokenizer.proto, batch_size=data.batch_size, max_tokens=data.max_tokens,
                  seed=train.seed)
    train_ds = make_dataset(soft, training=True, sampling_alpha=data.sampling_alpha,
                            repeat=train.steps_per_epoch is not None,
                            same_batches_everywhere=train.distribute == "multi-worker", **common)
    val_ds = make_dataset(val, training=False, **common)
    with distribution_scope(train):
        network = build_model(config, seed=train.seed, name="student", prior=prior)
        trainer = SentimentTrainer(network, adversarial_epsilon=objective.adversarial_epsilon)
        trainer(np.zeros((1, 2), np.int32))
        trainer.compile(optimizer=keras.optimizers.Adam(train.learning_rate),
                        loss={"probability": keras.losses.BinaryCrossentropy()},
                        metrics={"probability": [keras.metrics.BinaryAccuracy(name="accuracy")]})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Your input ran out of data")
        fit(trainer, train_ds, val_ds, workdir=logs, config=train, hparams={f"student.{key}": value for key, value in dataclasses.asdict(student).items()})
    network.save(saved)
    summary = epoch_summary(logs, train)
    summary.update(embedding_dim=config.embedding_dim, units=config.units, parameters=int(network.count_params()),
                   transfer_examples=len(soft), val_examples=len(val))
    return network, summary
