"""Shipped-data defaults resolve from the package; the suite's install check reads the extras right."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.common import install, samples
from tasks.common.config import _format_default


def shipped_defaults() -> dict[str, str]:
    from tasks.sentiment import config as sentiment
    from tasks.speech_commands import config as speech
    from tasks.translation import config as translation

    return {
        "sentiment/train.tsv": sentiment.DataConfig().data,
        "sentiment/dev.tsv": sentiment.EVALUATE.data,
        "sentiment/negation.tsv": sentiment.BaselineConfig().negation,
        "speech_commands/digits": speech.DataConfig().data,
        "translation/eng-fra.train.tsv": translation.DataConfig().data,
    }


@pytest.mark.parametrize("name", sorted(shipped_defaults()))
def test_defaults_are_absolute_paths_into_the_package(name):
    path = Path(shipped_defaults()[name])
    assert path.is_absolute() and path.exists(), path  # any current directory: nothing relative to it
    assert path == Path(samples.__file__).parents[1] / "samples" / name
    assert _format_default(str(path)) == f"built-in sample {name}"


def test_other_values_are_shown_unchanged():
    assert _format_default("data/mine.tsv") == "data/mine.tsv" and samples.describe("tfds:imdb") == "tfds:imdb"


def test_extra_requirements_follow_self_references():
    requires = [
        "tensorflow<2.22,>=2.21",
        'lstm-suite[tflm]; extra == "suite"',
        'pandas>=2.0; extra == "suite"',
        'scikit-learn>=1.3; extra == "suite" and python_version >= "3.9"',
        'lstm-suite[suite]; extra == "test"',
        'pytest>=8; extra == "test"',
        'tflite-micro>=0.dev0; extra == "tflm"',
    ]
    assert install.extra_requirements("suite", requires) == ["pandas", "scikit-learn", "tflite-micro"]
    assert install.extra_requirements("test", requires) == ["pytest", "pandas", "scikit-learn", "tflite-micro"]
    assert install.extra_requirements("tflm", requires) == ["tflite-micro"]


def test_paths_recorded_before_the_move_find_the_samples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = Path(samples.samples_root())
    assert samples.moved_sample("data/sentiment/train.tsv") == str(root / "sentiment" / "train.tsv")
    checkout = Path(samples.__file__).parents[2]  # a repository checkout: its own tasks/samples
    assert samples.moved_sample(str(checkout / "data" / "speech_commands" / "digits")) == str(
        checkout / "tasks" / "samples" / "speech_commands" / "digits")
    for unchanged in ("../shared/data/translation/eng-fra.train.tsv", "data/sentiment/mine.tsv",
                      str(tmp_path / "data" / "sentiment" / "train.tsv"), "tfds:imdb_reviews", "statsmodels:co2"):
        assert samples.moved_sample(unchanged) == unchanged
    (tmp_path / "data" / "sentiment").mkdir(parents=True)
    (tmp_path / "data" / "sentiment" / "train.tsv").write_text("text\tlabel\n")
    assert samples.moved_sample("data/sentiment/train.tsv") == "data/sentiment/train.tsv"  # it exists: the user's


def test_model_directory_written_before_the_move_reads_the_samples(tmp_path, monkeypatch):
    import json

    from tasks.sentiment.artifacts import SentimentModelDir

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps(
        {"task": "sentiment", "data": {"data": "data/sentiment/train.tsv", "val": "data/sentiment/dev.tsv"}}))
    (tmp_path / "m" / "model.keras").write_bytes(b"")
    directory = SentimentModelDir.open(tmp_path / "m")
    assert Path(directory.data.data) == Path(samples.sample_path("sentiment/train.tsv"))
    assert Path(directory.data.val) == Path(samples.sample_path("sentiment/dev.tsv"))
