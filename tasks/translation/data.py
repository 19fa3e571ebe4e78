"""Parallel text for translation: TSV / tfds loaders, sentencepiece subwords, bucketed batches.

Token ids (both languages): 0 = <pad>, 1 = <unk>, 2 = <s> (BOS), 3 = </s> (EOS).
Source sequences are ``pieces + [EOS]``; the decoder reads ``[BOS] + pieces`` and predicts
``pieces + [EOS]`` (teacher forcing).
"""

from __future__ import annotations

import dataclasses
import io
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from lstm_core.errors import UserError

log = logging.getLogger(__name__)

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
TFDS_PREFIX = "tfds:"


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


# ----------------------------------------------------------------------------- sentencepiece
class Tokenizer:
    """A sentencepiece model with the fixed special ids above."""

    def __init__(self, model_proto: bytes):
        import sentencepiece as spm

        self.model_proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        if (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id()) != (
            PAD_ID,
            UNK_ID,
            BOS_ID,
            EOS_ID,
        ):
            raise UserError("sentencepiece model must use pad=0, unk=1, bos=2, eos=3")

    @classmethod
    def train(cls, sentences: Sequence[str], vocab_size: int, *, model_type: str = "unigram", seed_sentences: int = 0):
        import sentencepiece as spm

        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(list(sentences)),
            model_writer=buf,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            hard_vocab_limit=False,
            minloglevel=2,
            num_threads=2,
        )
        return cls(buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: sentencepiece model missing (is the model directory complete?)")
        return cls(path.read_bytes())

    def save(self, path: str | Path) -> None:
        from lstm_core.io import write_bytes_atomic

        write_bytes_atomic(path, self.model_proto)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return self.sp.encode(list(texts), out_type=int)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        out = []
        for seq in ids:
            seq = [int(i) for i in seq]
            if EOS_ID in seq:
                seq = seq[: seq.index(EOS_ID)]
            out.append(self.sp.decode([i for i in seq if i > EOS_ID or i == UNK_ID]))
        return out


# ----------------------------------------------------------------------------- batches
@dataclasses.dataclass
class DataConfig:
    vocab_size: int = 2000  # per language (or joint when shared_vocab)
    shared_vocab: bool = False
    spm_model_type: str = "unigram"
    max_length: int = 40  # subword tokens per side (incl. EOS); longer training pairs are dropped
    batch_size: int = 64
    bucket_width: int = 4


def encode_pairs(pairs, src_tok: Tokenizer, tgt_tok: Tokenizer):
    """Token ids: ``src + [EOS]`` and ``tgt`` (BOS/EOS added when batching)."""
    src = src_tok.encode([p[0] for p in pairs])
    tgt = tgt_tok.encode([p[1] for p in pairs])
    return [s + [EOS_ID] for s in src], tgt


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
