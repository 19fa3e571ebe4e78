"""Training on several machines: ``MultiWorkerMirroredStrategy`` from ``TF_CONFIG`` and a loop around
Keras' broken reduction.

Keras 3's ``Model.fit`` fails under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585): its
step reduces every logged scalar with ``strategy.reduce(..., axis=0)``. :func:`fit_distributed`
runs the model's own ``train_step``/``test_step`` (so custom steps, multi-output heads and the
native LSTM kernel work as in ``fit``) per replica with ``strategy.run``; the Keras optimizer
all-reduces the gradients in replica context; logs are reduced with ``axis=None``. Keras callbacks
(early stopping, best-epoch restore, checkpoints, TensorBoard, progress) are driven as ``fit``
drives them, and the chief's decisions (stop, resume epoch, restored weights) are broadcast so
every worker runs exactly the same steps.

Every worker builds the same ``tf.data`` pipeline (deterministic, seeded) and keeps its slice of
each global batch (:func:`distribute`), so the global batch and the number of steps are those of
one machine. A worker that waits on the others longer than ``--cluster-timeout`` (a peer never
started, died, or is unreachable) stops with one line; TensorFlow itself would wait forever.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from tasks.common.errors import UserError

__all__ = ["Cluster", "cluster", "fit_distributed", "join_cluster", "parse_tf_config", "settings_hash"]

log = logging.getLogger(__name__)

THREADS_ENV = "LSTM_SUITE_CPU_THREADS"  # set by tools/local_cluster.py: one CPU thread per worker
LOST_EXIT = 1  # TensorFlow reported a lost peer (the rerun resumes); a watchdog kill is SIGKILL; bad input exits 2


def parse_tf_config(text: str | None) -> dict:
    """``TF_CONFIG`` checked: ``{"cluster": {"worker": ["host:port", ...]}, "task": {"type", "index"}}``.

    A ``chief`` job (one address) is allowed as Kubernetes TFJob writes it; it is then the chief.

    Returns:
        ``{"cluster": ..., "type": ..., "index": ..., "id": position among all workers, "size": ...}``.
    """
    if text is None or not text.strip():
        raise UserError("--distribute multi-worker: TF_CONFIG is not set; set it on every worker (README "
                        "'Training on several machines') or start local workers with tools/local_cluster.py")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"TF_CONFIG: not valid JSON ({err.msg} at character {err.pos})") from None
    expected = 'expected {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": N}}'
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) \
            or not isinstance(config.get("task"), dict):
        raise UserError(f"TF_CONFIG: {expected}")
    jobs = config["cluster"]
    unknown = sorted(set(jobs) - {"chief", "worker"})
    if unknown:
        raise UserError(f"TF_CONFIG: cluster jobs {unknown} are not supported (only chief and worker)")
    for job, addresses in jobs.items():
        if not isinstance(addresses, list) or not addresses or not all(_is_address(a) for a in addresses):
            raise UserError(f"TF_CONFIG: cluster.{job}: expected a non-empty list of 'host:port' strings")
    if len(jobs.get("chief", [])) > 1:
        raise UserError("TF_CONFIG: cluster.chief: expected one address")
    task_type, index = config["task"].get("type"), config["task"].get("index")
    if task_type not in jobs:
        raise UserError(f"TF_CONFIG: task.type {task_type!r} is not a job of the cluster ({sorted(jobs)})")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(jobs[task_type]):
        raise UserError(f"TF_CONFIG: task.index {index!r} is out of range: cluster.{task_type} has "
                        f"{len(jobs[task_type])} address(es), so 0..{len(jobs[task_type]) - 1}")
    chiefs = len(jobs.get("chief", []))
    position = index if task_type == "chief" else chiefs + index
    return {"cluster": jobs, "type": task_type, "index": index, "id": position,
            "size": chiefs + len(jobs.get("worker", [])), "address": jobs[task_type][index]}


def _is_address(value) -> bool:
    if not isinstance(value, str) or ":" not in value:
        return False
    host, _, port = value.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def check_port_free(address: str) -> None:
    """This worker's port must be free: TensorFlow's server would otherwise fail deep inside gRPC."""
    port = int(address.rpartition(":")[2])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC: a port in TIME_WAIT is free
        try:
            sock.bind(("", port))
        except OSError:
            raise UserError(f"TF_CONFIG: port {port} of this worker ({address}) is already in use; "
                            "stop what uses it or give this worker another port on every node") from None


_GUARD = r"""
import os, select, signal, sys, time
parent, fd, buffer, armed = int(sys.argv[1]), sys.stdin.fileno(), b"", None
while True:
    wait = None if armed is None else max(0.0, armed[0] - time.monotonic())
    if not select.select([fd], [], [], wait)[0]:
        sys.stderr.write(armed[1] + "\n")
        sys.stderr.flush()
        os.kill(parent, signal.SIGKILL)
        break
    chunk = os.read(fd, 65536)
    if not chunk:
        break
    buffer += chunk
    while b"\n" in buffer:
        line, buffer = buffer.split(b"\n", 1)
        if line.startswith(b"A "):
            seconds, message = line[2:].decode().split(" ", 1)
            armed = (time.monotonic() + float(seconds), message)
        else:
            armed = None
