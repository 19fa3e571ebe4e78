"""Synthetic espeak-ng speakers: voices, text, clips as the pipeline expects them."""

import numpy as np
import pytest

from tasks.common.errors import UserError
from tasks.speech_commands import data as speech_data
from tasks.speech_commands import synthetic


def test_spoken_text_skips_non_words():
    assert synthetic.spoken_text("seven") == "seven"
    assert synthetic.spoken_text("turn_left") == "turn left"
    for label in ("_unknown_", "_silence_", "_background_noise_", "123"):
        assert synthetic.spoken_text(label) is None


def test_random_voices_are_distinct_and_stable():
    voices = synthetic.random_voices(40, seed=3)
    assert len(set(voices)) == 40 and len({v.speaker for v in voices}) == 40
    assert voices == synthetic.random_voices(40, seed=3)
    assert voices != synthetic.random_voices(40, seed=4)
    for v in voices:
        accent, variant = v.name.split("+")
        assert accent in synthetic.ACCENTS and variant in synthetic.espeak().variants()
        assert synthetic.PITCH[0] <= v.pitch <= synthetic.PITCH[1]
        assert v.speaker.startswith("tts-")


def test_voices_differ_in_pitch():
    engine = synthetic.espeak()
    low = synthetic.Voice("en-us", pitch=10, pitch_range=0, words_per_minute=150)
    high = synthetic.Voice("en-us", pitch=90, pitch_range=0, words_per_minute=150)

    def f0(audio):  # strongest autocorrelation lag in the 50-400 Hz range
        a = synthetic.trim_silence(audio)
        ac = np.correlate(a, a, "full")[len(a) - 1 :]
        lags = np.arange(engine.sample_rate // 400, engine.sample_rate // 50)
        return engine.sample_rate / lags[np.argmax(ac[lags])]

    assert f0(engine.say("zero", high)) > 1.3 * f0(engine.say("zero", low))


def test_unknown_voice_is_a_user_error():
    with pytest.raises(UserError, match="no-such-voice"):
        synthetic.espeak().say("one", synthetic.Voice("no-such-voice", 50, 50, 150))


def test_trim_silence():
    audio = np.concatenate([np.zeros(100), np.ones(10), np.zeros(50)]).astype(np.float32)
    assert len(synthetic.trim_silence(audio)) == 10
    assert len(synthetic.trim_silence(audio, margin=5)) == 20
    assert synthetic.trim_silence(np.zeros(10, np.float32)).size == 0


def test_synthetic_clips_look_like_loaded_wavs():
    cfg = speech_data.DataConfig()
    words = ["_silence_", "left", "right"]
    x, y, speakers = synthetic.synthetic_clips(words, 3, cfg, seed=0)
    assert x.shape == (6, cfg.clip_samples) and x.dtype == np.float32
    assert sorted(y.tolist()) == [1, 1, 1, 2, 2, 2]  # no "_silence_" clips
    assert len(set(speakers)) == 3
    np.testing.assert_allclose(np.abs(x).max(axis=1), 1.0, atol=1e-6)  # peak-normalised
    for clip in x:  # a word of 0.2-0.9 s, centred with silence either side
        loud = np.flatnonzero(np.abs(clip) > 0.01)
        assert 0.2 * cfg.sample_rate < loud[-1] - loud[0] < 0.9 * cfg.sample_rate
        assert loud[0] > 0.04 * cfg.sample_rate and loud[-1] < 0.96 * cfg.sample_rate
    # same voices and labels for a seed (espeak-ng's jitter makes the samples themselves vary)
    _, y2, speakers2 = synthetic.synthetic_clips(words, 3, cfg, seed=0)
    assert y2.tolist() == y.tolist() and speakers2 == speakers


def test_synthetic_clips_mix_into_a_streamed_training_set():
    import tensorflow as tf

    from tasks.speech_commands.train import add_synthetic_voices

    cfg = speech_data.DataConfig(synthetic_voices=3)
    real = tf.data.Dataset.from_tensor_slices((np.zeros((40, cfg.clip_samples), np.float32), np.zeros(40, np.int32)))
    mixed, labels, added = add_synthetic_voices(real, None, ["left", "right"], cfg, seed=0)
    assert added == 6 and labels is None
    got = [(float(np.abs(x).max()), int(y)) for x, y in mixed.as_numpy_iterator()]
    assert sum(peak == 0.0 for peak, _ in got) == 40  # every real clip, once
    assert {y for peak, y in got if peak > 0} <= {0, 1} and any(peak > 0 for peak, _ in got)
