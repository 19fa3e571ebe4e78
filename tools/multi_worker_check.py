"""Does Keras 3 ``fit`` with ``lstm_core.LSTM`` work under MultiWorkerMirroredStrategy here?

Starts two local workers (TF_CONFIG on localhost ports, one process each), trains a tiny model
for two epochs and prints what each worker reported. ``lstm-suite ... --distribute multi-worker``
is refused while this fails (measured 2026-12-01, TF 2.21 / Keras 3.15: both workers fail in
``fit`` with "Attempt to convert a value (PerReplica ...)", keras-team/keras#20585).

    python tools/multi_worker_check.py
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

WORKER = r"""
import json, sys
import numpy as np
import tensorflow as tf
import keras
from lstm_core import LSTM
from tasks.common.config import TrainConfig
from tasks.common.training import distribution_scope

keras.utils.set_random_seed(1)
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 7, 3)).astype("float32")
y = (x.sum((1, 2)) > 0).astype("float32")
with distribution_scope(TrainConfig(distribute="multi-worker"), allow_multi_worker=True) as strategy:
    inputs = keras.Input((7, 3))
    model = keras.Model(inputs, keras.layers.Dense(1)(LSTM(5)(inputs)))
    model.compile(keras.optimizers.SGD(0.1), "mse")
history = model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), epochs=2, verbose=0)
print("RESULT " + json.dumps({"replicas": strategy.num_replicas_in_sync, "loss": history.history["loss"]}))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def main() -> int:
    ports = [free_port(), free_port()]
    workers = []
    for index in range(2):
        config = {"cluster": {"worker": [f"localhost:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(config), "TF_CPP_MIN_LOG_LEVEL": "3"}
        workers.append(subprocess.Popen([sys.executable, "-c", WORKER], env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    ok = True
    for index, worker in enumerate(workers):
        out, _ = worker.communicate(timeout=600)
        result = [line for line in out.splitlines() if line.startswith("RESULT ")]
        errors = [line for line in out.splitlines() if "Error" in line][-1:]
        print(f"worker {index}: exit {worker.returncode}: {result[0] if result else errors}")
        ok &= worker.returncode == 0 and bool(result)
    print("multi-worker fit works" if ok else "multi-worker fit FAILS")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
