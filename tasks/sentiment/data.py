"""Sentiment data: delimited files and tfds, the sentencepiece tokenizer, pre-padded tf.data batches.

A source is a delimited file with a header row (read by :mod:`tasks.common.tables`: ``.tsv`` has
no quoting, ``.csv`` RFC 4180 quoting) naming a text and a label column (and optionally a
numeric ``rating``), or ``tfds:NAME[:SPLIT]`` (e.g. ``tfds:imdb_reviews:test``). Labels are
``negative``/``positive`` (``neg``/``pos``, any case) or ``0``/``1``.

Token ids: sentencepiece ids with ``pad=0`` and ``unk=1``, no BOS/EOS. Batches are
**pre-padded** (zeros first), so the LSTM's last step is always a text's real last token: the
fused TFLite LSTM ignores masks, and a fixed-length microcontroller input is just more zeros in
front.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from tasks.common.errors import UserError
from tasks.common.tables import read_table
from tasks.sentiment.artifacts import PAD_ID, UNK_ID
from tasks.sentiment.config import LABELS, DataConfig, given

log = logging.getLogger(__name__)

TFDS_PREFIX = "tfds:"
LABEL_VALUES = {"negative": 0, "neg": 0, "0": 0, "positive": 1, "pos": 1, "1": 1}
EXPECTED_LABELS = "negative|positive (or neg|pos, 0|1)"


@dataclasses.dataclass
class Examples:
    """Texts with integer labels (index into ``LABELS``) and, where the file has them, ratings."""

    texts: list[str]
    labels: np.ndarray  # int32, 0 = negative, 1 = positive
    source: str
    ratings: np.ndarray | None = None  # float32, same length, or None

    def __len__(self):
        return len(self.texts)

    def subset(self, index) -> "Examples":
        index = np.asarray(index, dtype=np.int64)
        ratings = self.ratings[index] if self.ratings is not None else None
        return Examples([self.texts[i] for i in index], self.labels[index], self.source, ratings)


# ----------------------------------------------------------------------------- loading
def load_examples(
    source: str,
    *,
    default_split: str = "train",
    text_column: str = "text",
    label_column: str = "label",
    rating_column: str | None = None,
    limit: int | None = None,
) -> Examples:
    """Read ``source`` (a delimited file or ``tfds:NAME[:SPLIT]``); errors name ``FILE:LINE``."""
    source = str(source)
    if source.startswith(TFDS_PREFIX):
        return load_tfds(source, default_split=default_split, limit=limit)
    examples = read_delimited(source, text_column=text_column, label_column=label_column,
                              rating_column=rating_column)
    if limit is not None:
        examples = examples.subset(range(min(limit, len(examples))))
    return examples


def load_config_examples(config: DataConfig, source: str, *, default_split: str, limit: int | None = None):
    """:func:`load_examples` with the column names of ``config``."""
    return load_examples(source, default_split=default_split, text_column=config.text_column,
                         label_column=config.label_column, rating_column=config.rating_column, limit=limit)


def parse_label(value: str) -> int | None:
    return LABEL_VALUES.get(value.strip().lower())


def read_delimited(path, *, text_column: str = "text", label_column: str = "label",
                   rating_column: str | None = None) -> Examples:
    """Parse a delimited file with a header; every problem is a ``UserError`` naming file and line.

    ``rating_column`` is optional: a file without it has ``ratings=None``.
    """
    table = read_table(path)
    text_index = table.column(text_column, flag="--text-column")
    label_index = table.column(label_column, flag="--label-column")
    rating_index = table.column(rating_column, required=False) if given(rating_column) else None
    texts, labels, ratings = [], [], []
    for line, fields in table.rows:
        text = table.field(line, fields, text_index).strip()
        value = table.field(line, fields, label_index)
        label = parse_label(value)
        if label is None:
            raise UserError(f"{table.path}:{line}: unknown label {value!r} in column '{label_column}'; "
                            f"expected {EXPECTED_LABELS}")
        if not text:
            raise UserError(f"{table.path}:{line}: empty '{text_column}' field")
        if rating_index is not None:
            raw = table.field(line, fields, rating_index)
            try:
                rating = float(raw)
            except ValueError:
                rating = math.nan
            if not math.isfinite(rating):
                raise UserError(f"{table.path}:{line}: rating {raw!r} in column '{rating_column}' is not a number")
            ratings.append(rating)
        texts.append(text)
        labels.append(label)
    return Examples(texts, np.asarray(labels, dtype=np.int32), str(table.path),
                    np.asarray(ratings, dtype=np.float32) if rating_index is not None else None)


def parse_tfds_source(source: str, default_split: str) -> tuple[str, str]:
    spec = source[len(TFDS_PREFIX):]
    name, _, split = spec.partition(":")
    if not name:
        raise UserError(f"{source}: expected tfds:NAME[:SPLIT], e.g. tfds:imdb_reviews:test")
    return name, split or default_split


def load_tfds(source: str, *, default_split: str = "train", limit: int | None = None) -> Examples:
    """Examples from a TensorFlow Datasets text-classification set (``imdb_reviews``, ``glue/sst2``):
    text from ``text``/``sentence``, ``label`` 0 negative / 1 positive (downloads on first use)."""
    import tensorflow_datasets as tfds

    name, split = parse_tfds_source(source, default_split)
    try:
        ds, info = tfds.load(name, split=split, with_info=True)
    except Exception as err:  # noqa: BLE001 - tfds raises many types (DatasetNotFoundError, ValueError, IO)
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{source}: cannot load tfds dataset {name!r} split {split!r}: {message}") from None
    features = info.features
    text_key = next((k for k in ("text", "sentence", "review") if k in features), None)
    if text_key is None or "label" not in features:
        raise UserError(f"{source}: dataset features {sorted(features)} lack a text ('text'/'sentence') "
                        "and a 'label' feature")
    names = getattr(features["label"], "names", None)
    if names is not None and len(names) != 2:
        raise UserError(f"{source}: 'label' has {len(names)} classes {names}; expected 2 (neg, pos)")
    if limit is not None:
        ds = ds.take(limit)
    texts, labels = [], []
    for i, example in enumerate(tfds.as_numpy(ds)):
        label = int(example["label"])
        if label not in (0, 1):
            raise UserError(f"{source}: example {i}: label {label}, expected 0 or 1")
        text = example[text_key]
        texts.append(text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text))
        labels.append(label)
    if not texts:
        raise UserError(f"{source}: split {split!r} is empty")
    log.info("%s: %d examples from tfds %s[%s]", source, len(texts), name, split)
    return Examples(texts, np.asarray(labels, dtype=np.int32), source)


def check_training_examples(examples: Examples, min_per_label: int) -> None:
    """Both labels are needed (error); fewer than ``min_per_label`` of one is a warning."""
    counts = np.bincount(examples.labels, minlength=2)
    if counts.min() == 0:
        missing = LABELS[int(np.argmin(counts))]
        raise UserError(f"{examples.source}: no '{missing}' examples; need both labels to train")
    for label, count in zip(LABELS, counts):
        if count < min_per_label:
            log.warning("%s: only %d '%s' examples (fewer than %d); the model will be unreliable",
                        examples.source, count, label, min_per_label)


def split_validation(examples: Examples, fraction: float, seed: int) -> tuple[Examples, Examples]:
    """Hold out a stratified ``fraction`` of ``examples`` for validation."""
    rng = np.random.default_rng(seed)
    val_index = []
    for label in (0, 1):
        index = np.flatnonzero(examples.labels == label)
        rng.shuffle(index)
        val_index.extend(index[: int(round(len(index) * fraction))])
    val_mask = np.zeros(len(examples), dtype=bool)
    val_mask[val_index] = True
    if val_mask.all() or not val_mask.any():
        raise UserError(f"{examples.source}: {len(examples)} examples are too few to hold out a validation set")
    return examples.subset(np.flatnonzero(~val_mask)), examples.subset(np.flatnonzero(val_mask))


def member_folds(examples: Examples, fraction: float, members: int, seed: int) -> list[tuple[Examples, Examples]]:
    """``(train, val)`` per member: member ``k`` holds out stratified fold ``k`` of ``round(1 / fraction)``.

    Cross-validation bagging: every member stops early on a different share of ``examples`` and
    trains on the rest, so the ensemble as a whole learns from all of them (members beyond the
    number of folds reuse the folds in turn).
    """
    count = max(2, int(round(1 / fraction)))
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(count)]
    for label in (0, 1):
        index = np.flatnonzero(examples.labels == label)
        rng.shuffle(index)
        for fold, part in zip(folds, np.array_split(index, count)):
            fold.extend(part.tolist())
    if any(not fold for fold in folds):
        raise UserError(f"{examples.source}: {len(examples)} examples are too few for {count} validation folds")
    splits = []
    for member in range(members):
        held_out = np.zeros(len(examples), dtype=bool)
        held_out[folds[member % count]] = True
        splits.append((examples.subset(np.flatnonzero(~held_out)), examples.subset(np.flatnonzero(held_out))))
    return splits


@dataclasses.dataclass
class TrainingData:
    """What ``train`` learns from: the pool (tokenizer, rating scale, calibration) and each member's split."""

    pool: Examples
    splits: list[tuple[Examples, Examples]]  # (train, early-stopping) per member
    shared_val: bool  # one early-stopping set for every member (--val, or --no-member-folds)