"""


class Watchdog:
    """Kills this process with one line when a wait on the other workers outlasts ``timeout`` seconds.

    TensorFlow waits forever for a peer that never comes, holding the GIL (so no thread of this
    process could act, and it ignores SIGTERM): a tiny watcher process, told over a pipe when a
    wait starts and ends, does it. Only waits on other workers are armed; slow local work never
    trips it. The watcher exits when this process does (its pipe closes).
    """

    def __init__(self, timeout: float):
        import subprocess

        self.timeout = timeout
        self._stack = []
        self._lock = threading.Lock()
        from tasks.common.quiet import real_stderr_fd

        # its line goes straight to the user's stderr: this process is killed before its filter could forward it
        self._guard = subprocess.Popen([sys.executable, "-S", "-c", _GUARD, str(os.getpid())], stdin=subprocess.PIPE,
                                       stderr=real_stderr_fd())

    def _send(self, line: str) -> None:
        self._guard.stdin.write(line.encode() + b"\n")
        self._guard.stdin.flush()

    @contextlib.contextmanager
    def armed(self, message: str):
        """Killed with ``lstm-suite: error: <message>`` if the block runs longer than the timeout."""
        text = " ".join(f"lstm-suite: error: {message}".split())
        with self._lock:
            self._stack.append(text)
            self._send(f"A {self.timeout} {text}")
        try:
            yield
        finally:
            with self._lock:
                self._stack.pop()
                self._send(f"A {self.timeout} {self._stack[-1]}" if self._stack else "D")


@dataclasses.dataclass
class Cluster:
    """This process' place in a multi-worker run (see :func:`join_cluster`)."""

    strategy: object
    id: int
    size: int
    is_chief: bool
    timeout: float
    watchdog: Watchdog
    addresses: list
    step_seconds: dict = dataclasses.field(default_factory=dict)  # "train"/"test": wall time of every step

    @contextlib.contextmanager
    def waiting(self, what: str):
        """Around a wait on the other workers (``what`` names it): one line and exit if they are gone."""
        import tensorflow as tf

        lost = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
                tf.errors.AbortedError)
        with self.watchdog.armed(
                f"worker {self.id}: no answer from the other workers for {self.timeout:g} s while {what} "
                "(--cluster-timeout); a worker died or the network failed: rerun the same command on every node "
                "to resume from the last checkpoint"):
            try:
                yield
            except lost as err:
                self.lost(what, err)

    def lost(self, what: str, err: Exception):
        """A collective failed (a peer went away): one line, and out without TensorFlow's shutdown barrier."""
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        sys.stderr.write(f"lstm-suite: error: worker {self.id}: lost the other workers while {what} ({first}); "
                         "rerun the same command on every node to resume from the last checkpoint\n")
        sys.stderr.flush()
        os._exit(LOST_EXIT)

    def chief_value(self, value: float) -> float:
        """The chief's ``value`` on every worker (an all-reduce where only the chief contributes)."""
        import tensorflow as tf

        strategy = self.strategy

        def contribute():
            context = tf.distribute.get_replica_context()
            first = tf.equal(context.replica_id_in_sync_group, 0)
            return tf.where(first, tf.constant(float(value), tf.float64), tf.constant(0.0, tf.float64))

        with self.waiting("exchanging a decision"):
            return float(strategy.reduce("SUM", strategy.run(contribute), axis=None).numpy())

    def count(self, flag: bool) -> int:
        """How many workers have ``flag`` set."""
        import tensorflow as tf

        per_replica = self.strategy.run(lambda: tf.constant(float(bool(flag)), tf.float64))
        with self.waiting("exchanging a decision"):
            total = float(self.strategy.reduce("SUM", per_replica, axis=None).numpy())
        return round(total / (self.strategy.num_replicas_in_sync / self.size))

    def broadcast_variables(self, variables) -> None:
        """Give every worker the chief's values (after the chief restored a checkpoint)."""
        import tensorflow as tf

        variables = [v for v in variables if tf.as_dtype(v.dtype).is_floating or tf.as_dtype(v.dtype).is_integer]

        def from_chief():
            context = tf.distribute.get_replica_context()
            first = tf.equal(context.replica_id_in_sync_group, 0)
            values = [tf.cast(tf.convert_to_tensor(v), tf.float64) for v in variables]
            return context.all_reduce("SUM", [tf.where(first, v, tf.zeros_like(v)) for v in values])

        with self.waiting("receiving the chief's checkpoint"):
            results = self.strategy.run(tf.function(from_chief))
        for variable, value in zip(variables, results):
            local = self.strategy.experimental_local_results(value)[0]
            variable.assign(tf.cast(local, tf.as_dtype(variable.dtype)))

    def scratch(self, out: str | Path) -> Path:
        """Where a non-chief worker writes what the chief writes to ``out`` (removed after success)."""
        return Path(tempfile.mkdtemp(prefix=f"lstm-suite-worker{self.id}-")) / Path(out).name


