"""Synthetic speakers: every training word spoken by randomised espeak-ng voices.

Why: a keyword spotter trained on a handful of speakers learns their voices along with the words
(on the 4-speaker digits, 98% on held-out clips of the training speakers, ~67% on a new speaker).
Text-to-speech adds cheap speaker variety — pitch, formant sets, speaking rate, accent — for any
vocabulary, since the words are the folder names (the openWakeWord recipe, here with the
formant synthesiser espeak-ng, which ships as a pip wheel: ``espeakng_loader``). Synthetic clips
are training data only: validation and test keep the real recordings.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import math
import threading

import numpy as np

from tasks.common.errors import UserError

# English accents of espeak-ng and its voice variants (formant sets, pitch contours, breathiness)
ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd")
PITCH = (15, 85)  # espeak base pitch, 0..100
PITCH_RANGE = (10, 90)  # intonation range, 0..100
WORDS_PER_MINUTE = (110, 230)


@dataclasses.dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an espeak-ng voice (``accent+variant``) and its prosody settings."""

    name: str
    pitch: int
    pitch_range: int
    words_per_minute: int

    @property
    def speaker(self) -> str:
        return "tts-" + "-".join(
            [self.name.replace("+", "-").replace(" ", ""), str(self.pitch), str(self.pitch_range),
             str(self.words_per_minute)])


class Espeak:
    """espeak-ng through ctypes (synchronous mode: the audio comes back through a callback).

    espeak-ng keeps process-wide state, so one instance (:func:`espeak`) serves the process and a
    lock serialises calls.
    """

    _CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
    _SYNCHRONOUS, _POS_CHARACTER = 2, 1
    _RATE, _PITCH, _RANGE = 1, 3, 4  # espeak_PARAMETER

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError:
            raise UserError(
                "synthetic voices need espeak-ng: pip install espeakng-loader (or pass --synthetic-voices 0)"
            ) from None
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._data = espeakng_loader.get_data_path()
        self.sample_rate = self._lib.espeak_Initialize(self._SYNCHRONOUS, 0, self._data.encode(), 0)
        if self.sample_rate <= 0:
            raise UserError(f"espeak-ng: cannot initialise with data at {self._data}")
        self._chunks: list[np.ndarray] = []
        self._callback = self._CALLBACK(self._collect)  # keep a reference: C holds the pointer
        self._lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()

    def _collect(self, wav, count, events):
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (count,)).copy())
        return 0

    def variants(self) -> list[str]:
        import os

        return sorted(os.listdir(os.path.join(self._data, "voices", "!v")))

    def say(self, text: str, voice: Voice) -> np.ndarray:
        """float32 audio in [-1, 1] at :attr:`sample_rate`."""
        with self._lock:
            if self._lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
                raise UserError(f"espeak-ng: unknown voice {voice.name!r}")
            self._lib.espeak_SetParameter(self._RATE, voice.words_per_minute, 0)
            self._lib.espeak_SetParameter(self._PITCH, voice.pitch, 0)
            self._lib.espeak_SetParameter(self._RANGE, voice.pitch_range, 0)
            self._chunks.clear()
            data = text.encode()
            self._lib.espeak_Synth(data, len(data) + 1, 0, self._POS_CHARACTER, 0, 0, None, None)
            self._lib.espeak_Synchronize()
            audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return audio.astype(np.float32) / 32768.0


@functools.lru_cache(maxsize=1)
def espeak() -> Espeak:
    return Espeak()


def random_voices(count: int, seed: int = 0) -> list[Voice]:
    """``count`` distinct voices drawn from accents x variants x prosody (stable for a seed)."""
    rng = np.random.default_rng(seed)
    variants = espeak().variants()
    voices, seen = [], set()
    while len(voices) < count:
        voice = Voice(
            name=f"{ACCENTS[rng.integers(len(ACCENTS))]}+{variants[rng.integers(len(variants))]}",
            pitch=int(rng.integers(PITCH[0], PITCH[1] + 1)),
            pitch_range=int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
            words_per_minute=int(rng.integers(WORDS_PER_MINUTE[0], WORDS_PER_MINUTE[1] + 1)),
        )
        if voice not in seen:
            seen.add(voice)
            voices.append(voice)
    return voices


def spoken_text(word: str) -> str | None:
    """What to synthesise for a label: ``None`` for non-words such as ``_unknown_``/``_silence_``."""
    if word.startswith("_") or not any(ch.isalpha() for ch in word):
        return None
    return word.replace("_", " ").replace("-", " ")


def trim_silence(audio: np.ndarray, threshold: float = 0.01, margin: int = 0) -> np.ndarray:
    """Cut leading/trailing samples below ``threshold`` x peak (TTS pads words with silence)."""
    loud = np.flatnonzero(np.abs(audio) > threshold * max(float(np.abs(audio).max(initial=0.0)), 1e-9))
    if loud.size == 0:
        return audio[:0]
    return audio[max(loud[0] - margin, 0) : loud[-1] + 1 + margin]


def synthetic_clips(words, count: int, config, seed: int = 0):
    """``(clips [N, clip_samples], labels [N], speakers [N])``: each speakable word x ``count`` voices.

    ``config`` is the :class:`~tasks.speech_commands.data.DataConfig`; clips go through the same
    resampling and :func:`~tasks.speech_commands.data.preprocess` as recorded WAVs.
    """
    from scipy.signal import resample_poly

    from tasks.speech_commands.data import preprocess

    engine = espeak()
    g = math.gcd(engine.sample_rate, config.sample_rate)
    up, down = config.sample_rate // g, engine.sample_rate // g
    margin = int(0.02 * config.sample_rate)
    clips, labels, speakers = [], [], []
    for voice in random_voices(count, seed):
        for label, word in enumerate(words):
            text = spoken_text(word)
            if text is None:
                continue
            audio = trim_silence(resample_poly(engine.say(text, voice), up, down).astype(np.float32), margin=margin)
            if audio.size == 0:
                continue
            clips.append(preprocess(audio, config))
            labels.append(label)
            speakers.append(voice.speaker)
    if not clips:
        return np.zeros((0, config.clip_samples), np.float32), np.zeros(0, np.int32), []
    return np.stack(clips), np.array(labels, np.int32), speakers
