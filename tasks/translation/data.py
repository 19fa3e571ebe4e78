"""Parallel text for translation: TSV / tfds loaders, sentencepiece subwords, bucketed batches.

Token ids (both languages): 0 = <pad>, 1 = <unk>, 2 = <s> (BOS), 3 = </s> (EOS).
Source sequences are ``pieces + [EOS]``; the decoder reads ``[BOS] + pieces`` and predicts
``pieces + [EOS]`` (teacher forcing).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path
from typing import Sequence

import numpy as np

from tasks.common.errors import UserError
from tasks.translation.config import TEST_AUTO, DataConfig
from tasks.translation.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer

__all__ = ["BOS_ID", "EOS_ID", "PAD_ID", "UNK_ID", "Tokenizer", "load_pairs", "make_dataset", "training_pairs"]

log = logging.getLogger(__name__)

TFDS_PREFIX = "tfds:"
# Fewer training pairs than this cannot teach a translation model anything useful: warn.
FEW_PAIRS = 200


# ----------------------------------------------------------------------------- TSV
def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """Read ``source<TAB>target`` lines (no header) from ``path``.

    Extra tab-separated columns (e.g. Tatoeba attribution) are ignored and blank lines are
    skipped. A line without a tab, an empty side or bytes that are not UTF-8 raise
    :class:`UserError` naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file (expected a source<TAB>target TSV file)")
    pairs = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise UserError(
                    f"{path}:{lineno}: not valid UTF-8 (byte {raw[err.start]:#04x} at column "
                    f"{err.start + 1}); save the file as UTF-8"
                ) from None
            if lineno == 1:
                line = line.lstrip("\ufeff")
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if "\t" not in line:
                raise UserError(
                    f"{path}:{lineno}: no tab; expected 'source<TAB>target', got {_clip(line)!r}"
                )
            source, target = (s.strip() for s in line.split("\t")[:2])
            if not source or not target:
                side = "source" if not source else "target"
                raise UserError(f"{path}:{lineno}: empty {side} side in {_clip(line)!r}")
            pairs.append((source, target))
    if not pairs:
        raise UserError(f"{path}: no sentence pairs (expected source<TAB>target lines)")
    return pairs


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


# ----------------------------------------------------------------------------- tfds
@dataclasses.dataclass(frozen=True)
class TfdsSpec:
    """``tfds:NAME[:SPLIT]``, e.g. ``tfds:ted_hrlr_translate/pt_to_en:validation``."""

    name: str
    split: str | None = None

    @classmethod
    def parse(cls, spec: str) -> "TfdsSpec":
        body = spec[len(TFDS_PREFIX):]
        name, _, split = body.partition(":")
        if not name:
            raise UserError(f"--data {spec!r}: expected tfds:NAME[:SPLIT], e.g. tfds:ted_hrlr_translate/pt_to_en")
        return cls(name, split or None)


def is_tfds(spec: str | Path) -> bool:
    return str(spec).startswith(TFDS_PREFIX)


def load_tfds_pairs(
    spec: str,
    *,
    default_split: str = "train",
    source_lang: str | None = None,
    target_lang: str | None = None,
    limit: int | None = None,
    data_dir: str | None = None,
) -> list[tuple[str, str]]:
    """Sentence pairs from a tfds translation dataset (``ted_hrlr_translate``, ``wmt14_translate`` ...).

    Languages default to the dataset's supervised keys (source, target); pass ``source_lang`` /
    ``target_lang`` to pick or swap them (e.g. ``en`` -> ``fr`` from ``wmt14_translate/fr-en``).
    """
    import tensorflow_datasets as tfds

    parsed = TfdsSpec.parse(spec)
    split = parsed.split or default_split
    try:
        builder = tfds.builder(parsed.name, data_dir=data_dir)
        builder.download_and_prepare()
        ds = builder.as_dataset(split=split)
    except Exception as err:  # noqa: BLE001 - tfds raises many types (network, name, split)
        raise UserError(f"--data {spec}: cannot load tfds dataset {parsed.name!r} split {split!r}: {err}") from None
    keys = builder.info.supervised_keys
    if keys is not None and isinstance(keys[0], str):
        default_src, default_tgt = keys[0], keys[1]
    else:
        langs = list(builder.info.features.keys())
        default_src, default_tgt = langs[0], langs[1]
    src, tgt = source_lang or default_src, target_lang or default_tgt
    features = list(builder.info.features.keys())
    for lang in (src, tgt):
        if lang not in features:
            raise UserError(f"--data {spec}: language {lang!r} not in the dataset; it has {features}")
    if limit:
        ds = ds.take(limit)
    pairs = []
    for example in tfds.as_numpy(ds):
        s = example[src].decode("utf-8").strip()
        t = example[tgt].decode("utf-8").strip()
        if s and t:
            pairs.append((s, t))
    if not pairs:
        raise UserError(f"--data {spec}: split {split!r} has no non-empty sentence pairs")
    log.info("loaded %d pairs (%s -> %s) from tfds %s[%s]", len(pairs), src, tgt, parsed.name, split)
    return pairs


