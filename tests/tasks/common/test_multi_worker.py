"""``--distribute multi-worker``: 2 loopback workers (tools/local_cluster.py), bounded by timeouts.

Each test starts real worker processes: MultiWorkerMirroredStrategy must be created before
TensorFlow runs anything, and a process joins one cluster only.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import load_tool

cluster_tool = load_tool("local_cluster")
ROOT = Path(__file__).resolve().parents[3]

PROGRAM = r"""
import json, sys
from pathlib import Path
import numpy as np
from tasks.common.config import OutputConfig, TrainConfig
from tasks.common.training import distribution_scope, fit, join_for_training, is_chief


def train_small(mode, out):
    config = TrainConfig(distribute=mode, epochs=3, patience=5, monitor="loss", histogram_freq=0, progress="none",
                         cluster_timeout=60)
    join_for_training(config, OutputConfig(out=str(out / "model")), {"train": config})
    out = out / ("chief" if is_chief() else "worker")
    out.mkdir(parents=True)
    import keras, tensorflow as tf
    from lstm_core import LSTM
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 7, 3)).astype("float32")
    y = (x.sum((1, 2)) > 0).astype("float32")
    with distribution_scope(config):
        inputs = keras.Input((7, 3))
        model = keras.Model(inputs, keras.layers.Dense(1)(LSTM(5)(inputs)))
        model.compile(keras.optimizers.SGD(0.1), "mse", metrics=["mae"])
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    history = fit(model, data, data.take(2), workdir=out, config=config)
    np.save(out / "weights.npy", np.concatenate([w.numpy().ravel() for w in model.weights]))
    return {"chief": is_chief(), "loss": history.history["loss"]}


if __name__ == "__main__":
    print("RESULT " + json.dumps(train_small(sys.argv[1], Path(sys.argv[2]))))
