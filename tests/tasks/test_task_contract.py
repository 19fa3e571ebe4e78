"""The contract every task keeps (same layers, same flags, same errors); one test per task.

- ``--help`` of every verb is fast, imports no TensorFlow, and shows every flag's default;
- the shared vocabulary of flags is there (``--out``, ``--model``, ``--runtime``, ...);
- ``train`` into an existing model directory refuses with one line and touches nothing;
- damaged model directories (bad ``config.json``, truncated ``model.keras``, damaged
  ``.tflite``) are one ``lstm-suite: error:`` line, exit 2.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import last_json, run_cli
from tasks.common import cli

ROOT = Path(__file__).resolve().parents[2]
TASKS = sorted(cli.TASK_MODULES)
LAYERS = ("config", "artifacts", "data", "model", "metrics", "train", "evaluate", "export", "cli")
# Which layer may import which: only downward (a module never imports one to its right).
RANK = {name: i for i, name in enumerate(LAYERS)}
SHARED_FLAGS = {
    "train": {"--out", "--overwrite", "--resume", "--data", "--units", "--batch-size", "--epochs",
              "--learning-rate", "--patience", "--seed", "--steps-per-epoch", "--progress", "--distribute"},
    "evaluate": {"--model", "--data", "--runtime", "--out", "--limit"},
    "export": {"--model", "--quantization", "--calibration-examples"},
    "predict": {"--model", "--runtime"},
}
# Flags a train run needs beyond the defaults to get past argument parsing.
REQUIRED_TRAIN_FLAGS = {"forecasting": ["--data", "statsmodels:co2"]}


def one_error_line(result):
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("lstm-suite: error: "), result.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("task", TASKS)
def test_layers_exist_and_import_only_downward(task):
    folder = ROOT / "tasks" / task
    for layer in LAYERS:
        assert (folder / f"{layer}.py").is_file(), f"tasks/{task}/{layer}.py missing"
    for layer in LAYERS:
        tree = ast.parse((folder / f"{layer}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(f"tasks.{task}."):
                target = node.module.split(".")[2]
            elif isinstance(node, ast.ImportFrom) and node.module == f"tasks.{task}":
                targets = [alias.name for alias in node.names]
                target = max(targets, key=lambda t: RANK.get(t, -1))
            else:
                continue
            if target in RANK:
                assert RANK[target] < RANK[layer] or target == layer, f"tasks/{task}/{layer}.py imports {target}"


@pytest.mark.parametrize("task", TASKS)
def test_help_is_fast_complete_and_has_no_tensorflow(task):
    code = f"""
import sys, time, io, contextlib, json
start = time.perf_counter()
from tasks.common import cli
parser = cli.build_parser(cli.load_task({task!r}))
report = {{}}
for verb in cli.VERBS:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            cli.main([{task!r}, verb, "--help"])
        except SystemExit as exit:
            assert exit.code == 0
    task_parser = parser._subparsers._group_actions[0].choices[{task!r}]
    verb_parser = task_parser._subparsers._group_actions[0].choices[verb]
    missing, flags = [], []
    for action in verb_parser._actions:
        if not action.option_strings or action.dest in ("help", "quiet", "verbose"):
            continue
        flags.extend(action.option_strings)
        if "(default:" not in (action.help or ""):
            missing.append(action.option_strings[0])
    report[verb] = {{"missing": missing, "flags": flags}}
report["seconds"] = time.perf_counter() - start
report["tensorflow"] = "tensorflow" in sys.modules or "keras" in sys.modules
print(json.dumps(report))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    report = last_json(out.stdout)
    assert not report["tensorflow"], "--help imported TensorFlow"
    assert report["seconds"] < 2.0, report["seconds"]
    for verb in cli.VERBS:
        assert report[verb]["missing"] == [], f"{task} {verb}: flags without a default in --help"
        assert SHARED_FLAGS[verb] <= set(report[verb]["flags"]), (verb, SHARED_FLAGS[verb] - set(report[verb]["flags"]))


@pytest.mark.parametrize("task", TASKS)
def test_flag_errors_are_one_line_before_tensorflow(task):
    line = one_error_line(run_cli(task, "evaluate", "--runtim", "tflite"))
    assert f"lstm-suite {task} evaluate --help" in line
    line = one_error_line(run_cli(task, "train", *REQUIRED_TRAIN_FLAGS.get(task, []), "--epochs", "0", "-q"))
    assert "--epochs: expected an integer >= 1, got 0" in line
    one_error_line(run_cli(task, "train", *REQUIRED_TRAIN_FLAGS.get(task, []), "--batch-size", "0"))
    one_error_line(run_cli(task, "train", *REQUIRED_TRAIN_FLAGS.get(task, []), "--units", "0"))


def fake_model_dir(path: Path, task: str, config: str | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(config if config is not None else json.dumps({"task": task}))
    (path / "model.keras").write_bytes(b"PK\x03\x04 truncated")
    return path


@pytest.mark.parametrize("task", TASKS)
def test_train_never_replaces_an_existing_model(task, tmp_path, capsys):
    out = fake_model_dir(tmp_path / "model", task)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    line = one_error_line(run_cli(task, "train", *REQUIRED_TRAIN_FLAGS.get(task, []), "--out", str(out), capsys=capsys))
    assert "--overwrite" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not (tmp_path / "model.partial").exists()


@pytest.mark.parametrize("task", TASKS)
def test_damaged_model_directories_are_one_line(task, tmp_path, capsys):
    def export(path):
        return one_error_line(run_cli(task, "export", "--model", str(path), capsys=capsys))

    assert "model.keras" in export(fake_model_dir(tmp_path / "truncated", task))
    assert "config.json" in export(fake_model_dir(tmp_path / "bad_json", task, config="{not json"))
    foreign = fake_model_dir(tmp_path / "foreign", task, config=json.dumps({"task": "someone-else"}))
    assert "config.json" in export(foreign)
    assert "no such model directory" in export(tmp_path / "nope")


def test_distribute_mirrored_on_a_tiny_training(tmp_path, capsys):
    """``--distribute mirrored`` through the CLI (one CPU device here; two logical CPUs: tests/lstm_core)."""
    import numpy as np

    path = tmp_path / "series.csv"
    values = 10 + np.sin(np.arange(160) * 2 * np.pi / 12)
    path.write_text("y\n" + "\n".join(f"{v:.4f}" for v in values) + "\n")
    out = tmp_path / "model"
    argv = ["-q", "forecasting", "train", "--data", str(path), "--horizon", "3", "--lookback", "12",
            "--units", "3", "--hidden", "0", "--ensemble", "1", "--epochs", "1", "--progress", "none",
            "--distribute", "mirrored", "--out", str(out)]
    assert cli.main(argv) == 0, capsys.readouterr().err[-2000:]
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["distribute"] == "mirrored"
    refused = run_cli(*argv[:-4], "--distribute", "multi-worker", "--out", str(tmp_path / "other"), capsys=capsys)
    assert "keras-team/keras#20585" in one_error_line(refused)
    assert not (tmp_path / "other").exists() and not (tmp_path / "other.partial").exists()
