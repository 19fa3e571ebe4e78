"""The issue's floor on the real data: default run, BLEU >= 25 / chrF >= 45, LiteRT within 1 BLEU.

Slow (the full default training, ~10-20 min on 2 idle cores): ``pytest -m slow tests/tasks/translation``.
"""

from pathlib import Path

import pytest

from tasks.common.cli import main
from helpers import last_json

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "translation"


@pytest.mark.slow
def test_default_run_meets_floor(tmp_path, capsys):
    train, dev = DATA / "eng-fra.train.tsv", DATA / "eng-fra.dev.tsv"
    if not train.is_file():
        pytest.skip(f"{train} not available")
    out = tmp_path / "translation"
    assert main(["translation", "train", "--data", str(train), "--val", str(dev), "--out", str(out)]) == 0
    assert main(["translation", "export", "--model", str(out), "--check-sentences", "0"]) == 0
    capsys.readouterr()
    results = {}
    for runtime in ("keras", "tflite", "tflite-int8", "tflm"):
        assert main(["translation", "evaluate", "--model", str(out), "--data", str(dev), "--runtime", runtime]) == 0
        results[runtime] = last_json(capsys.readouterr().out)
    assert results["keras"]["bleu"] >= 25 and results["keras"]["chrf"] >= 45
    assert abs(results["tflite"]["bleu"] - results["keras"]["bleu"]) <= 1.0
    assert abs(results["tflm"]["bleu"] - results["tflite-int8"]["bleu"]) <= 1.0