_CLUSTER: Cluster | None = None


def cluster() -> Cluster | None:
    """The cluster this process joined (None when it trains alone)."""
    return _CLUSTER


def join_cluster(timeout: float, settings: dict | None = None) -> Cluster:
    """Create the ``MultiWorkerMirroredStrategy`` of ``TF_CONFIG`` and check every worker has the same settings.

    Must run before TensorFlow executes anything (collectives are configured at context start), so
    every task calls it first. Waits at most ``timeout`` seconds for the other workers.
    """
    global _CLUSTER
    if _CLUSTER is not None:
        return _CLUSTER
    spec = parse_tf_config(os.environ.get("TF_CONFIG"))
    check_port_free(spec["address"])
    import tensorflow as tf
    from tensorflow.python.eager import context

    if context.context()._context_handle is not None:
        raise RuntimeError("multi-worker: TensorFlow ran before join_cluster(); collectives cannot be configured")
    threads = os.environ.get(THREADS_ENV)
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(max(2, int(threads)))
    watchdog = Watchdog(timeout)
    peers = [a for job in ("chief", "worker") for a in spec["cluster"].get(job, [])]
    with watchdog.armed(f"worker {spec['id']} ({spec['address']}): could not reach the other workers {peers} "
                        f"within --cluster-timeout {timeout:g} s; start every worker of TF_CONFIG (same cluster "
                        "list on each) and check the addresses are reachable"):
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        joined = Cluster(strategy, spec["id"], spec["size"], strategy.extended._is_chief, timeout, watchdog, peers)
        joined.count(True)  # the first collective: returns once every worker is up
    log.info("multi-worker: worker %d of %d%s, %d replicas", joined.id, joined.size,
             " (chief)" if joined.is_chief else "", strategy.num_replicas_in_sync)
    _CLUSTER = joined
    if settings is not None:
        check_same_settings(joined, settings)
    return joined


def settings_hash(settings: dict) -> int:
    """A 48-bit hash of the settings (exact in a float64 all-reduce)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


def check_same_settings(joined: Cluster, settings: dict) -> None:
    """Every worker must train with the chief's settings; otherwise all of them stop with one line."""
    check_same(joined, settings_hash(settings), "settings", "start every worker with the same flags")