def load_training_data(config: DataConfig, seed: int, members: int = 1) -> TrainingData:
    """Training and early-stopping examples: ``--val``, one held-out share of ``--data`` shared by
    every member, or (``--member-folds``) a different held-out fold per member."""
    train = load_config_examples(config, config.data, default_split="train")
    check_training_examples(train, config.min_examples_per_label)
    if given(config.val):
        val = load_config_examples(config, config.val, default_split="test")
        data = TrainingData(train, [(train, val)] * members, shared_val=True)
    elif config.member_folds and members > 1:
        data = TrainingData(train, member_folds(train, config.val_fraction, members, seed), shared_val=False)
        log.info("no --val: each of %d members holds out its own fold of %d training examples for early stopping",
                 members, len(train))
    else:
        train, val = split_validation(train, config.val_fraction, seed)
        log.info("no --val: holding out %d of %d training examples for early stopping", len(val), len(val) + len(train))
        data = TrainingData(train, [(train, val)] * members, shared_val=True)
    first_train, first_val = data.splits[0]
    log.info("train %s: %d examples (%d negative, %d positive); val %s: %d examples", first_train.source,
             len(first_train), *np.bincount(first_train.labels, minlength=2), first_val.source, len(first_val))
    return data


# ----------------------------------------------------------------------------- tokenizer
NEGATOR_PIECES = ("n't", "n\u2019t")


