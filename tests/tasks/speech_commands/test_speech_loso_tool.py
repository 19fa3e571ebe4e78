"""tools/speech_loso.py: the screening tool behind the speech README's variant table."""

import json

import numpy as np
import pytest

from helpers import last_json, load_tool

loso = load_tool("speech_loso")


def test_held_out_speaker_run_prints_lstm_and_baselines(tiny_data, capsys):
    loso.main(["--data", str(tiny_data), "--speakers", "alice", "--epochs", "2", "--baselines"])
    result = last_json(capsys.readouterr().out)
    assert set(result) == {"args", "lstm", "ridge", "1-nn"}
    for name in ("lstm", "ridge", "1-nn"):
        assert list(result[name]["speakers"]) == ["alice"]
        assert 0.0 <= result[name]["mean"] <= 1.0
    # three clearly different chirps: the aligned-feature baselines must separate them
    assert result["ridge"]["mean"] >= 2 / 3 and result["1-nn"]["mean"] >= 2 / 3


@pytest.mark.parametrize("norm", loso.NORMS)
def test_normalisations_keep_shape_and_causal_ones_ignore_the_future(norm):
    x = np.random.default_rng(0).standard_normal((2, 10, 4)).astype(np.float32)
    out = np.asarray(loso.normalise(x, norm, 0.8))
    assert out.shape == x.shape
    future = x.copy()
    future[:, 6:] += 3.0
    changed = np.asarray(loso.normalise(future, norm, 0.8))
    if norm.startswith("causal") or norm in ("global", "frame"):
        np.testing.assert_allclose(changed[:, :6], out[:, :6], atol=1e-5)
    else:
        assert not np.allclose(changed[:, :6], out[:, :6])


def test_synthetic_voices_train_every_fold_but_are_never_held_out(tiny_data, capsys):
    loso.main(["--data", str(tiny_data), "--epochs", "0", "--baselines", "--synthetic-voices", "2"])
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["args"]["synthetic_voices"] == 2
    # held out in turn: the real speakers only (tts-... voices always train)
    assert sorted(result["ridge"]["speakers"]) == sorted({p.name.split("_")[0] for p in tiny_data.rglob("*.wav")})
