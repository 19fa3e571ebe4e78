"""Fast leave-one-speaker-out (LOSO) screening of speech_commands variants.

Why: a full speaker-disjoint crossval (``python -m tasks.speech_commands.crossval``) takes ~18 min
on 2 cores. The variants in tasks/speech_commands/README.md ("What moved the held-out accuracy")
were screened with this script instead: it computes the front end's DFT magnitudes once and trains
only the back end (~1 min per held-out speaker). Augmentation is spectral (gain, time shift, VTLP
warp, noise); everything else is the task's own layers (SpecAugment with tempo stretch,
CausalMeanNormalization, lstm_core.LSTM). ``--baselines`` adds ridge regression and 1-nearest-
neighbour on time-aligned log-mel, to tell a weak model from a hard split.

    python tools/speech_loso.py --data ../shared/data/speech_digits --speakers george,nicolas \\
        --norm causal --decay 0.8
    python tools/speech_loso.py --data ../shared/data/speech_digits --baselines --epochs 0
    python tools/speech_loso.py --data ../shared/data/speech_digits --synthetic-voices 300

The last stdout line is a JSON object: per-speaker accuracies and their mean.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import lstm_core.layer  # noqa: E402,F401  (registers the layer classes)
from tasks.speech_commands import data as speech_data  # noqa: E402
from tasks.speech_commands.config import ModelConfig  # noqa: E402
from tasks.speech_commands import frontend as speech_frontend  # noqa: E402
from tasks.speech_commands import feature_layers  # noqa: E402

NORMS = ("global", "utterance", "causal", "causal-var", "frame")


def load_spectra(data_dir, cfg: ModelConfig, synthetic_voices: int = 0):
    """``(spectra [N, T, bins], labels [N], speakers [N], words, mel [bins, mels])``.

    ``synthetic_voices`` > 0 appends the task's espeak-ng clips (speakers ``tts-...``).
    """
    examples = speech_data.scan_folder(data_dir, require_classes=2)
    words = sorted({e.word for e in examples})
    clips = speech_data.load_clips([e.path for e in examples], speech_data.DataConfig())
    labels = np.array([words.index(e.word) for e in examples])
    speakers = np.array([e.speaker for e in examples], dtype=object)
    if synthetic_voices:
        from tasks.speech_commands.synthetic import synthetic_clips

        more, more_labels, more_speakers = synthetic_clips(words, synthetic_voices, speech_data.DataConfig())
        clips, labels = np.concatenate([clips, more]), np.concatenate([labels, more_labels])
        speakers = np.concatenate([speakers, np.array(more_speakers, dtype=object)])
    frontend = speech_frontend.LogMelFrontend(dataclasses.asdict(cfg))
    frontend.build((None, clips.shape[1]))
    spectra = np.concatenate([
        frontend.intermediates(frontend.frames(tf.constant(clips[i : i + 100])))[1].numpy()
        for i in range(0, len(clips), 100)
    ])
    return spectra, labels, speakers, words, frontend.mel.numpy()


class SpectralAugment(keras.layers.Layer):
    """Training-only gain, VTLP frequency warp, additive noise and time shift on magnitudes."""

    def __init__(self, gain, warp, noise, shift, **kwargs):
        super().__init__(**kwargs)
        self.gain, self.warp, self.noise, self.shift = gain, warp, noise, shift

    def call(self, s, training=False):
        if not training:
            return s
        batch, bins = tf.shape(s)[0], s.shape[-1]
        if self.warp:  # output bin k takes input bin k / alpha
            alpha = tf.random.uniform([batch, 1], 1 - self.warp, 1 + self.warp)
            pos = tf.clip_by_value(tf.range(bins, dtype=tf.float32)[None, :] / alpha, 0, bins - 1)
            lo = tf.floor(pos)
            frac = (pos - lo)[:, None, :]
            lo = tf.cast(lo, tf.int32)
            by_bin = tf.transpose(s, [0, 2, 1])
            pick = lambda idx: tf.transpose(tf.gather(by_bin, idx, batch_dims=1), [0, 2, 1])  # noqa: E731
            s = pick(lo) * (1 - frac) + pick(tf.minimum(lo + 1, bins - 1)) * frac
        if self.gain:
            s = s * tf.random.uniform([batch, 1, 1], 1 - self.gain, 1.0)
        if self.noise:
            s = s + tf.abs(tf.random.normal(tf.shape(s))) * tf.random.uniform([batch, 1, 1], 0, self.noise)
        if self.shift:
            s = tf.roll(s, tf.random.uniform([], -self.shift, self.shift + 1, dtype=tf.int32), axis=1)
        return s


def log_mel(spectra, mel, offset, dct=None):
    x = tf.math.log(tf.matmul(spectra, mel) + offset)
    return x if dct is None else tf.matmul(x, dct)


def normalise(x, norm, decay):
    """``x`` is standardised with training statistics already; then the chosen normalisation."""
    if norm == "utterance":  # whole-clip CMVN (not streamable)
        mean, var = tf.nn.moments(x, axes=[1], keepdims=True)
        return (x - mean) / (tf.sqrt(var) + 1e-3)
    if norm == "causal":
        return feature_layers.CausalMeanNormalization(decay)(x)
    if norm == "causal-var":  # running mean and running variance
        layer = feature_layers.CausalMeanNormalization(decay)
        weights = tf.constant(layer.running_mean_matrix(x.shape[1]))
        by_band = tf.transpose(x, [0, 2, 1])
        mean = tf.matmul(by_band, weights)
        # m_{-1} of the squares is 1 (standardised features): add decay^(t+1)
        prior = tf.constant(decay ** np.arange(1, x.shape[1] + 1, dtype=np.float32))
        var = tf.matmul(by_band * by_band, weights) + prior - mean * mean
        return tf.transpose((by_band - mean) / tf.sqrt(tf.maximum(var, 0.0) + 0.05), [0, 2, 1])
    if norm == "frame":  # across the bands of each frame
        mean, var = tf.nn.moments(x, axes=[2], keepdims=True)
        return (x - mean) / (tf.sqrt(var) + 0.1)
    return x


def build(args, num_frames, bins, classes, mel, dct, mean, var):
    spectra = keras.Input((num_frames, bins))
    x = SpectralAugment(args.gain, args.warp, args.noise, args.shift)(spectra)
    x = keras.layers.Lambda(lambda s: (log_mel(s, mel, args.log_offset, dct) - mean) / np.sqrt(var))(x)
    x = keras.layers.Lambda(lambda f: normalise(f, args.norm, args.decay))(x)
    x = feature_layers.SpecAugment(
        freq_masks=2 if args.spec_augment else 0, time_masks=2 if args.spec_augment else 0,
        time_stretch=args.stretch,
    )(x)
    x = lstm_core.LSTM(args.units, return_sequences=args.pool == "mean")(x)
    if args.pool == "mean":
        x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dropout(args.dropout)(x)
    return keras.Model(spectra, keras.layers.Dense(classes, activation="softmax")(x))


def lstm_fold(args, spectra, labels, train, mel, dct, classes):
    keras.utils.set_random_seed(args.seed)
    feats = log_mel(tf.constant(spectra[train]), mel, args.log_offset, dct).numpy()
    feats = feats.reshape(-1, feats.shape[-1])
    model = build(args, spectra.shape[1], spectra.shape[2], classes, mel, dct, feats.mean(0), feats.var(0))
    steps = int(np.ceil(train.sum() / 32)) * args.epochs
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(3e-3, steps, alpha=0.05)),
                  "sparse_categorical_crossentropy")
    model.fit(spectra[train], labels[train], batch_size=32, epochs=args.epochs, verbose=0, shuffle=True)
    return model.predict(spectra[~train], batch_size=250, verbose=0).argmax(-1)


def aligned_features(spectra, mel, offset, frames=16):
    """Per clip: frames within 2.5 nats of the loudest, CMVN, resampled to ``frames`` frames."""
    out = []
    for clip in log_mel(tf.constant(spectra), mel, offset).numpy():
        energy = clip.mean(-1)
        keep = np.where(energy > energy.max() - 2.5)[0]
        seg = clip[keep.min() : keep.max() + 1]
        seg = (seg - seg.mean(0)) / (seg.std(0) + 1e-3)
        t = np.linspace(0, len(seg) - 1, frames)
        out.append(np.stack([np.interp(t, np.arange(len(seg)), band) for band in seg.T], 1).ravel())
    return np.array(out)


def baseline_folds(features, labels, train, classes, ridge=100.0):
    mu, sd = features[train].mean(0), features[train].std(0) + 1e-6
    a, b = (features[train] - mu) / sd, (features[~train] - mu) / sd
    w = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ np.eye(classes)[labels[train]])
    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    return {"ridge": (b @ w).argmax(1), "1-nn": labels[train][(unit(b) @ unit(a).T).argmax(1)]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--speakers", default="", help="comma-separated held-out speakers (default: all)")
    p.add_argument("--norm", choices=NORMS, default="causal")
    p.add_argument("--decay", type=float, default=0.8)
    p.add_argument("--warp", type=float, default=0.0, help="VTLP: warp factor in [1-w, 1+w]")
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--gain", type=float, default=0.3)
    p.add_argument("--shift", type=int, default=5, help="time shift in frames")
    p.add_argument("--stretch", type=float, default=0.4)
    p.add_argument("--spec-augment", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--mels", type=int, default=32)
    p.add_argument("--mfcc", type=int, default=0)
    p.add_argument("--log-offset", type=float, default=0.25)
    p.add_argument("--units", type=int, default=48)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--pool", choices=("last", "mean"), default="last")
    p.add_argument("--epochs", type=int, default=30, help="0: no LSTM (with --baselines)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--baselines", action="store_true", help="also ridge / 1-NN on aligned log-mel")
    p.add_argument("--synthetic-voices", type=int, default=0,
                   help="add every word spoken by N espeak-ng voices to each fold's training set")
    args = p.parse_args(argv)

    cfg = ModelConfig(int8_aware=False, num_mel_bins=args.mels)
    spectra, labels, speakers, words, mel = load_spectra(args.data, cfg, args.synthetic_voices)
    dct = tf.signal.mfccs_from_log_mel_spectrograms(tf.eye(args.mels))[:, : args.mfcc] if args.mfcc else None
    real = sorted({s for s in speakers if not s.startswith("tts-")})
    held_out = args.speakers.split(",") if args.speakers else real
    aligned = aligned_features(spectra, mel, args.log_offset) if args.baselines else None
    results, started = {}, time.time()
    for speaker in held_out:
        train = speakers != speaker
        preds = {}
        if args.epochs:
            preds["lstm"] = lstm_fold(args, spectra, labels, train, mel, dct, len(words))
        if aligned is not None:
            preds.update(baseline_folds(aligned, labels, train, len(words)))
        for name, pred in preds.items():
            results.setdefault(name, {})[speaker] = round(float(np.mean(pred == labels[~train])), 3)
        print(speaker, {k: v[speaker] for k, v in results.items()}, f"{time.time() - started:.0f}s", flush=True)
    summary = {name: {"speakers": r, "mean": round(float(np.mean(list(r.values()))), 4)} for name, r in results.items()}
    print(json.dumps({"args": vars(args), **summary}))


if __name__ == "__main__":
    main()
