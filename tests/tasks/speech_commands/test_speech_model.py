import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tasks.common.training import TrainConfig
from tasks.speech_commands import model as speech_model
from tasks.speech_commands.config import ModelConfig
from tasks.speech_commands import frontend as speech_frontend
from tasks.speech_commands import feature_layers
from tasks.speech_commands import streaming as speech_streaming
from lstm_core.export import FLOAT_ATOL
from tasks.speech_commands.artifacts import SpeechModelDir
from tasks.speech_commands.config import DataConfig


def _audio(n=2, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(16000) / 16000
    x = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 3000, (n, 1)) * t) + 0.05 * rng.standard_normal((n, 16000))
    return x.astype(np.float32)


def test_matrix_dft_log_mel_matches_tf_signal_stft():
    """Without decimation and with the power spectrum, the front end is tf.signal's log-mel."""
    cfg = ModelConfig(feature_rate=16000, frame_ms=25, hop_ms=20, dft_bin_hz=31.25, spectrum="power",
                        log_offset=1e-3, upper_edge_hertz=7600, num_mel_bins=40)
    front = speech_frontend.LogMelFrontend(dataclasses.asdict(cfg))
    audio = _audio()
    ours = front(audio).numpy()
    padded = tf.pad(audio, [[0, 0], [400 - 320, 0]])  # causal framing
    stft = tf.signal.stft(padded, 400, 320, fft_length=512, window_fn=tf.signal.hann_window, pad_end=False)
    power = tf.abs(stft) ** 2
    mel = tf.signal.linear_to_mel_weight_matrix(40, 257, 16000, cfg.lower_edge_hertz, 7600)
    ref = tf.math.log(tf.matmul(power, mel) + 1e-3).numpy()
    assert ours.shape == ref.shape == (2, 50, 40)
    np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=1e-3)


def test_decimating_front_end_shapes_and_band_limit():
    cfg = ModelConfig()
    front = speech_frontend.LogMelFrontend(dataclasses.asdict(cfg))
    assert front.fir_context == cfg.fir_taps - 1 and front.frame_context == 40
    t = np.arange(16000) / 16000
    low = np.sin(2 * np.pi * 1000 * t)[None].astype(np.float32)
    high = np.sin(2 * np.pi * 6000 * t)[None].astype(np.float32)  # above the 4 kHz feature band
    f_low, f_high = front(low).numpy(), front(high).numpy()
    assert f_low.shape == (1, cfg.num_frames, cfg.num_mel_bins)
    assert f_low.max() > f_high.max() + 3  # the FIR removes what would alias


@pytest.mark.parametrize("feature_norm", ["causal", "global"])
def test_streaming_model_reproduces_the_clip_model(feature_norm):
    cfg = ModelConfig(units=16, feature_norm=feature_norm)
    audio = _audio(1, seed=3)
    model = speech_model.build_calibrated_model(cfg, 4, np.concatenate([audio, _audio(4, seed=4)]))
    assert np.all(model.get_layer("log_mel").ranges.numpy() > 0)  # int8 grid rounding active
    clip_probs = speech_model.predict_proba(model, audio)[0]
    stream = speech_streaming.build_streaming_model(model)
    def step(*xs):
        return stream(list(xs), training=False)

    probs, state = speech_streaming.stream_clip(step, audio[0], speech_streaming.initial_streaming_state(model), cfg.hop_samples)
    assert probs.shape == (cfg.num_frames, 4)
    np.testing.assert_allclose(probs[-1], clip_probs, atol=1e-5)
    assert [s.shape for s in state] == [(1, n) for n in speech_streaming.streaming_state_shapes(model).values()]


def test_causal_mean_normalization_is_the_running_mean_recursion():
    layer = feature_layers.CausalMeanNormalization(decay=0.8)
    x = np.random.default_rng(0).standard_normal((2, 7, 3)).astype(np.float32)
    mean, expected = np.zeros((2, 3), np.float32), []
    for t in range(7):
        out, mean = layer.step(x[:, t], mean)
        expected.append(np.asarray(out))
    np.testing.assert_allclose(layer(x).numpy(), np.stack(expected, 1), atol=1e-6)
    # a constant offset per band (microphone colouring) fades out: after 6 frames 0.8^7 is left
    shifted = layer(x + 5.0).numpy() - layer(x).numpy()
    np.testing.assert_allclose(shifted[:, -1], 5.0 * 0.8**7, rtol=1e-4)
    assert feature_layers.CausalMeanNormalization.from_config(layer.get_config()).decay == 0.8
    with pytest.raises(ValueError, match="decay"):
        feature_layers.CausalMeanNormalization(decay=1.0)


def test_spec_augment_only_in_training():
    layer = feature_layers.SpecAugment(freq_masks=2, freq_mask_width=4, time_masks=2, time_mask_width=5, time_stretch=0.3)
    x = tf.ones([3, 50, 32])
    assert np.array_equal(layer(x, training=False).numpy(), x.numpy())
    y = layer(x, training=True).numpy()
    assert y.shape == x.shape and not np.allclose(y, x.numpy())


