"""Sentiment data: TSV/CSV files and tfds ``imdb_reviews``, the sentencepiece tokenizer, tf.data.

A data source is either a path to a delimited text file with a header row (``text`` and
``label`` columns; ``.tsv`` → tab, ``.csv`` → comma, anything else is sniffed from the header)
or ``tfds:NAME[:SPLIT]`` (e.g. ``tfds:imdb_reviews``, ``tfds:imdb_reviews:test``).
Label values are ``negative``/``positive`` (also ``neg``/``pos``, any case) or ``0``/``1``.

Token ids: sentencepiece ids with ``pad=0`` (so ``Embedding(mask_zero=True)`` masks padding),
``unk=1``, no BOS/EOS. The same ``.model`` file tokenizes in tf.data (tensorflow-text), in the
SavedModel graph and, for LiteRT, in Python (sentencepiece).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from lstm_core.errors import UserError
from tasks.sentiment import LABELS

log = logging.getLogger(__name__)

TFDS_PREFIX = "tfds:"
TOKENIZER_FILE = "tokenizer.model"
PAD_ID, UNK_ID = 0, 1
LABEL_VALUES = {
    "negative": 0,
    "neg": 0,
    "0": 0,
    "positive": 1,
    "pos": 1,
    "1": 1,
}
EXPECTED_LABELS = "negative|positive (or neg|pos, 0|1)"


@dataclasses.dataclass
class Examples:
    """Texts with integer labels (index into :data:`tasks.sentiment.LABELS`)."""

    texts: list[str]
    labels: np.ndarray  # int32, 0 = negative, 1 = positive
    source: str

    def __len__(self):
        return len(self.texts)

    def subset(self, index) -> "Examples":
        index = np.asarray(index, dtype=np.int64)
        return Examples([self.texts[i] for i in index], self.labels[index], self.source)


# ----------------------------------------------------------------------------- loading
def load_examples(
    source: str,
    *,
    default_split: str = "train",
    text_column: str = "text",
    label_column: str = "label",
    limit: int | None = None,
) -> Examples:
    """Read ``source`` (a TSV/CSV path or ``tfds:NAME[:SPLIT]``)."""
    source = str(source)
    if source.startswith(TFDS_PREFIX):
        return load_tfds(source, default_split=default_split, limit=limit)
    examples = read_delimited(source, text_column=text_column, label_column=label_column)
    if limit is not None:
        examples = examples.subset(range(min(limit, len(examples))))
    return examples


def parse_label(value: str) -> int | None:
    return LABEL_VALUES.get(value.strip().lower())


def _decode(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a .tsv/.csv file") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        offset = err.start
        line = raw.count(b"\n", 0, offset) + 1
        column = offset - (raw.rfind(b"\n", 0, offset) + 1) + 1
        bad = raw[err.start : err.end].hex(" ")
        raise UserError(
            f"{path}:{line}: not UTF-8 (byte {bad} at column {column}); save the file as UTF-8"
        ) from None


def _delimiter(path: Path, header_line: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".tab"):
        return "\t"
    if suffix == ".csv":
        return ","
    return "\t" if "\t" in header_line else ","


def read_delimited(path, *, text_column: str = "text", label_column: str = "label") -> Examples:
    """Parse a delimited file with a header; every problem is a :class:`UserError` naming the
    file and line."""
    path = Path(path)
    content = _decode(path)
    if not content.strip():
        raise UserError(
            f"{path}: file is empty; expected a header line with '{text_column}' and "
            f"'{label_column}' columns followed by one example per line"
        )
    first_line = content.lstrip("\r\n").splitlines()[0]
    delimiter = _delimiter(path, first_line)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter, strict=False)
    header, header_line = None, 0
    texts: list[str] = []
    labels: list[int] = []
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue  # blank line
            if header is None:
                header = [c.strip().lower() for c in row]
                header_line = line
                missing = [c for c in (text_column, label_column) if c.lower() not in header]
                if missing:
                    raise UserError(
                        f"{path}:{line}: header has columns {row} but lacks {missing}; expected a "
                        f"header row naming the '{text_column}' and '{label_column}' columns "
                        f"({'tab' if delimiter == chr(9) else 'comma'}-separated)"
                    )
                text_index = header.index(text_column.lower())
                label_index = header.index(label_column.lower())
                continue
            if len(row) <= max(text_index, label_index):
                raise UserError(
                    f"{path}:{line}: {len(row)} field(s) but the header has {len(header)}; "
                    f"expected '{text_column}' in column {text_index + 1} and '{label_column}' in "
                    f"column {label_index + 1}"
                )
            text, value = row[text_index].strip(), row[label_index]
            label = parse_label(value)
            if label is None:
                raise UserError(
                    f"{path}:{line}: unknown label {value!r} in column '{label_column}'; "
                    f"expected {EXPECTED_LABELS}"
                )
            if not text:
                raise UserError(f"{path}:{line}: empty '{text_column}' field")
            texts.append(text)
            labels.append(label)
    except csv.Error as err:
        raise UserError(f"{path}:{reader.line_num}: malformed line ({err})") from None
    if not texts:
        raise UserError(f"{path}:{header_line}: header only, no examples after it")
    return Examples(texts, np.asarray(labels, dtype=np.int32), str(path))


def parse_tfds_source(source: str, default_split: str) -> tuple[str, str]:
    spec = source[len(TFDS_PREFIX) :]
    name, _, split = spec.partition(":")
    if not name:
        raise UserError(f"{source}: expected tfds:NAME[:SPLIT], e.g. tfds:imdb_reviews:test")
    return name, split or default_split


def load_tfds(source: str, *, default_split: str = "train", limit: int | None = None) -> Examples:
    """Examples from a TensorFlow Datasets text-classification dataset (``imdb_reviews``,
    ``glue/sst2``, ...): the text is the ``text``/``sentence`` feature, the label ``label``
    (0 negative, 1 positive). Downloads through tfds on first use (``TFDS_DATA_DIR``)."""
    import tensorflow_datasets as tfds

    name, split = parse_tfds_source(source, default_split)
    try:
        ds, info = tfds.load(name, split=split, with_info=True)
    except Exception as err:  # tfds raises many types (DatasetNotFoundError, ValueError, IO)
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{source}: cannot load tfds dataset {name!r} split {split!r}: {message}") from None
    features = info.features
    text_key = next((k for k in ("text", "sentence", "review") if k in features), None)
    if text_key is None or "label" not in features:
        raise UserError(
            f"{source}: dataset features {sorted(features)} lack a text ('text'/'sentence') and a "
            "'label' feature"
        )
    names = getattr(features["label"], "names", None)
    if names is not None and len(names) != 2:
        raise UserError(f"{source}: 'label' has {len(names)} classes {names}; expected 2 (neg, pos)")
    if limit is not None:
        ds = ds.take(limit)
    texts, labels = [], []
    for i, ex in enumerate(tfds.as_numpy(ds)):
        label = int(ex["label"])
        if label not in (0, 1):
            raise UserError(f"{source}: example {i}: label {label}, expected 0 or 1")
        text = ex[text_key]
        texts.append(text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text))
        labels.append(label)
    if not texts:
        raise UserError(f"{source}: split {split!r} is empty")
    log.info("%s: %d examples from tfds %s[%s]", source, len(texts), name, split)
    return Examples(texts, np.asarray(labels, dtype=np.int32), source)


def split_validation(examples: Examples, fraction: float, seed: int) -> tuple[Examples, Examples]:
    """Hold out a stratified ``fraction`` of ``examples`` for validation."""
    if not 0.0 < fraction < 1.0:
        raise UserError(f"--val-fraction must be in (0, 1), got {fraction}")
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


# ----------------------------------------------------------------------------- tokenizer
def train_tokenizer(texts: Sequence[str], path, *, vocab_size: int) -> Path:
    """Train a sentencepiece unigram model on ``texts`` (NFKC + case folding) and write it to
    ``path``. ``vocab_size`` is an upper bound: small corpora get what they support."""
    import sentencepiece as spm

    from lstm_core.io import write_bytes_atomic

    if vocab_size < 8:
        raise UserError(f"--vocab-size must be at least 8, got {vocab_size}")
    buf = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(list(texts)),
            model_writer=buf,
            vocab_size=vocab_size,
            hard_vocab_limit=False,
            model_type="unigram",
            normalization_rule_name="nmt_nfkc_cf",
            character_coverage=1.0,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=-1,
            eos_id=-1,
            num_threads=1,
            input_sentence_size=2_000_000,
            shuffle_input_sentence=True,
            minloglevel=2,
        )
    except RuntimeError as err:
        raise UserError(f"sentencepiece training failed: {err} (try another --vocab-size)") from None
    return write_bytes_atomic(path, buf.getvalue())


class Tokenizer:
    """The sentencepiece model of a trained sentiment model (Python side)."""

    def __init__(self, path, max_tokens: int | None = None):
        import sentencepiece as spm

        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: tokenizer model not found")
        self.proto = self.path.read_bytes()
        self.sp = spm.SentencePieceProcessor(model_proto=self.proto)
        self.max_tokens = max_tokens

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        """Token ids, truncated to ``max_tokens``; a text without pieces becomes ``[UNK_ID]``
        (as in :func:`make_dataset` and the SavedModel)."""
        return self._fix(self.sp.encode(text))

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        return [self._fix(x) for x in self.sp.encode(list(texts))]

    def _fix(self, ids: list[int]) -> list[int]:
        ids = ids[: self.max_tokens] if self.max_tokens else ids
        return ids or [UNK_ID]

    def pieces(self, text: str) -> list[str]:
        return self.sp.encode(text, out_type=str)


def pad_batch(ids: Sequence[Sequence[int]]) -> np.ndarray:
    """Right-pad with :data:`PAD_ID` to the longest sequence (at least one column)."""
    width = max(1, max((len(x) for x in ids), default=0))
    out = np.full((len(ids), width), PAD_ID, dtype=np.int32)
    for i, x in enumerate(ids):
        out[i, : len(x)] = x
    return out


# ----------------------------------------------------------------------------- tf.data
def bucket_boundaries(max_tokens: int) -> list[int]:
    edges = [8, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128, 192, 256, 384, 512]
    return [b for b in edges if b < max_tokens]


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
):
    """``(token_ids [B, T] int32 padded with 0, label [B] float32)`` batches.

    Tokenizes in-graph with tensorflow-text's SentencepieceTokenizer; when ``training`` and
    ``sampling_alpha > 0`` every epoch sees a fresh sentencepiece segmentation (subword
    regularisation, Kudo 2018). Batches group examples of similar length
    (``bucket_by_sequence_length``) so little padding is processed; ``Embedding(mask_zero)``
    masks the rest.
    """
    import tensorflow as tf
    import tensorflow_text as tf_text

    sample = training and sampling_alpha > 0
    tokenizer = tf_text.SentencepieceTokenizer(
        model=tokenizer_proto,
        out_type=tf.int32,
        nbest_size=-1 if sample else 0,
        alpha=sampling_alpha if sample else 1.0,
    )
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant(examples.texts, tf.string), tf.constant(examples.labels, tf.float32))
    )
    if training:
        ds = ds.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def tokenize(text, label):
        ids = tokenizer.tokenize(text)[:max_tokens]
        ids = tf.cond(tf.size(ids) > 0, lambda: ids, lambda: tf.constant([UNK_ID], tf.int32))
        return ids, label

    ds = ds.map(tokenize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    boundaries = bucket_boundaries(max_tokens)
    ds = ds.bucket_by_sequence_length(
        lambda ids, label: tf.shape(ids)[0],
        bucket_boundaries=[b + 1 for b in boundaries],
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padded_shapes=([None], []),
        padding_values=(PAD_ID, 0.0),
        drop_remainder=False,
    )
    return ds.prefetch(tf.data.AUTOTUNE)