"""

TIMEOUT = 240


def test_two_workers_train_the_same_weights_as_one_process(tmp_path, monkeypatch):
    """Same global batch, SGD, no dropout: both workers end equal, and equal to one process within 1e-5.

    ``LSTM_CORE_KERNEL=native``: the LSTM runs in the native kernel (and its registered gradient)
    inside every replica, or the run fails. The one-process run is this test's own process."""
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    # the program runs from tmp_path: the checkout must be importable without an install
    native = {"LSTM_CORE_KERNEL": "native", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    workers = cluster_tool.start_workers([sys.executable, str(script), "multi-worker", str(tmp_path / "w")], 2,
                                         env=native, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    monkeypatch.setenv("LSTM_CORE_KERNEL", "native")
    program = {"__name__": "program"}
    exec(compile(PROGRAM, str(script), "exec"), program)
    single = program["train_small"]("none", tmp_path / "one")
    results = [w.communicate(timeout=TIMEOUT) + (w.returncode,) for w in workers]
    for out, err, code in results:
        assert code == 0, err[-3000:]
    reports = [json.loads(out.strip().splitlines()[-1][len("RESULT "):]) for out, _, _ in results]
    assert [r["chief"] for r in reports] == [True, False]
    assert reports[0]["loss"] == reports[1]["loss"]
    one = np.load(tmp_path / "one" / "chief" / "weights.npy")
    chief = np.load(tmp_path / "w" / "chief" / "weights.npy")
    worker = np.load(tmp_path / "w" / "worker" / "weights.npy")
    np.testing.assert_array_equal(chief, worker)
    assert np.abs(chief - one).max() < 1e-5
    np.testing.assert_allclose(single["loss"], reports[0]["loss"], rtol=1e-5)


def _series(path, rows=1200):
    values = 10 + np.sin(np.arange(rows) * 2 * np.pi / 12) + 0.1 * np.random.default_rng(0).standard_normal(rows)
    path.write_text("y\n" + "\n".join(f"{v:.4f}" for v in values) + "\n")
    return path


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("lstm-suite: error:")]


@pytest.mark.slow  # ~70 s: two clusters of two worker processes, one killed mid-run
def test_cli_two_workers_survive_a_killed_worker_and_resume(tmp_path, capsys):
    """forecasting on 2 local workers: SIGKILL worker 1 after a checkpoint, the chief stops with one line
    within --cluster-timeout, the same commands resume; the model directory evaluates and exports."""
    from tasks.common import cli

    out = tmp_path / "model"
    command = [sys.executable, "-m", "tasks.common.cli", "-q", "forecasting", "train",
               "--data", str(_series(tmp_path / "series.csv", 300)), "--horizon", "3", "--lookback", "12",
               "--units", "3", "--hidden", "0", "--ensemble", "1", "--batch-size", "16", "--epochs", "8",
               "--patience", "9", "--progress", "none", "--distribute", "multi-worker", "--cluster-timeout", "20",
               "--out", str(out)]
    ports = cluster_tool.free_ports(2)
    scratch = {"TMPDIR": str(tmp_path)}  # worker 1's scratch model directory
    workers = cluster_tool.start_workers(command, 2, ports=ports, env=scratch, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True)
    metadata = out.with_name("model.partial") / "backup" / "training_metadata.json"
    deadline = time.monotonic() + TIMEOUT
    while not metadata.exists() and workers[0].poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # kill as soon as the first checkpoint exists, long before epoch 8
    workers[1].kill()
    killed_at = time.monotonic()
    _, err = workers[0].communicate(timeout=TIMEOUT)
    assert workers[0].returncode == 1, err[-3000:]
    assert time.monotonic() - killed_at < 20 + 15
    assert len(_error_lines(err)) == 1 and "rerun the same command" in _error_lines(err)[0], err[-3000:]
    workers[1].communicate(timeout=TIMEOUT)

    killed_scratch = set(tmp_path.glob("lstm-suite-worker*"))  # SIGKILL leaves no time to clean up
    # --cluster-timeout is local (not compared between workers or runs): the rerun may wait longer
    patient = command[:command.index("--cluster-timeout") + 1] + ["120"] + command[command.index("--out"):]
    workers = cluster_tool.start_workers(patient, 2, ports=ports, env=scratch, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True)
    results = [w.communicate(timeout=TIMEOUT) + (w.returncode,) for w in workers]
    for _, err, code in results:
        assert code == 0, err[-3000:]
    report = json.loads((out / "train_report.json").read_text())
    assert report["epochs_run"] == 8
    assert sorted(json.loads((out / "history.json").read_text()), key=int) == [str(e) for e in range(1, 9)]
    assert json.loads((out / "config.json").read_text())["train"]["distribute"] == "multi-worker"
    assert set(tmp_path.glob("lstm-suite-worker*")) == killed_scratch  # the rerun's scratch is gone
    assert cli.main(["-q", "forecasting", "evaluate", "--model", str(out)]) == 0
    assert "mase" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert cli.main(["-q", "forecasting", "export", "--model", str(out), "--quantization", "float"]) == 0


def test_a_worker_alone_stops_with_one_line_before_the_cluster_timeout(tmp_path):
    """Worker 1 of 2 is never started: worker 0 is stopped (SIGKILL: TensorFlow holds the GIL while it waits)
    with one line within --cluster-timeout (+ start-up)."""
    command = [sys.executable, "-m", "tasks.common.cli", "-q", "forecasting", "train", "--data",
               str(_series(tmp_path / "series.csv", 200)), "--distribute", "multi-worker", "--cluster-timeout", "5",
               "--out", str(tmp_path / "model")]
    started = time.monotonic()
    (worker,) = cluster_tool.start_workers(command, 2, only=[0], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           text=True)
    _, err = worker.communicate(timeout=TIMEOUT)
    assert worker.returncode == -9, err[-3000:]
    lines = _error_lines(err)
    assert len(lines) == 1 and "could not reach the other workers" in lines[0] and "5 s" in lines[0], err[-3000:]
    assert time.monotonic() - started < TIMEOUT
    assert not (tmp_path / "model").exists()


def _task_argv(task: str, tmp_path):
    """Tiny training flags per task (as in each task's end-to-end test)."""
    sys.path.insert(0, str(ROOT / "tests" / "tasks" / task))
    if task == "sentiment":
        lines = (ROOT / "tasks" / "samples" / "sentiment" / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
        (tmp_path / "train.tsv").write_text("".join(lines[:241]), encoding="utf-8")
        return ["--data", str(tmp_path / "train.tsv"), "--epochs", "2", "--vocab-size", "200", "--embedding-dim",
                "16", "--units", "8", "--batch-size", "16", "--adversarial-epsilon", "0.5", "--members", "2"]
    if task == "translation":
        from translation_toy import tiny_tsv

        train, dev = tiny_tsv(tmp_path)
        return ["--data", str(train), "--val", str(dev), "--vocab-size", "40", "--embedding-dim", "16", "--units",
                "16", "--decoder-units", "32", "--epochs", "3", "--batch-size", "16", "--learning-rate", "0.02",
                "--warmup-steps", "1", "--bleu-every", "1", "--dropout", "0"]
    from speech_toy import make_dataset

    return ["--data", str(make_dataset(tmp_path / "speech")), "--test-speakers", "dave", "--epochs", "2", "--units",
            "8", "--num-mel-bins", "16", "--batch-size", "8", "--synthetic-voices", "0"]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["sentiment", "translation", "speech_commands"])
def test_cli_every_task_trains_on_two_workers(task, tmp_path, capsys):
    """The other tasks through the CLI on 2 local workers: model directory complete, evaluate works."""
    from tasks.common import cli

    out = tmp_path / "model"
    command = [sys.executable, "-m", "tasks.common.cli", "-q", task, "train", *_task_argv(task, tmp_path),
               "--progress", "none", "--distribute", "multi-worker", "--cluster-timeout", "120", "--out", str(out)]
    workers = cluster_tool.start_workers(command, 2, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                         env={"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}:{ROOT / 'tests/tasks/' / task}"})
    for _, err, code in [w.communicate(timeout=900) + (w.returncode,) for w in workers]:
        assert code == 0, err[-3000:]
    assert (out / "train_report.json").is_file() and (out / "model.keras").is_file()
    assert json.loads((out / "config.json").read_text())["train"]["distribute"] == "multi-worker"
    assert cli.main(["-q", task, "evaluate", "--model", str(out), *(["--limit", "5"] if task == "translation" else [])]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.slow
def test_workers_with_different_settings_all_stop_with_one_line(tmp_path):
    """A settings hash is compared at start: worker 1 has another --learning-rate, both exit 2."""
    base = [sys.executable, "-m", "tasks.common.cli", "-q", "forecasting", "train", "--data",
            str(_series(tmp_path / "series.csv", 200)), "--distribute", "multi-worker", "--cluster-timeout", "120",
            "--out", str(tmp_path / "model")]
    ports = cluster_tool.free_ports(2)
    workers = [cluster_tool.start_workers(base + extra, 2, ports=ports, only=[index], stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True)[0]
               for index, extra in ((0, []), (1, ["--learning-rate", "0.5"]))]
    for worker in workers:
        _, err = worker.communicate(timeout=TIMEOUT)
        assert worker.returncode == 2, err[-3000:]
        lines = _error_lines(err)
        assert len(lines) == 1 and "settings differ between workers (1 of 2" in lines[0], err[-3000:]
    assert not (tmp_path / "model").exists()
