"""Generated Speech Commands style folders: one tone/chirp pattern per word."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.io import wavfile

WORDS = {"up": (500.0, 900.0), "down": (1400.0, 600.0), "flat": (1000.0, 1000.0)}
SPEAKERS = ("alice", "bob", "carol", "dave")


def tone(f0, f1, rate, seconds, rng, pitch=1.0):
    t = np.arange(int(rate * seconds)) / rate
    freq = pitch * (f0 + (f1 - f0) * t / seconds)
    phase = 2 * np.pi * np.cumsum(freq) / rate
    env = np.sin(np.pi * t / seconds) ** 2
    return env * np.sin(phase) * 0.5 + 0.01 * rng.standard_normal(t.shape)


def write_wav(path: Path, audio: np.ndarray, rate: int, stereo: bool = False):
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.clip(audio * 32767, -32768, 32767).astype(np.int16)
    if stereo:
        pcm = np.stack([pcm, pcm], axis=1)
    wavfile.write(str(path), rate, pcm)


def make_dataset(root: Path, per_speaker: int = 3, words=WORDS, speakers=SPEAKERS, seed: int = 0) -> Path:
    """``root/<word>/<speaker>_nohash_<n>.wav``: mixed 8/16 kHz, some stereo, 0.4-1.3 s long."""
    rng = np.random.default_rng(seed)
    for w, (f0, f1) in words.items():
        for si, spk in enumerate(speakers):
            for n in range(per_speaker):
                rate = 8000 if (si + n) % 2 else 16000
                seconds = float(rng.uniform(0.4, 1.3))
                audio = tone(f0, f1, rate, seconds, rng, pitch=1.0 + 0.05 * (si - 1.5))
                write_wav(root / w / f"{spk}_nohash_{n}.wav", audio, rate, stereo=(n == 1))
    return root