def check_same(joined: Cluster, mine: int, what: str, advice: str) -> None:
    """All workers stop with one line unless every worker's ``mine`` (a 48-bit digest) is the chief's."""
    chief = int(joined.chief_value(mine))
    differing = joined.count(mine != chief)
    if differing:
        raise UserError(f"the {what} differ between workers ({differing} of {joined.size} differ from the chief; "
                        f"{mine:012x} here, {chief:012x} on the chief): {advice}")


def digest(*parts) -> int:
    """A 48-bit digest of bytes/arrays (exact in a float64 all-reduce)."""
    import numpy as np

    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part if isinstance(part, bytes) else np.asarray(part).tobytes())
    return int(hasher.hexdigest()[:12], 16)


def distribute(strategy, dataset):
    """``dataset`` (global batches) as a distributed dataset: each replica keeps its slice of every batch.

    Every worker builds the same pipeline; slicing (rather than ``shard``) keeps the global batch
    and the number of steps of one machine, so workers never disagree on when an epoch ends.
    """
    import tensorflow as tf

    replicas = strategy.num_replicas_in_sync

    def dataset_fn(context: tf.distribute.InputContext):
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local

        def piece(replica, batch):
            def cut(tensor):
                size = tf.shape(tensor)[0]
                return tensor[size * replica // replicas: size * (replica + 1) // replicas]
            return tf.nest.map_structure(cut, batch)

        if local == 1:
            return dataset.map(lambda *batch: piece(first, batch if len(batch) > 1 else batch[0]))
        return dataset.flat_map(lambda *batch: tf.data.Dataset.range(first, first + local).map(
            lambda r: piece(r, batch if len(batch) > 1 else batch[0])))

    return strategy.distribute_datasets_from_function(dataset_fn)


def _step_functions(model, strategy):
    import tensorflow as tf

    def reduced(outputs):
        return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), outputs)

    @tf.function(reduce_retracing=True)
    def train_function(iterator):
        return reduced(strategy.run(model.train_step, args=(next(iterator),)))

    @tf.function(reduce_retracing=True)
    def test_function(iterator):
        return reduced(strategy.run(model.test_step, args=(next(iterator),)))

    return train_function, test_function


def _run_steps(function, iterator, joined: Cluster, what: str, callbacks, hook: str, limit: int | None):
    """Steps until the data ends (every worker at the same step) or ``limit``; the last logs."""
    import tensorflow as tf

    logs, step = {}, 0
    while limit is None or step < limit:
        getattr(callbacks, f"on_{hook}_batch_begin")(step)
        started = time.perf_counter()
        try:
            with joined.waiting(f"{what} step {step + 1}"):
                logs = {k: float(v) for k, v in function(iterator).items()}
        except (StopIteration, tf.errors.OutOfRangeError):
            break
        joined.step_seconds.setdefault(hook, []).append(time.perf_counter() - started)
        getattr(callbacks, f"on_{hook}_batch_end")(step, logs)
        step += 1
    return logs, step


class _Epochs:
    """The train iterator of ``fit``: fresh each epoch, or kept across epochs with ``steps_per_epoch``
    (and started over when the data ran out before ``steps_per_epoch``)."""

    def __init__(self, distributed, steps_per_epoch):
        self.distributed, self.steps, self.iterator, self.ran_out = distributed, steps_per_epoch, None, False

    def run(self, function, joined: Cluster, what: str, callbacks):
        """One epoch of train steps: ``(last logs, steps done)``."""
        if self.iterator is None or self.steps is None or self.ran_out:
            self.iterator = iter(self.distributed)
        logs, done = _run_steps(function, self.iterator, joined, what, callbacks, "train", self.steps)
        if done == 0 and self.steps is not None and not self.ran_out:  # a kept iterator ended with the last epoch
            self.iterator = iter(self.distributed)
            logs, done = _run_steps(function, self.iterator, joined, what, callbacks, "train", self.steps)
        self.ran_out = self.steps is not None and done < self.steps
        return logs, done


def _evaluate(model, test_function, val_dist, joined: Cluster, callbacks, steps: int | None) -> dict:
    model.reset_metrics()
    callbacks.on_test_begin()
    logs, _ = _run_steps(test_function, iter(val_dist), joined, "validating", callbacks, "test", steps)
    callbacks.on_test_end(logs)
    return {f"val_{k}": v for k, v in logs.items()}