def load_pairs(spec: str | Path, *, default_split: str = "train", limit: int | None = None, **tfds_kwargs):
    """A TSV path or ``tfds:NAME[:SPLIT]``."""
    if is_tfds(spec):
        return load_tfds_pairs(str(spec), default_split=default_split, limit=limit, **tfds_kwargs)
    pairs = read_pairs(spec)
    return pairs[:limit] if limit else pairs


# ----------------------------------------------------------------------------- batches
def _tfds_languages(config: DataConfig) -> dict:
    return dict(source_lang=config.source_lang, target_lang=config.target_lang)


def _tfds_without_split(spec: str) -> bool:
    return is_tfds(spec) and ":" not in str(spec)[len(TFDS_PREFIX):]


def source_key(sentence: str) -> str:
    """What makes two source sentences "the same": case-folded, whitespace collapsed."""
    return " ".join(sentence.casefold().split())


def split_by_source(pairs, fraction: float, seed: int):
    """(train, validation): a seeded random ``fraction`` of the distinct source sentences held out
    with all their targets (Tatoeba repeats a source with several translations; a random pair
    split would put near-copies of validation pairs into training). Both in file order."""
    sources = sorted({source_key(s) for s, _ in pairs})
    random.Random(seed).shuffle(sources)
    n_val = max(1, int(round(len(sources) * fraction)))
    if len(sources) - n_val < 1:
        raise UserError(f"--data: {len(pairs)} sentence pair(s) are too few to hold out a validation set; pass --val")
    held_out = set(sources[:n_val])
    return ([p for p in pairs if source_key(p[0]) not in held_out],
            [p for p in pairs if source_key(p[0]) in held_out])


def resolve_test_file(config: DataConfig) -> str | None:
    """The ``--test`` file: ``auto`` is ``NAME.dev.tsv`` beside a ``NAME.train.tsv`` ``--data`` when it exists."""
    if config.test != TEST_AUTO:
        return config.test
    if is_tfds(config.data) or not str(config.data).endswith(".train.tsv"):
        return None
    candidate = Path(str(config.data)[: -len(".train.tsv")] + ".dev.tsv")
    return str(candidate) if candidate.is_file() else None


@dataclasses.dataclass
class Split:
    """Training and validation pairs of a run, and what was done to keep its test file unseen."""

    train: list
    val: list
    report: dict


def _overlap(pairs, sources: set) -> int:
    return len({source_key(s) for s, _ in pairs} & sources)


def honest_split(config: DataConfig, seed: int) -> Split:
    """The run's (train, validation) pairs, with the ``--test`` file kept out of both.

    Training pairs whose source sentence occurs in the test file are dropped; the validation
    pairs (early stopping, per-epoch BLEU) are held out of ``--data`` by source sentence unless
    ``--val`` names a file, which must not be the test file. ``report`` counts the overlaps.
    """
    test = resolve_test_file(config)
    if test and config.val and Path(config.val).resolve() == Path(test).resolve():
        raise UserError(f"--val {config.val}: is the --test file; the test file is never used for early stopping "
                        "(drop --val to hold out validation pairs by source sentence, or pass --test none)")
    train = load_pairs(config.data, default_split="train", limit=config.max_pairs, **_tfds_languages(config))
    test_sources = {source_key(s) for s, _ in load_pairs(test)} if test else set()
    report = {"test": test, "train_pairs_in_file": len(train)}
    if test:
        report["test_sources"] = len(test_sources)
        report["test_sources_in_training_file"] = _overlap(train, test_sources)
        kept = [p for p in train if source_key(p[0]) not in test_sources]
        report["train_pairs_dropped_for_test"] = len(train) - len(kept)
        train = kept
    if config.val:
        val = load_pairs(config.val, default_split="validation", **_tfds_languages(config))
        report["val_sources_in_training"] = _overlap(train, {source_key(s) for s, _ in val})
    elif _tfds_without_split(config.data):
        val = load_pairs(str(config.data) + ":validation", **_tfds_languages(config))
    else:
        train, val = split_by_source(train, config.val_fraction, seed)
        report["val_sources_in_training"] = 0
    report.update(train_pairs=len(train), val_pairs=len(val))
    if len(train) < FEW_PAIRS:
        log.warning(
            "%s: only %d training pair(s); a translation model needs thousands (this one will mostly "
            "repeat its training sentences)", config.data, len(train),
        )
    return Split(train, val, report)