def train_tokenizer(texts: Sequence[str], path, *, vocab_size: int, whole_negators: bool = False) -> Path:
    """Train a sentencepiece unigram model on ``texts`` (NFKC + case folding), written to ``path``.

    ``whole_negators``: "n't" is a piece of its own (a user-defined symbol), never split.
    """
    import sentencepiece as spm

    from tasks.common.io import write_bytes_atomic

    buffer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(list(texts)), model_writer=buffer, vocab_size=vocab_size,
            hard_vocab_limit=False, model_type="unigram", normalization_rule_name="nmt_nfkc_cf",
            character_coverage=1.0, pad_id=PAD_ID, unk_id=UNK_ID, bos_id=-1, eos_id=-1, num_threads=1,
            input_sentence_size=2_000_000, shuffle_input_sentence=True, minloglevel=2,
            user_defined_symbols=list(NEGATOR_PIECES) if whole_negators else [],
        )
    except RuntimeError as err:
        raise UserError(f"sentencepiece training failed: {err} (try another --vocab-size)") from None
    return write_bytes_atomic(path, buffer.getvalue())


def pre_pad(ids: Sequence[Sequence[int]], width: int | None = None) -> np.ndarray:
    """Left-pad with ``PAD_ID`` to ``width`` (default: the longest); longer rows keep their end."""
    width = width or max(1, max((len(x) for x in ids), default=0))
    out = np.full((len(ids), width), PAD_ID, dtype=np.int32)
    for i, row in enumerate(ids):
        row = list(row)[-width:]
        if row:
            out[i, width - len(row):] = row
    return out