def test_model_and_config_round_trip(tmp_path):
    dcfg = DataConfig(test_speakers=["bob"])
    mcfg = ModelConfig(units=8, num_mel_bins=24)
    model = speech_model.build_model(mcfg, 3, (np.full(24, 2.0, np.float32), np.full(24, 4.0, np.float32)))
    model.save(tmp_path / "model.keras")
    written = SpeechModelDir(tmp_path, {"data": dcfg, "model": mcfg, "train": TrainConfig(epochs=3)})
    written.save_config()
    written.save_assets(tmp_path, ["a", "b", "c"], {"data": "/x", "testing": []})
    mdir = SpeechModelDir.open(tmp_path)
    assert mdir.data == dcfg and mdir.model == mcfg and mdir.train.epochs == 3
    assert mdir.labels == ["a", "b", "c"] and (tmp_path / "labels.txt").read_text().split() == ["a", "b", "c"]
    assert mdir.split() == {"data": "/x", "testing": []}
    loaded = speech_model.load_trained_model(mdir)
    audio = _audio(2)
    np.testing.assert_allclose(speech_model.predict_proba(loaded, audio), speech_model.predict_proba(model, audio), atol=1e-6)


def test_invalid_front_end_settings_are_refused():
    with pytest.raises(ValueError, match="mel bands"):
        speech_frontend.LogMelFrontend(dataclasses.asdict(ModelConfig(num_mel_bins=128, dft_bin_hz=125)))


def test_int8_conditioning_gains_cancel_in_float():
    """The per-bin/per-band gains only move the log-mel by a constant per band (absorbed by the
    standardisation), and int8-aware rounding acts in training only."""
    cfg = ModelConfig(units=8, int8_aware=False)
    audio = _audio(6, seed=1)
    plain = speech_frontend.LogMelFrontend(dataclasses.asdict(cfg))
    plain.build((None, 16000))
    tuned = speech_frontend.LogMelFrontend(dataclasses.asdict(cfg))
    speech_frontend.calibrate_frontend(tuned, audio)
    assert not np.allclose(tuned.bin_gain.numpy(), 1.0) and np.all(tuned.ranges.numpy() > 0)
    diff = tuned(audio).numpy() - plain(audio).numpy()
    np.testing.assert_allclose(diff - diff.mean(axis=(0, 1)), 0.0, atol=1e-4)
    # int8-aware: the spectrum tensors sit on a 255-step grid, close to the unrounded front end
    aware = speech_frontend.LogMelFrontend(dataclasses.asdict(dataclasses.replace(cfg, int8_aware=True)))
    speech_frontend.calibrate_frontend(aware, audio)
    rounded = aware(audio).numpy()
    exact = tuned(audio).numpy()
    assert not np.allclose(rounded, exact) and np.abs(rounded - exact).mean() < 0.2


def test_float_export_tolerance_allows_int8_grid_flips_only_for_int8_aware_front_ends():
    # the float model rounds its front end to an int8 grid; TF and LiteRT may round a midpoint
    # value differently (one step ~1e-4..1e-3 in the probabilities), so only then is it looser
    assert speech_model.float_export_atol(ModelConfig(int8_aware=True)) == speech_model.FAKE_QUANT_ATOL
    assert speech_model.float_export_atol(ModelConfig(int8_aware=False)) == 1e-4 == FLOAT_ATOL
    assert 1e-4 < speech_model.FAKE_QUANT_ATOL <= 5e-3


def test_models_saved_before_the_model_module_split_still_load(tmp_path):
    """A ``.keras`` written when the layers lived in ``tasks/speech_commands/model.py`` (its config
    names that module) loads through the registered names ``speech_commands>...``."""
    import json
    import zipfile

    import keras

    old_names = {"LogMelFrontend", "CausalMeanNormalization", "SpecAugment"}
    model = speech_model.build_model(ModelConfig(units=8, num_mel_bins=24, feature_norm="causal"), 3)
    model.save(tmp_path / "new.keras")
    with zipfile.ZipFile(tmp_path / "new.keras") as new, zipfile.ZipFile(tmp_path / "old.keras", "w") as old:
        for item in new.infolist():
            data = new.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                for layer in config["config"]["layers"]:
                    if layer["class_name"] in old_names:
                        layer["module"] = "tasks.speech_commands.model"
                        layer["registered_name"] = f"speech_commands>{layer['class_name']}"
                data = json.dumps(config).encode()
            old.writestr(item, data)
    loaded = keras.saving.load_model(tmp_path / "old.keras", safe_mode=True)
    assert old_names <= {type(layer).__name__ for layer in loaded.layers}
    for layer in (speech_frontend.LogMelFrontend, feature_layers.CausalMeanNormalization, feature_layers.SpecAugment):
        assert keras.saving.get_registered_name(layer) == f"speech_commands>{layer.__name__}"
    audio = _audio(2)
    np.testing.assert_allclose(speech_model.predict_proba(loaded, audio), speech_model.predict_proba(model, audio),
                               atol=1e-6)
