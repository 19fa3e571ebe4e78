"""tf.distribute with lstm_core.LSTM: MirroredStrategy over two logical CPUs (as Keras' own tests do)."""

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


def test_multi_worker_is_refused_naming_the_upstream_issue():
    with pytest.raises(UserError, match=r"multi-worker: .*keras-team/keras#20585.*--distribute mirrored"):
        with distribution_scope(TrainConfig(distribute="multi-worker")):
            pass


def test_no_strategy_by_default():
    with distribution_scope(TrainConfig()) as strategy:
        assert strategy is None