# ----------------------------------------------------------------------------- tf.data
def bucket_boundaries(max_tokens: int) -> list[int]:
    edges = [8, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128, 192, 256, 384, 512]
    return [b for b in edges if b < max_tokens]


def _targets(examples: Examples, rating_scale):
    """``{"probability": labels}`` plus standardised ``"rating"`` given ``rating_scale``."""
    import tensorflow as tf

    targets = {"probability": tf.constant(examples.labels, tf.float32)}
    if rating_scale is not None:
        if examples.ratings is None:
            raise ValueError("rating_scale needs examples with ratings")
        mean, std = rating_scale
        targets["rating"] = tf.constant((examples.ratings - mean) / std, tf.float32)
    return targets


def make_dataset(
    examples: Examples,
    tokenizer_proto: bytes,
    *,
    batch_size: int,
    max_tokens: int,
    training: bool,
    seed: int = 0,
    sampling_alpha: float = 0.0,
    repeat: bool = False,
    rating_scale: tuple[float, float] | None = None,
    same_batches_everywhere: bool = False,
):
    """``(token_ids [B, T] int32 pre-padded with 0, targets)`` batches.

    ``targets`` is ``{"probability": label [B]}`` (float32), plus ``"rating"`` given
    ``rating_scale`` (``(mean, std)`` of the training ratings, which standardises them).
    Tokenizes in-graph (tensorflow-text); in training with ``sampling_alpha > 0`` every epoch
    sees a fresh segmentation (subword regularisation, Kudo 2018). Batches group texts of
    similar length so little padding is processed. ``same_batches_everywhere`` (multi-worker
    training) groups by the length of the plain segmentation, so every worker builds the same batches
    although each samples its own segmentations.
    """
    import tensorflow as tf
    import tensorflow_text as tf_text

    from tasks.common.guards import bounded_batch_size

    sample = training and sampling_alpha > 0
    tokenizer = tf_text.SentencepieceTokenizer(
        model=tokenizer_proto, out_type=tf.int32, nbest_size=-1 if sample else 0,
        alpha=sampling_alpha if sample else 1.0,
    )
    targets = _targets(examples, rating_scale)
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(examples.texts, tf.string), targets))
    if training:  # a batch larger than the data never fills from a repeated dataset: it would wait forever
        batch_size = bounded_batch_size(batch_size, len(examples))
        ds = ds.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    plain = tf_text.SentencepieceTokenizer(model=tokenizer_proto, out_type=tf.int32) \
        if sample and same_batches_everywhere else None

    def tokenize(text, target):
        ids = tokenizer.tokenize(text)[-max_tokens:]
        ids = tf.cond(tf.size(ids) > 0, lambda: ids, lambda: tf.constant([UNK_ID], tf.int32))
        length = tf.shape(ids)[0] if plain is None else tf.maximum(1, tf.minimum(tf.size(plain.tokenize(text)),
                                                                                  max_tokens))
        return tf.reverse(ids, [0]), target, length  # padded at the end, then reversed back: zeros first

    ds = ds.map(tokenize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _length_bucketed(ds, batch_size, max_tokens, list(targets))


def _length_bucketed(ds, batch_size: int, max_tokens: int, target_names):
    """Batches of similar-length ``(reversed ids, target, length)``, ids pre-padded with 0."""
    import tensorflow as tf

    boundaries = bucket_boundaries(max_tokens)
    ds = ds.bucket_by_sequence_length(
        lambda ids, target, length: length,
        bucket_boundaries=[b + 1 for b in boundaries],
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padded_shapes=([None], {name: [] for name in target_names}, []),
        padding_values=(PAD_ID, {name: 0.0 for name in target_names}, 0),
        drop_remainder=False,
    )
    ds = ds.map(lambda ids, target, length: (tf.reverse(ids, [1]), target))
    return ds.prefetch(tf.data.AUTOTUNE)
