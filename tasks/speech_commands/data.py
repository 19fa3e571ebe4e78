"""Speech Commands data: the folder layout, WAV reading, splits, augmentation, tfds loader.

Folder layout (as the Speech Commands dataset ships it)::

    DIR/<word>/<speaker>_nohash_<n>.wav
    DIR/_background_noise_/*.wav          (optional, long noise recordings)
    DIR/validation_list.txt               (optional, paths relative to DIR)
    DIR/testing_list.txt                  (optional)

Every clip becomes 1 s of mono float32 audio at 16 kHz in [-1, 1]: resampled from any rate
(``scipy.signal.resample_poly``), channels averaged, peak-normalised (so quiet and loud speakers
look alike and the int8 model's 8-bit audio input keeps its resolution), then padded (centred)
or cropped (the loudest 1 s window) to ``clip_samples``.

Without lists, files are split by a stable hash of the speaker id (the part before
``_nohash_``) exactly as the original ``input_data.which_set`` does, so a speaker never crosses
splits; with too few speakers for the hash to place one in testing, the lowest-hash speaker is
held out, so there is always a speaker-disjoint test split. ``test_speakers`` holds out named
speakers instead. ``split.json`` in the model directory records the outcome.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import logging
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np

from tasks.common.errors import UserError
from tasks.common.io import read_user_file

from tasks.speech_commands.config import DataConfig

log = logging.getLogger(__name__)

BACKGROUND_NOISE_DIR = "_background_noise_"
MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # as in tensorflow/examples/speech_commands/input_data.py
SPLITS = ("training", "validation", "testing")


# ----------------------------------------------------------------------------- WAV reading
def check_wav_chunks(path: Path, raw: bytes) -> None:
    """Refuse a RIFF/WAVE file whose ``data`` chunk is shorter than its header says.

    A cut-off download or copy keeps the header, so a reader that trusts the file length would
    silently return part of the audio (issue: half a word scored as a whole one). A declared
    size of 0xFFFFFFFF (streamed WAVs whose writer never went back to fill it in) is accepted.
    Files that are not RIFF/WAVE are left to the WAV parser's own error.
    """
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        return
    offset = 12
    while offset + 8 <= len(raw):
        chunk_id, size = raw[offset : offset + 4], int.from_bytes(raw[offset + 4 : offset + 8], "little")
        start = offset + 8
        if chunk_id == b"data":
            available = len(raw) - start
            if size != 0xFFFFFFFF and size > available:
                raise UserError(
                    f"{path}: truncated WAV file (the data chunk declares {size} bytes, only {available} "
                    "are there); re-copy or re-record it"
                )
            return
        offset = start + size + (size & 1)


def read_wav(path, sample_rate: int = 16000) -> np.ndarray:
    """Read a WAV file as mono float32 in [-1, 1] at ``sample_rate`` (any input rate/width).

    Raises :class:`UserError` naming the file when it is missing, unreadable, truncated, empty
    or not PCM/float.
    """
    import io

    from scipy.io import wavfile
    from scipy.signal import resample_poly

    path = Path(path)
    raw = read_user_file(path, "a .wav file")
    check_wav_chunks(path, raw)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # WavFileWarning for unknown chunks
            rate, data = wavfile.read(io.BytesIO(raw))
    except Exception as err:  # scipy raises ValueError / struct.error / EOFError on bad files
        raise UserError(f"{path}: cannot read WAV audio ({err})") from None
    if rate <= 0:
        raise UserError(f"{path}: invalid sample rate {rate}")
    data = np.asarray(data)
    if data.size == 0:
        raise UserError(f"{path}: WAV file has no audio samples")
    if data.dtype == np.uint8:
        audio = (data.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.integer):
        # int32 also holds 24-bit WAVs (left-justified by scipy), so scale by the container width
        audio = data.astype(np.float32) / float(-np.iinfo(data.dtype).min)
    elif np.issubdtype(data.dtype, np.floating):
        audio = data.astype(np.float32)
    else:
        raise UserError(f"{path}: unsupported WAV sample type {data.dtype}")
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if not np.all(np.isfinite(audio)):
        raise UserError(f"{path}: WAV file contains NaN/inf samples")
    if rate != sample_rate:
        g = math.gcd(int(rate), int(sample_rate))
        audio = resample_poly(audio, sample_rate // g, int(rate) // g).astype(np.float32)
    return audio


def peak_normalize(audio: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return (audio / max(peak, eps)).astype(np.float32)


def fix_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Pad (centred) or crop (the loudest ``length``-sample window) to exactly ``length``."""
    n = audio.shape[0]
    if n == length:
        return audio.astype(np.float32)
    if n < length:
        left = (length - n) // 2
        return np.pad(audio, (left, length - n - left)).astype(np.float32)
    energy = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    window = energy[length:] - energy[:-length]
    start = int(np.argmax(window))
    return audio[start : start + length].astype(np.float32)