def _cardinality(dataset) -> int | None:
    n = int(dataset.cardinality().numpy())
    return n if n > 0 else None


def fit_distributed(model, train_data, val_data, *, callbacks: list, epochs: int, steps_per_epoch=None,
                    validation_steps=None, verbose: int = 0):
    """``model.fit`` for ``MultiWorkerMirroredStrategy`` (the model compiled in the strategy's scope).

    Args:
        model: a compiled Keras model built under ``cluster().strategy.scope()``.
        train_data: a ``tf.data.Dataset`` of global batches, the same on every worker.
        val_data: the validation dataset (global batches) or None.
        callbacks: Keras callbacks, called as ``fit`` calls them (progress bar on the chief only).
        epochs / steps_per_epoch / validation_steps / verbose: as in ``fit``.

    Returns:
        The ``History`` callback (``.history``: every epoch's logs).

    ``model.stop_training`` (early stopping, NaN) takes effect at the end of the epoch, with the
    chief's value: workers must never leave an epoch at different steps.
    """
    import keras

    joined = cluster()
    strategy = joined.strategy
    with strategy.scope():
        model._symbolic_build(data_batch=train_data.element_spec)
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
    check_same_data(joined, train_data)
    steps = steps_per_epoch or _cardinality(train_data)
    callback_list = keras.callbacks.CallbackList(
        callbacks, add_history=True, add_progbar=verbose != 0 and joined.is_chief, model=model,
        verbose=verbose if joined.is_chief else 0, epochs=epochs, steps=steps)
    train_function, test_function = _step_functions(model, strategy)
    val_dist = distribute(strategy, val_data) if val_data is not None else None
    epochs_iter = _Epochs(distribute(strategy, train_data), steps_per_epoch)
    model.stop_training = False
    model._initial_epoch = 0
    callback_list.on_train_begin()
    initial_epoch = int(joined.chief_value(getattr(model, "_initial_epoch", 0) or 0))
    if initial_epoch:
        joined.broadcast_variables(model.weights + (model.optimizer.variables if model.optimizer else []))
        log.info("multi-worker: every worker resumes after epoch %d (the chief's checkpoint)", initial_epoch)
    epoch_logs = {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        epoch_logs, done = epochs_iter.run(train_function, joined, f"training epoch {epoch + 1}", callback_list)
        if done == 0:
            raise UserError("the training data is empty (no batch on this worker)")
        if val_dist is not None:
            epoch_logs.update(_evaluate(model, test_function, val_dist, joined, callback_list, validation_steps))
        callback_list.on_epoch_end(epoch, epoch_logs)
        model.stop_training = bool(joined.chief_value(float(bool(model.stop_training))))
        if model.stop_training:
            break
    callback_list.on_train_end(epoch_logs)
    _log_step_cost(model, joined)
    return callback_list._history


def _log_step_cost(model, joined: Cluster) -> None:
    """What a step cost: the gradient bytes every step all-reduces and the median step time."""
    import numpy as np

    params = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    steps = joined.step_seconds.get("train", [])[1:]  # the first step traces the function
    log.info("multi-worker: %d workers, %d trainable parameters = %d bytes all-reduced per step; median train "
             "step %.1f ms over %d steps", joined.size, params, 4 * params,
             1000 * float(np.median(steps)) if steps else float("nan"), len(steps))


def finish_worker(out: str | Path) -> None:
    """A non-chief worker's scratch model directory goes once training succeeded."""
    from tasks.common.io import remove

    out = Path(out)
    remove(out)
    for leftover in out.parent.glob(f".{out.name}.lock"):
        remove(leftover)
    with contextlib.suppress(OSError):
        out.parent.rmdir()


def check_same_data(joined: Cluster, dataset) -> None:
    """Every worker must see the same targets in the first global batch (same files, same order).

    Only the targets are compared: inputs may carry per-process random augmentation (subword
    sampling, noise), which is harmless since each worker trains on its own slice.
    """
    import tensorflow as tf

    batch = next(iter(dataset.take(1)))
    targets = batch[1:] if isinstance(batch, tuple) and len(batch) > 1 else ()
    check_same(joined, digest(*tf.nest.flatten(targets)), "training data (first batch's targets)",
               "give every worker the same data files and settings")
