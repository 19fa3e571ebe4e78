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
splits. ``test_speakers`` holds out named speakers instead (speaker-disjoint evaluation).
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

from lstm_core.errors import UserError

log = logging.getLogger(__name__)

BACKGROUND_NOISE_DIR = "_background_noise_"
MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # as in tensorflow/examples/speech_commands/input_data.py
SPLITS = ("training", "validation", "testing")


@dataclasses.dataclass
class DataConfig:
    """How clips are read, split and augmented (saved in the model dir's config.json)."""

    sample_rate: int = 16000
    clip_seconds: float = 1.0
    peak_normalize: bool = True
    validation_percentage: float = 10.0
    testing_percentage: float = 10.0
    test_speakers: list = dataclasses.field(default_factory=list)
    # augmentation (training only)
    time_shift_ms: float = 100.0
    background_frequency: float = 0.8
    background_volume: float = 0.1
    speed_range: float = 0.1  # speed perturbation: rate in [1 - r, 1 + r]
    gain_range: float = 0.3  # random gain in [1 - g, 1]
    spec_augment: bool = True
    batch_size: int = 32
    # training only: each word also spoken by this many randomised espeak-ng voices (synthetic.py)
    synthetic_voices: int = 300

    @property
    def clip_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))


# ----------------------------------------------------------------------------- WAV reading
def read_wav(path, sample_rate: int = 16000) -> np.ndarray:
    """Read a WAV file as mono float32 in [-1, 1] at ``sample_rate`` (any input rate/width).

    Raises :class:`UserError` naming the file when it is unreadable, empty or not PCM/float.
    """
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # WavFileWarning for unknown chunks
            rate, data = wavfile.read(str(path))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a .wav file") from None
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
    hash_name = speaker_of(filename)
    hashed = hashlib.sha1(hash_name.encode("utf-8")).hexdigest()
    percentage = (int(hashed, 16) % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)
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

    labels: list
    splits: dict  # split name -> list[Example]

    def arrays(self, split: str, config: DataConfig):
        examples = self.splits[split]
        x = load_clips([e.path for e in examples], config)
        y = np.array([self.labels.index(e.word) for e in examples], np.int32)
        return x, y


def _read_list(path: Path, data_dir: Path) -> set:
    if not path.exists():
        return set()
    return {
        os.path.normpath(str(data_dir / line.strip()))
        for line in path.read_text().splitlines()
        if line.strip()
    }


def split_folder(data_dir, config: DataConfig) -> FolderData:
    """Scan ``data_dir`` and split it (lists, else speaker hash; ``test_speakers`` override)."""
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
            f"{data_dir}: --test-speaker {', '.join(unknown)} not found; speakers are "
            f"{', '.join(speakers[:20])}{' ...' if len(speakers) > 20 else ''}"
        )
    if held_out:
        # speaker-disjoint test set; validation (early stopping only) = a stable 10% of the
        # remaining utterances, so every other speaker stays in training
        splits["testing"] = [e for e in examples if e.speaker in held_out]
        rest = [e for e in examples if e.speaker not in held_out]
        splits["training"], splits["validation"] = _utterance_validation(rest, config.validation_percentage)
        source = f"held-out speakers {held_out}"
    elif val_list or test_list:
        for e in examples:
            key = os.path.normpath(str(e.path))
            split = "validation" if key in val_list else "testing" if key in test_list else "training"
            splits[split].append(e)
        source = "validation_list.txt/testing_list.txt"
    else:
        for e in examples:
            splits[which_set(e.path, config.validation_percentage, config.testing_percentage)].append(e)
        source = "speaker hash"
        if not splits["validation"]:
            log.warning(
                "no speaker hashed into validation (%d speakers); validating on a stable %.0f%% of "
                "training utterances (speakers overlap)", len(speakers), config.validation_percentage,
            )
            splits["training"], splits["validation"] = _utterance_validation(
                splits["training"], config.validation_percentage
            )
    if not splits["training"]:
        raise UserError(f"{data_dir}: the split ({source}) left no training files")
    train_words = {e.word for e in splits["training"]}
    if len(train_words) < 2:
        raise UserError(f"{data_dir}: training split has a single class {sorted(train_words)}")
    for s in SPLITS:
        spk = sorted({e.speaker for e in splits[s]})
        log.info("%s: %d files, %d speakers%s (split by %s)", s, len(splits[s]), len(spk),
                 f" {spk}" if len(spk) <= 6 else "", source)
    return FolderData(labels=labels, splits=splits)


# ----------------------------------------------------------------------------- tf.data + augmentation
def augment_batch(audio, *, config: DataConfig, noise, seed_generator=None):
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
        b = config.batch_size
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


def load_tfds(split: str, config: DataConfig, data_dir=None, download: bool = True):
    """tfds ``speech_commands`` as ``(dataset of (clip [N] float32, label int32), label names)``.

    The audio (int16 at 16 kHz) goes through the same :func:`preprocess` as WAV files. Needs the
    dataset prepared in ``data_dir`` (or network access to download it).
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    try:
        ds, info = tfds.load(
            TFDS_NAME, split=split, data_dir=data_dir, with_info=True, download=download,
            as_supervised=True,
        )
    except Exception as err:
        raise UserError(
            f"tfds {TFDS_NAME} split {split!r}: cannot load ({type(err).__name__}: {err})"
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