def preprocess(audio: np.ndarray, config: DataConfig) -> np.ndarray:
    """Raw mono audio at ``config.sample_rate`` -> the model's fixed-length input clip."""
    audio = np.asarray(audio, np.float32)
    if config.peak_normalize:
        audio = peak_normalize(audio)
    return fix_length(audio, config.clip_samples)


def load_clip(path, config: DataConfig) -> np.ndarray:
    return preprocess(read_wav(path, config.sample_rate), config)


def load_clips(paths, config: DataConfig, workers: int | None = None) -> np.ndarray:
    """Load many WAVs (threads) into a ``[N, clip_samples]`` float32 array."""
    paths = list(paths)
    out = np.zeros((len(paths), config.clip_samples), np.float32)
    if not paths:
        return out
    workers = workers or min(4, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for i, clip in enumerate(pool.map(lambda p: load_clip(p, config), paths)):
            out[i] = clip
    return out


# ----------------------------------------------------------------------------- folder index
def speaker_of(path) -> str:
    """Speaker id of ``<speaker>_nohash_<n>.wav`` (the whole stem when there is no ``_nohash_``)."""
    return re.sub(r"_nohash_.*$", "", Path(path).name)


def which_set(filename, validation_percentage: float, testing_percentage: float) -> str:
    """The original Speech Commands split: a stable hash of the speaker id -> a split name."""
    percentage = speaker_hash_percentage(speaker_of(filename))
    if percentage < validation_percentage:
        return "validation"
    if percentage < validation_percentage + testing_percentage:
        return "testing"
    return "training"


def _utterance_hash_split(filename, percentage: float) -> bool:
    key = "/".join(Path(filename).parts[-2:])  # word/file: file names repeat across words
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()
    return (int(digest, 16) % 10000) / 100.0 < percentage


def _utterance_validation(examples, percentage: float):
    """(train, validation) by a stable hash of each utterance; never an empty validation set."""
    val = [e for e in examples if _utterance_hash_split(e.path, percentage)]
    if not val and len(examples) > 1:
        val = examples[:: max(2, int(round(100 / max(percentage, 1e-6))))]
    ids = {id(e) for e in val}
    return [e for e in examples if id(e) not in ids], val


@dataclasses.dataclass
class Example:
    path: Path
    word: str
    speaker: str


def scan_folder(data_dir, *, require_classes: int = 1) -> list[Example]:
    """Every ``<word>/*.wav`` under ``data_dir`` (recursively), label = the parent folder name.

    ``_background_noise_`` and hidden folders are skipped. Raises :class:`UserError` when the
    folder is missing, has no WAV files, or has fewer than ``require_classes`` words.
    """
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise UserError(f"{data_dir}: data folder does not exist")
    if not data_dir.is_dir():
        raise UserError(f"{data_dir}: expected a folder of <word>/<speaker>_nohash_<n>.wav files")
    examples = []
    for root, dirs, files in os.walk(data_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != BACKGROUND_NOISE_DIR)
        for name in sorted(files):
            if name.lower().endswith(".wav") and not name.startswith("."):
                path = Path(root) / name
                if path.parent == data_dir:
                    raise UserError(
                        f"{path}: WAV directly under the data folder; expected <word>/{name} "
                        "(the label is the folder name)"
                    )
                examples.append(Example(path, path.parent.name, speaker_of(path)))
    if not examples:
        raise UserError(
            f"{data_dir}: no .wav files found (expected <word>/<speaker>_nohash_<n>.wav)"
        )
    words = sorted({e.word for e in examples})
    if len(words) < require_classes:
        raise UserError(
            f"{data_dir}: found only {len(words)} word folder(s) {words}; training needs at least "
            f"{require_classes} classes (one folder per word)"
        )
    return examples


def background_noise(data_dir, sample_rate: int = 16000, seconds: float = 10.0, seed: int = 0) -> np.ndarray:
    """Noise clips ``[K, N]`` from ``DIR/_background_noise_/*.wav``, or generated ones.

    Generated noise (no folder): white, pink and brown noise, each peak-normalised.
    """
    folder = Path(data_dir) / BACKGROUND_NOISE_DIR if data_dir is not None else None
    clips = []
    if folder is not None and folder.is_dir():
        for path in sorted(folder.glob("*.wav")):
            audio = read_wav(path, sample_rate)
            if audio.shape[0] >= sample_rate // 2:
                clips.append(peak_normalize(audio))
    if not clips:
        clips = generated_noise(sample_rate, seconds, seed)
    length = max(c.shape[0] for c in clips)
    # tile shorter recordings so every row has the same length
    return np.stack([np.resize(c, length) for c in clips]).astype(np.float32)


def generated_noise(sample_rate: int = 16000, seconds: float = 10.0, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(sample_rate * seconds)
    white = rng.standard_normal(n)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1.0 / sample_rate), 20.0)
    pink = np.fft.irfft(spectrum / np.sqrt(f), n)
    brown = np.fft.irfft(spectrum / f, n)
    return [peak_normalize(x.astype(np.float32)) for x in (white, pink, brown)]


