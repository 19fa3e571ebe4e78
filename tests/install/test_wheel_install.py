"""The suite installed from a wheel runs from any directory on its built-in samples (issue 22, item 4).

A wheel is built from a copy of the package sources, installed with ``--no-deps`` into a fresh virtual
environment that sees the system's TensorFlow & co. (``--system-site-packages``), and the console
script runs ``--help``, then ``train`` → ``export`` → ``evaluate`` of speech_commands on its default data
from an empty directory: nothing can come from the repository or from its editable install.
A second, bare environment (the wheel and nothing else) shows the console script of an install
without the suite's dependencies saying in one line what to install.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_SOURCES = ("pyproject.toml", "README.md", "lstm_core", "tasks")
TINY_TRAIN = ["--epochs", "1", "--steps-per-epoch", "2", "--units", "8", "--num-mel-bins", "16",
              "--synthetic-voices", "0", "--progress", "none"]


def run(command, cwd, timeout=300, **kwargs):
    """``command`` with no PYTHONPATH (the worktree must not leak in); fails the test with its stderr."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def ok(result) -> str:
    assert result.returncode == 0, (result.args, result.stderr[-3000:])
    return result.stdout


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def build_wheel(tmp: Path) -> Path:
    """``lstm_suite-*.whl`` built in ``tmp`` from a copy of the sources (building in the checkout leaves build/)."""
    source = tmp / "src"
    for name in PACKAGE_SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.partial"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(path, source / name)
    ok(run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
            source, "-w", tmp / "dist"], cwd=tmp))
    (built,) = (tmp / "dist").glob("lstm_suite-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def make_venv(path: Path, wheel: Path, *, system_site_packages: bool) -> Path:
    """A new virtual environment at ``path`` with ``wheel`` installed (``--no-deps``); returns its bin/."""
    flags = ["--system-site-packages"] if system_site_packages else []
    ok(run([sys.executable, "-m", "venv", "--without-pip", *flags, path], cwd=path.parent))
    python = path / "bin" / "python"
    ok(run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
           cwd=path.parent))
    return path / "bin"


def site_packages(bin_dir: Path) -> Path:
    out = ok(run([bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                 cwd=bin_dir))
    return Path(out.strip())


def test_wheel_runs_from_an_empty_directory(wheel, tmp_path):
    bin_dir = make_venv(tmp_path / "venv", wheel, system_site_packages=True)
    installed = site_packages(bin_dir)
    cwd = tmp_path / "empty"
    cwd.mkdir()
    where = ok(run([bin_dir / "python", "-c", "import json, tasks, lstm_core; "
                    "print(json.dumps([tasks.__file__, lstm_core.__file__]))"], cwd=cwd))
    for module_file in json.loads(where):
        assert Path(module_file).is_relative_to(installed), (module_file, installed)  # not the repo's, not -e's
    samples = installed / "tasks" / "samples"
    assert (samples / "ATTRIBUTION.md").is_file()

    lstm_suite = bin_dir / "lstm-suite"
    assert "train, evaluate, export" in ok(run([lstm_suite, "--help"], cwd=cwd)).lower().replace("\n", " ")
    help_text = " ".join(ok(run([lstm_suite, "speech_commands", "train", "--help"], cwd=cwd)).split())
    assert "(default: built-in sample speech_commands/digits)" in help_text

    assert "model written to m" in ok(run([lstm_suite, "-q", "speech_commands", "train", "--out", "m", *TINY_TRAIN],
                                          cwd=cwd))
    report = json.loads((cwd / "m" / "train_report.json").read_text())  # train prints a summary, not the JSON
    assert report["epochs_run"] == 1
    split = json.loads((cwd / "m" / "split.json").read_text())
    assert Path(split["data"]) == samples / "speech_commands" / "digits"

    printed = ok(run([lstm_suite, "-q", "speech_commands", "export", "--model", "m", "--quantization", "int8",
                      "--calibration-examples", "8", "--check-examples", "4"], cwd=cwd))
    assert "model_int8.tflite" in printed and "(full report: export_report.json)" in printed
    export = json.loads((cwd / "m" / "export" / "export_report.json").read_text())
    assert (cwd / "m" / "export" / "model_int8.tflite").is_file() and "tflm" in export["check_accuracy"]

    result = last_json(ok(run([lstm_suite, "-q", "speech_commands", "evaluate", "--model", "m", "--runtime",
                               "tflite-int8"], cwd=cwd)))
    held_out = [p for p in (samples / "speech_commands" / "digits").rglob("*.wav")
                if p.name.split("_nohash_")[0] in report["speakers"]["testing"]]
    assert result["runtime"] == "tflite-int8" and result["examples"] == len(held_out) > 0
    assert result["data"].startswith(str(samples / "speech_commands" / "digits"))
    assert {p.name for p in cwd.iterdir()} == {"m"}  # nothing else written where it ran, no lock file left


def test_console_script_without_the_suite_says_what_to_install(wheel, tmp_path):
    bin_dir = make_venv(tmp_path / "bare", wheel, system_site_packages=False)
    for argv in (["--help"], ["sentiment", "evaluate"]):
        result = run([bin_dir / "lstm-suite", *argv], cwd=tmp_path)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
        assert lines[0].startswith("lstm-suite: error: ") and "pip install 'lstm-suite[suite]'" in lines[0]