def training_pairs(config: DataConfig, seed: int):
    """(train, validation) pairs as ``config`` and the seed of the run define them (see :func:`honest_split`)."""
    split = honest_split(config, seed)
    return split.train, split.val


def held_out_pairs(config: DataConfig, seed: int, limit: int | None = None):
    """The validation pairs a model was trained with: its ``--val``, else the pairs held out of ``--data``."""
    if config.val:
        return load_pairs(config.val, default_split="validation", limit=limit, **_tfds_languages(config)), config.val
    if _tfds_without_split(config.data):
        spec = str(config.data) + ":validation"
        return load_pairs(spec, limit=limit, **_tfds_languages(config)), spec
    held_out = honest_split(config, seed).val
    return held_out[:limit] if limit else held_out, f"{config.data} (held out by source {config.val_fraction:g})"


def held_out_test_pairs(config: DataConfig, limit: int | None = None):
    """``(pairs, name)`` of the model's test file, or ``(None, None)`` when it has none."""
    test = resolve_test_file(config)
    if not test:
        return None, None
    return load_pairs(test, default_split="test", limit=limit, **_tfds_languages(config)), test


def train_tokenizers(train_pairs, config: DataConfig) -> tuple[Tokenizer, Tokenizer]:
    """Sentencepiece models for source and target (one joint model with ``shared_vocab``)."""
    sources, targets = [p[0] for p in train_pairs], [p[1] for p in train_pairs]
    if config.shared_vocab:
        joint = Tokenizer.train(sources + targets, config.vocab_size, model_type=config.spm_model_type)
        return joint, joint
    return (
        Tokenizer.train(sources, config.vocab_size, model_type=config.spm_model_type),
        Tokenizer.train(targets, config.vocab_size, model_type=config.spm_model_type),
    )


def source_ids(tokenizer: Tokenizer, sentences: Sequence[str]) -> list[list[int]]:
    """Encoder input ids: subwords + ``</s>``."""
    return [ids + [EOS_ID] for ids in tokenizer.encode(sentences)]


def encode_pairs(pairs, src_tok: Tokenizer, tgt_tok: Tokenizer):
    """Token ids: ``src + [EOS]`` and ``tgt`` (BOS/EOS added when batching)."""
    return source_ids(src_tok, [p[0] for p in pairs]), tgt_tok.encode([p[1] for p in pairs])


def filter_length(src_ids, tgt_ids, max_length: int):
    keep = [i for i, (s, t) in enumerate(zip(src_ids, tgt_ids)) if len(s) <= max_length and len(t) + 1 <= max_length]
    return [src_ids[i] for i in keep], [tgt_ids[i] for i in keep], keep


def pad(seqs: Sequence[Sequence[int]], length: int | None = None) -> np.ndarray:
    length = length or max((len(s) for s in seqs), default=1)
    out = np.zeros((len(seqs), max(length, 1)), np.int32)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s[:length]
    return out


def make_dataset(src_ids, tgt_ids, config: DataConfig, *, shuffle: bool, seed: int = 0):
    """``tf.data`` of ``((src, tgt_in), tgt_out)`` batches bucketed by length (less padding)."""
    import tensorflow as tf

    src_rt = tf.ragged.constant(src_ids, dtype=tf.int32)
    tgt_in = tf.ragged.constant([[BOS_ID] + t for t in tgt_ids], dtype=tf.int32)
    tgt_out = tf.ragged.constant([t + [EOS_ID] for t in tgt_ids], dtype=tf.int32)
    ds = tf.data.Dataset.from_tensor_slices((src_rt, tgt_in, tgt_out))
    if shuffle:
        ds = ds.shuffle(len(src_ids), seed=seed, reshuffle_each_iteration=True)
    # slices of a ragged tensor are 1-D RaggedTensors; map() turns them into dense tensors,
    # which bucket_by_sequence_length (padded_batch) needs
    ds = ds.map(lambda s, ti, to: (s, ti, to))
    boundaries = list(range(config.bucket_width + 1, config.max_length + 2, config.bucket_width))
    ds = ds.bucket_by_sequence_length(
        element_length_func=lambda s, ti, to: tf.maximum(tf.shape(s)[0], tf.shape(ti)[0]),
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[config.batch_size] * (len(boundaries) + 1),
        pad_to_bucket_boundary=False,
    )
    ds = ds.map(lambda s, ti, to: ((s, ti), to))
    if shuffle:
        ds = ds.shuffle(64, seed=seed + 1)
    return ds.prefetch(tf.data.AUTOTUNE)
