"""Start N workers of one command on this machine, each with its ``TF_CONFIG`` and one CPU thread.

For trying ``--distribute multi-worker`` (and for the tests): worker ``i`` gets
``{"cluster": {"worker": ["127.0.0.1:P0", ...]}, "task": {"type": "worker", "index": i}}`` on free
loopback ports, ``LSTM_SUITE_CPU_THREADS=1`` and its output prefixed with ``[worker i]``. Worker 0
is the chief. Exits with the first non-zero worker status (0 when all succeed).

    python tools/local_cluster.py -n 2 -- python -m tasks.common.cli forecasting train \\
        --data statsmodels:co2 --distribute multi-worker --out saved_models/co2_2w
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading

__all__ = ["free_ports", "start_workers", "tf_config", "wait_all"]


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports nobody listens on right now."""
    sockets = []
    try:
        for _ in range(n):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tf_config(ports: list[int], index: int) -> str:
    """The ``TF_CONFIG`` of worker ``index`` in a cluster of loopback ``ports``."""
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def start_workers(command: list[str], n: int, *, ports: list[int] | None = None, env: dict | None = None,
                  only: list[int] | None = None, threads: int = 1, **popen) -> list[subprocess.Popen]:
    """Start ``command`` as workers ``only`` (default all ``n``) of an ``n``-worker loopback cluster."""
    ports = ports or free_ports(n)
    workers = []
    for index in (only if only is not None else range(n)):
        worker_env = {**os.environ, **(env or {}), "TF_CONFIG": tf_config(ports, index),
                      "LSTM_SUITE_CPU_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
        workers.append(subprocess.Popen(command, env=worker_env, **popen))
    return workers


def _relay(index: int, stream, sink) -> None:
    for line in stream:
        sink.write(f"[worker {index}] {line}")
        sink.flush()


def wait_all(workers: list[subprocess.Popen]) -> int:
    """Relay every worker's output (prefixed) and return the first non-zero exit status, else 0."""
    relays = [threading.Thread(target=_relay, args=(i, w.stdout, sys.stdout)) for i, w in enumerate(workers)]
    for relay in relays:
        relay.start()
    codes = [w.wait() for w in workers]
    for relay in relays:
        relay.join()
    return next((c for c in codes if c), 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--workers", type=int, default=2, help="number of workers (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per worker (default 1)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command every worker runs (after --)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or args.workers < 1:
        parser.error("give -n N >= 1 and a command after --")
    workers = start_workers(command, args.workers, threads=args.threads, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    return wait_all(workers)


if __name__ == "__main__":
    sys.exit(main())