@dataclasses.dataclass
class FolderData:
    """A scanned folder split three ways (clips loaded lazily by :meth:`arrays`)."""

    root: Path
    labels: list
    splits: dict  # split name -> list[Example]
    method: str  # how the split was made (for the log and split.json)

    def arrays(self, split: str, config: DataConfig):
        examples = self.splits[split]
        x = load_clips([e.path for e in examples], config)
        y = np.array([self.labels.index(e.word) for e in examples], np.int32)
        return x, y

    def record(self) -> dict:
        """What ``split.json`` keeps: the folder, the method and every file (relative) per split."""
        return {
            "data": str(self.root.resolve()),
            "method": self.method,
            **{name: [relative_name(e.path, self.root) for e in self.splits[name]] for name in SPLITS},
            "speakers": {name: sorted({e.speaker for e in self.splits[name]}) for name in SPLITS},
        }


def relative_name(path, root) -> str:
    """``word/file.wav`` relative to the data folder (how split.json names files)."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return "/".join(Path(path).parts[-2:])


def _read_list(path: Path, data_dir: Path) -> set:
    if not path.exists():
        return set()
    return {
        os.path.normpath(str(data_dir / line.strip()))
        for line in path.read_text().splitlines()
        if line.strip()
    }


def speaker_hash_percentage(speaker: str) -> float:
    hashed = hashlib.sha1(speaker.encode("utf-8")).hexdigest()
    return (int(hashed, 16) % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)


def split_folder(data_dir, config: DataConfig) -> FolderData:
    """Scan ``data_dir`` and split it by speaker, always with a test split.

    ``test_speakers`` given: those speakers are the test split. Else ``validation_list.txt`` /
    ``testing_list.txt`` when present, else the Speech Commands speaker hash; when the hash
    places no speaker in testing (few speakers), the speaker with the lowest hash is held out.
    Validation without its own speakers is a stable share of the training speakers' utterances
    (early stopping only).
    """
    data_dir = Path(data_dir)
    examples = scan_folder(data_dir, require_classes=2)
    labels = sorted({e.word for e in examples})
    splits = {s: [] for s in SPLITS}
    val_list = _read_list(data_dir / "validation_list.txt", data_dir)
    test_list = _read_list(data_dir / "testing_list.txt", data_dir)
    speakers = sorted({e.speaker for e in examples})
    held_out = list(config.test_speakers or [])
    unknown = [s for s in held_out if s not in speakers]
    if unknown:
        raise UserError(
            f"--test-speakers: {', '.join(unknown)} not found in {data_dir}; speakers are "
            f"{', '.join(speakers[:20])}{' ...' if len(speakers) > 20 else ''}"
        )
    if held_out:
        method = f"held-out speakers {held_out}"
    elif val_list or test_list:
        for e in examples:
            key = os.path.normpath(str(e.path))
            split = "validation" if key in val_list else "testing" if key in test_list else "training"
            splits[split].append(e)
        method = "validation_list.txt/testing_list.txt"
    else:
        for e in examples:
            splits[which_set(e.path, config.validation_percentage, config.testing_percentage)].append(e)
        method = "speaker hash"
        if not splits["testing"] and len(speakers) > 1:
            held_out = [min(speakers, key=speaker_hash_percentage)]
            method = f"speaker hash; no speaker hashed into testing, so the lowest-hash speaker {held_out} is held out"
    if held_out:
        splits["testing"] = [e for e in examples if e.speaker in held_out]
        splits["validation"] = [e for e in splits["validation"] if e.speaker not in held_out]
        validating = {id(e) for e in splits["validation"]}
        splits["training"] = [e for e in examples if e.speaker not in held_out and id(e) not in validating]
    if not splits["validation"]:
        log.info("no validation speakers: validating on a stable %.0f%% of the training speakers' utterances",
                 config.validation_percentage)
        splits["training"], splits["validation"] = _utterance_validation(
            splits["training"], config.validation_percentage
        )
    if not splits["training"]:
        raise UserError(f"{data_dir}: the split ({method}) left no training files")
    train_words = {e.word for e in splits["training"]}
    if len(train_words) < 2:
        raise UserError(f"{data_dir}: training split has a single class {sorted(train_words)}")
    for s in SPLITS:
        spk = sorted({e.speaker for e in splits[s]})
        log.info("%s: %d files, %d speakers%s (split: %s)", s, len(splits[s]), len(spk),
                 f" {spk}" if len(spk) <= 6 else "", method)
    return FolderData(root=data_dir, labels=labels, splits=splits, method=method)


@dataclasses.dataclass
class TrainingData:
    """What train needs: labels, training clips (array or tfds stream), validation/test arrays."""

    labels: list
    train_x: object  # np.ndarray [N, samples] or a tf.data.Dataset of (clip, label)
    train_y: np.ndarray | None
    validation: tuple
    test: tuple | None
    noise: np.ndarray
    split: dict  # split.json


def _take_arrays(ds, limit: int):
    xs, ys = [], []
    for x, y in ds.take(limit).as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    if not xs:
        return np.zeros((0, 1), np.float32), np.zeros((0,), np.int32)
    return np.stack(xs), np.asarray(ys, np.int32)


def load_training_data(config: DataConfig) -> TrainingData:
    """The training, validation and test clips of ``config.data`` (folder or ``tfds:<name>``)."""
    import time

    if config.tfds_name:
        train_ds, labels = load_tfds("train", config, name=config.tfds_name)
        val = _take_arrays(load_tfds("validation", config, name=config.tfds_name)[0], config.max_eval_clips)
        test = _take_arrays(load_tfds("test", config, name=config.tfds_name)[0], config.max_eval_clips)
        split = {"data": config.data, "method": "tfds splits train/validation/test"}
        return TrainingData(labels, train_ds, None, val, test, background_noise(None, config.sample_rate), split)
    folder = split_folder(config.data, config)
    started = time.time()
    train = folder.arrays("training", config)
    val = folder.arrays("validation", config)
    test = folder.arrays("testing", config) if folder.splits["testing"] else None
    log.info("loaded %d clips in %.1fs", len(train[0]) + len(val[0]) + (len(test[0]) if test else 0),
             time.time() - started)
    noise = background_noise(config.data, config.sample_rate)
    return TrainingData(folder.labels, train[0], train[1], val, test, noise, folder.record())


# ----------------------------------------------------------------------------- tf.data + augmentation
def augment_batch(audio, *, config: DataConfig, noise):
    """Training augmentation on a batch ``[B, N]`` (TF ops, run inside ``tf.data``).

    Speed perturbation (linear-interpolation resampling around the clip centre), random gain,
    time shift (zero fill), background noise mixed in with probability
    ``background_frequency`` at volume U(0, ``background_volume``), clipped to [-1, 1].
    """
    import tensorflow as tf

    batch = tf.shape(audio)[0]
    n = config.clip_samples
    if config.speed_range > 0:
        rate = tf.random.uniform([batch, 1], 1 - config.speed_range, 1 + config.speed_range)
        centre = (n - 1) / 2.0
        pos = centre + (tf.range(n, dtype=tf.float32)[None, :] - centre) * rate
        lo = tf.floor(pos)
        frac = pos - lo
        lo = tf.cast(lo, tf.int32)
        valid = tf.cast((lo >= 0) & (lo < n - 1), tf.float32)
        lo = tf.clip_by_value(lo, 0, n - 2)
        a = tf.gather(audio, lo, batch_dims=1)
        b = tf.gather(audio, lo + 1, batch_dims=1)
        audio = (a * (1 - frac) + b * frac) * valid
    if config.gain_range > 0:
        audio = audio * tf.random.uniform([batch, 1], 1 - config.gain_range, 1.0)
    shift = int(config.sample_rate * config.time_shift_ms / 1000)
    if shift > 0:
        padded = tf.pad(audio, [[0, 0], [shift, shift]])
        offsets = tf.random.uniform([batch], 0, 2 * shift + 1, dtype=tf.int32)
        idx = offsets[:, None] + tf.range(n)[None, :]
        audio = tf.gather(padded, idx, batch_dims=1)
    if noise is not None and config.background_frequency > 0 and config.background_volume > 0:
        noise = tf.constant(noise)
        k = tf.shape(noise)[0]
        length = tf.shape(noise)[1]
        which = tf.random.uniform([batch], 0, k, dtype=tf.int32)
        start = tf.random.uniform([batch], 0, tf.maximum(length - n, 1), dtype=tf.int32)
        idx = start[:, None] + tf.range(n)[None, :]
        segment = tf.gather(tf.gather(noise, which), idx, batch_dims=1)
        volume = tf.random.uniform([batch, 1], 0, config.background_volume)
        volume *= tf.cast(tf.random.uniform([batch, 1]) < config.background_frequency, tf.float32)
        audio = audio + segment * volume
    return tf.clip_by_value(audio, -1.0, 1.0)


def make_dataset(x, y, config: DataConfig, *, training: bool, noise=None, seed: int = 0):
    """``tf.data`` of ``(audio [B, N], label [B])`` from in-memory arrays or a dataset of clips."""
    import tensorflow as tf

    if isinstance(x, tf.data.Dataset):
        ds = x
        if training:
            ds = ds.shuffle(4096, seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(config.batch_size)
    elif training:
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        # full batches only: the model only ever sees one batch shape
        ds = ds.batch(config.batch_size, drop_remainder=len(x) >= config.batch_size)
    else:
        # evaluation: pad the last batch with zero-weight clips (weighted metrics ignore them)
        from tasks.common.guards import bounded_batch_size

        b = bounded_batch_size(config.batch_size, len(x))  # never pad a few clips up to a huge batch
        pad = (-len(x)) % b
        w = np.concatenate([np.ones(len(x), np.float32), np.zeros(pad, np.float32)])
        x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
        y = np.concatenate([y, np.zeros(pad, y.dtype)])
        ds = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(b)
    if training:
        ds = ds.map(
            lambda a, l: (augment_batch(a, config=config, noise=noise), l),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return ds.prefetch(tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------- tfds
TFDS_NAME = "speech_commands"


def load_tfds(split: str, config: DataConfig, name: str = TFDS_NAME, download: bool = True):
    """tfds ``speech_commands`` as ``(dataset of (clip [N] float32, label int32), label names)``.

    The audio (int16 at 16 kHz) goes through the same :func:`preprocess` as WAV files. Needs the
    dataset prepared in ``config.tfds_data_dir`` (or network access to download it).
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    try:
        ds, info = tfds.load(
            name, split=split, data_dir=config.tfds_data_dir, with_info=True, download=download,
            as_supervised=True,
        )
    except Exception as err:
        raise UserError(
            f"--data tfds:{name} split {split!r}: cannot load ({type(err).__name__}: {err})"
        ) from None
    labels = list(info.features["label"].names)
    n = config.clip_samples

    def prep(audio):
        return preprocess(audio.astype(np.float32) / 32768.0, config)

    def to_clip(audio, label):
        clip = tf.numpy_function(prep, [audio], tf.float32)
        clip.set_shape([n])
        return clip, tf.cast(label, tf.int32)

    return ds.map(to_clip, num_parallel_calls=tf.data.AUTOTUNE), labels
