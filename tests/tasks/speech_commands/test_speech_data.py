import hashlib
import re

import numpy as np
import pytest
import tensorflow as tf
from scipy.io import wavfile

from tasks.common.cli import main
from tasks.common.errors import UserError
from tasks.speech_commands import data as speech_data

from speech_toy import make_dataset, write_wav


def test_read_wav_resamples_and_mixes_down(tmp_path):
    rate = 8000
    t = np.arange(rate // 2) / rate
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    path = tmp_path / "a.wav"
    wavfile.write(str(path), rate, (stereo * 32767).astype(np.int16))
    audio = speech_data.read_wav(path, 16000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert audio.shape[0] == 2 * len(t)  # 8 kHz -> 16 kHz
    # mono = channel mean; the 440 Hz tone survives resampling
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16000 / len(audio) - 440) < 5
    assert 0.2 < np.abs(audio).max() < 0.3


@pytest.mark.parametrize("dtype,scale", [(np.int16, 32767), (np.int32, 2**31 - 1), (np.float32, 1.0), (np.uint8, None)])
def test_read_wav_sample_formats(tmp_path, dtype, scale):
    x = 0.5 * np.sin(np.linspace(0, 20, 1600))
    data = (x * 127 + 128).astype(np.uint8) if scale is None else (x * scale).astype(dtype)
    path = tmp_path / "f.wav"
    wavfile.write(str(path), 16000, data)
    audio = speech_data.read_wav(path)
    np.testing.assert_allclose(audio, x, atol=0.02 if scale is None else 1e-3)


def test_fix_length_pads_centred_and_crops_loudest_window():
    short = np.ones(100, np.float32)
    out = speech_data.fix_length(short, 300)
    assert out.shape == (300,) and out[:100].sum() == 0 and out[100:200].sum() == 100
    long = np.zeros(1000, np.float32)
    long[700:750] = 1.0
    out = speech_data.fix_length(long, 200)
    assert out.shape == (200,) and out.sum() == 50  # the burst is kept


def test_preprocess_normalises_peak_and_length():
    cfg = speech_data.DataConfig()
    clip = speech_data.preprocess(0.01 * np.sin(np.arange(5000) / 5.0), cfg)
    assert clip.shape == (cfg.clip_samples,)
    assert np.isclose(np.abs(clip).max(), 1.0, atol=1e-3)


def test_which_set_follows_the_original_speaker_hash():
    for name in ("abc123_nohash_0.wav", "george_nohash_7.wav", "xyz_nohash_12.wav"):
        speaker = re.sub(r"_nohash_.*$", "", name)
        pct = (int(hashlib.sha1(speaker.encode()).hexdigest(), 16) % (2**27)) * (100.0 / (2**27 - 1))
        expected = "validation" if pct < 10 else "testing" if pct < 20 else "training"
        assert speech_data.which_set(name, 10, 10) == expected
        # every utterance of a speaker lands in the same split
        assert speech_data.which_set(name.replace("_0", "_5"), 10, 10) == speech_data.which_set(name, 10, 10)


def test_split_keeps_speakers_apart(tmp_path):
    root = make_dataset(tmp_path / "d", per_speaker=2, speakers=[f"s{i:02d}" for i in range(12)])
    folder = speech_data.split_folder(root, speech_data.DataConfig(validation_percentage=25, testing_percentage=25))
    speakers = {s: {e.speaker for e in folder.splits[s]} for s in speech_data.SPLITS}
    assert speakers["training"] and speakers["validation"] and speakers["testing"]
    assert not speakers["training"] & speakers["validation"]
    assert not speakers["training"] & speakers["testing"]
    assert not speakers["validation"] & speakers["testing"]
    assert folder.labels == sorted(folder.labels) and len(folder.labels) == 3


def test_the_default_split_always_holds_out_a_test_speaker(tiny_data):
    # four speakers: the 10%/10% speaker hash places none in testing, so the lowest-hash
    # speaker (alice) is held out and validation is a share of the others' utterances
    folder = speech_data.split_folder(tiny_data, speech_data.DataConfig())
    speakers = {s: {e.speaker for e in folder.splits[s]} for s in speech_data.SPLITS}
    assert speakers["testing"] == {"alice"} and "alice" in folder.method
    assert speakers["training"] == speakers["validation"] == {"bob", "carol", "dave"}
    record = folder.record()
    assert record["speakers"]["testing"] == ["alice"] and len(record["testing"]) == 9
    assert not set(record["training"]) & set(record["validation"])
    assert all(name.count("/") == 1 for name in record["training"])  # word/file, relative


def test_held_out_speaker_is_the_test_set(tiny_data):
    folder = speech_data.split_folder(tiny_data, speech_data.DataConfig(test_speakers=["bob"]))
    assert {e.speaker for e in folder.splits["testing"]} == {"bob"}
    assert "bob" not in {e.speaker for s in ("training", "validation") for e in folder.splits[s]}
    x, y = folder.arrays("testing", speech_data.DataConfig())
    assert x.shape == (len(folder.splits["testing"]), 16000) and x.dtype == np.float32
    assert set(y) <= {0, 1, 2}


def test_validation_and_testing_lists_are_used(tmp_path):
    root = make_dataset(tmp_path / "d", per_speaker=1)
    (root / "validation_list.txt").write_text("up/alice_nohash_0.wav\ndown/bob_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("flat/carol_nohash_0.wav\n")
    folder = speech_data.split_folder(root, speech_data.DataConfig())
    assert sorted(e.path.name for e in folder.splits["validation"]) == ["alice_nohash_0.wav", "bob_nohash_0.wav"]
    assert [e.word for e in folder.splits["testing"]] == ["flat"]
    assert len(folder.splits["training"]) == 12 - 3


def test_background_noise_from_folder_or_generated(tmp_path):
    root = make_dataset(tmp_path / "d", per_speaker=1)
    generated = speech_data.background_noise(root)
    assert generated.shape[0] == 3 and generated.shape[1] == 160000
    write_wav(root / speech_data.BACKGROUND_NOISE_DIR / "hum.wav", 0.2 * np.sin(np.arange(16000) / 3.0), 8000)
    noise = speech_data.background_noise(root)
    assert noise.shape == (1, 32000)  # 2 s at 8 kHz -> 16 kHz
    assert np.isclose(np.abs(noise).max(), 1.0, atol=1e-2)
    # the noise folder is not a word
    assert speech_data.BACKGROUND_NOISE_DIR not in speech_data.split_folder(root, speech_data.DataConfig()).labels


def test_augmentation_shapes_and_range():
    cfg = speech_data.DataConfig()
    audio = tf.constant(np.random.default_rng(0).uniform(-1, 1, (4, cfg.clip_samples)).astype(np.float32))
    noise = np.stack(speech_data.generated_noise(seconds=2.0))
    out = speech_data.augment_batch(audio, config=cfg, noise=noise).numpy()
    assert out.shape == (4, cfg.clip_samples)
    assert np.abs(out).max() <= 1.0
    assert not np.allclose(out, audio.numpy())
    ds = speech_data.make_dataset(audio.numpy(), np.arange(4), cfg, training=True, noise=noise)
    x, y = next(iter(ds))
    assert x.shape[1] == cfg.clip_samples


# ----------------------------------------------------------------------------- bad input
def test_truncated_wav_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "cut_nohash_0.wav"
    write_wav(path, 0.5 * np.sin(np.arange(8000) / 5.0), 16000)
    whole = path.read_bytes()
    assert speech_data.read_wav(path).shape == (8000,)
    path.write_bytes(whole[: len(whole) // 2])  # the header still says 16,000 data bytes
    with pytest.raises(UserError, match=r"cut_nohash_0.wav: truncated WAV file \(the data chunk declares 16000 bytes"):
        speech_data.read_wav(path)
    # a streamed WAV whose writer never filled in the size (0xFFFFFFFF) is still read
    streamed = bytearray(whole)
    data_at = whole.index(b"data")
    streamed[data_at + 4 : data_at + 8] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(streamed))
    assert speech_data.read_wav(path).shape == (8000,)


def test_truncated_wav_in_training_is_one_error_line(tmp_path, capsys):
    root = make_dataset(tmp_path / "d", per_speaker=1)
    victim = root / "up" / "bob_nohash_0.wav"
    victim.write_bytes(victim.read_bytes()[:-100])
    assert main(["-q", "speech_commands", "train", "--data", str(root), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bob_nohash_0.wav: truncated WAV file" in err[0], err
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.partial").exists()


def test_corrupt_wav_names_the_file(tmp_path):
    root = make_dataset(tmp_path / "d", per_speaker=1)
    bad = root / "up" / "zed_nohash_0.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(UserError, match="zed_nohash_0.wav"):
        speech_data.load_clips([bad], speech_data.DataConfig())


def test_cli_errors_exit_2_with_one_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    one = make_dataset(tmp_path / "one", per_speaker=1, words={"up": (500.0, 900.0)})
    corrupt = make_dataset(tmp_path / "corrupt", per_speaker=1)
    (corrupt / "down" / "bad_nohash_0.wav").write_text("not audio")
    cases = [
        (["speech_commands", "train", "--data", str(empty), "--out", str(tmp_path / "m")], "no .wav files"),
        (["speech_commands", "train", "--data", str(one), "--out", str(tmp_path / "m")], "single class|only 1 word"),
        (["speech_commands", "train", "--data", str(corrupt), "--out", str(tmp_path / "m")], "bad_nohash_0.wav"),
        (["speech_commands", "train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "m")], "does not exist|no such file or directory"),
        (["speech_commands", "train", "--data", str(corrupt), "--test-speakers", "zoe", "--out", str(tmp_path / "m")],
         "--test-speakers: zoe not found"),
        (["speech_commands", "evaluate", "--model", str(tmp_path / "nomodel"), "--data", str(corrupt)], "nomodel"),
        (["speech_commands", "train", "--data", str(one), "--norm-decay", "1.5", "--out", str(tmp_path / "m")],
         "--norm-decay: expected a number >= 0 and < 1, got 1.5"),
        (["speech_commands", "train", "--data", str(one), "--synthetic-voices", "-1", "--out", str(tmp_path / "m")],
         "--synthetic-voices: expected an integer >= 0, got -1"),
        (["speech_commands", "train", "--data", str(corrupt), "--feature-rate", "7000", "--out", str(tmp_path / "m")],
         "front-end settings: sample rate 16000 must be a multiple of --feature-rate 7000"),
    ]
    for argv, pattern in cases:
        assert main(["-q", *argv]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("lstm-suite: error:"), err
        assert re.search(pattern, err[0]), (pattern, err[0])
        assert not (tmp_path / "m").exists() and not (tmp_path / "m.partial").exists()


# ----------------------------------------------------------------------------- tfds
def test_tfds_loader_with_mock_data():
    import tensorflow_datasets as tfds

    cfg = speech_data.DataConfig()
    with tfds.testing.mock_data(num_examples=5):
        ds, labels = speech_data.load_tfds("train", cfg)
        clips = list(ds.take(5).as_numpy_iterator())
    assert len(clips) == 5 and len(labels) >= 10
    for clip, label in clips:
        assert clip.shape == (cfg.clip_samples,) and clip.dtype == np.float32
        assert 0 <= label < len(labels)
        assert np.abs(clip).max() <= 1.0 + 1e-6
