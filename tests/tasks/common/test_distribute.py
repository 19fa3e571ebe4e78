"""tf.distribute with lstm_core.LSTM: MirroredStrategy over two logical CPUs (as Keras' own tests do)."""

import json
import subprocess
import sys

import pytest

from helpers import last_json
from tasks.common.config import TrainConfig
from tasks.common.errors import UserError
from tasks.common.training import distribution_scope

MIRRORED = r"""
import json
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from lstm_core import LSTM
from tasks.common.config import TrainConfig
from tasks.common.training import distribution_scope

def train(mode):
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 7, 3)).astype("float32")
    y = (x.sum((1, 2)) > 0).astype("float32")
    with distribution_scope(TrainConfig(distribute=mode)) as strategy:
        inputs = keras.Input((7, 3))
        model = keras.Model(inputs, keras.layers.Dense(1)(LSTM(5)(inputs)))
        model.compile(keras.optimizers.SGD(0.1), "mse")
        kinds = sorted({type(v.value).__name__ for v in model.layers[1].trainable_variables})
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), epochs=2, verbose=0)
    return [w.numpy() for w in model.weights], strategy.num_replicas_in_sync if strategy else 1, kinds

single, _, _ = train("none")
mirrored, replicas, kinds = train("mirrored")
diff = max(float(np.abs(a - b).max()) for a, b in zip(single, mirrored))
print(json.dumps({"replicas": replicas, "kinds": kinds, "max_diff": diff}))
"""


def test_mirrored_training_matches_single_device():
    out = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = last_json(out.stdout)
    assert result["replicas"] == 2
    assert result["kinds"] == ["MirroredVariable"], result
    assert result["max_diff"] < 1e-5, result


GOOD = {"cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}, "task": {"type": "worker", "index": 1}}


@pytest.mark.parametrize("text, expected", [
    (None, r"multi-worker: TF_CONFIG is not set"),
    ("{cluster:", r"TF_CONFIG: not valid JSON"),
    ('["worker"]', r"TF_CONFIG: expected \{\"cluster\""),
    (json.dumps({**GOOD, "task": {"type": "worker", "index": 2}}), r"task.index 2 is out of range: .* 0..1"),
    (json.dumps({**GOOD, "task": {"type": "ps", "index": 0}}), r"task.type 'ps' is not a job"),
    (json.dumps({**GOOD, "cluster": {"worker": ["nohost"]}}), r"cluster.worker: expected a non-empty list of 'host:port'"),
    (json.dumps({**GOOD, "cluster": {"worker": ["a:1"], "ps": ["b:2"]}}), r"jobs \['ps'\] are not supported"),
])
def test_bad_tf_config_is_one_clear_error(text, expected):
    from tasks.common.multi_worker import parse_tf_config

    with pytest.raises(UserError, match=expected):
        parse_tf_config(text)


def test_tf_config_positions_a_chief_first():
    from tasks.common.multi_worker import parse_tf_config

    spec = parse_tf_config(json.dumps({"cluster": {"chief": ["c:1"], "worker": ["w:1", "w:2"]},
                                       "task": {"type": "worker", "index": 1}}))
    assert (spec["id"], spec["size"], spec["address"]) == (2, 3, "w:2")


def test_a_port_in_use_is_refused():
    import socket

    from tasks.common.multi_worker import check_port_free

    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        with pytest.raises(UserError, match=r"port \d+ of this worker .* is already in use"):
            check_port_free(f"127.0.0.1:{busy.getsockname()[1]}")


def test_settings_hash_ignores_where_a_node_writes_but_not_what_it_trains():
    from tasks.common.config import OutputConfig
    from tasks.common.multi_worker import settings_hash
    from tasks.common.training import _comparable

    base = {"train": TrainConfig(), "output": OutputConfig(out="a")}
    same = {"train": TrainConfig(progress="none", cluster_timeout=5), "output": OutputConfig(out="b")}
    other = {"train": TrainConfig(learning_rate=0.5), "output": OutputConfig(out="a")}
    assert settings_hash(_comparable(base)) == settings_hash(_comparable(same))
    assert settings_hash(_comparable(base)) != settings_hash(_comparable(other))


def test_multi_worker_without_tf_config_is_one_line_through_the_cli(tmp_path, capsys, monkeypatch):
    from tasks.common import cli

    monkeypatch.delenv("TF_CONFIG", raising=False)
    code = cli.main(["forecasting", "train", "--data", "statsmodels:co2", "--distribute", "multi-worker",
                     "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("lstm-suite: error: --distribute multi-worker: TF_CONFIG")
    assert not (tmp_path / "m").exists()


def test_no_strategy_by_default():
    with distribution_scope(TrainConfig()) as strategy:
        assert strategy is None


def test_watchdog_kills_only_a_wait_that_outlasts_its_timeout():
    """The watcher process ends a stuck wait with one line (TensorFlow would hang holding the GIL)."""
    code = ("import time\nfrom tasks.common.multi_worker import Watchdog\nw = Watchdog(1.0)\n"
            "with w.armed('quick'):\n    time.sleep(0.1)\ntime.sleep(1.5)\nprint('alive', flush=True)\n"
            "with w.armed('stuck waiting'):\n    time.sleep(30)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == -9 and out.stdout.strip() == "alive"
    assert out.stderr.strip().splitlines()[-1] == "lstm-suite: error: stuck waiting"
