"""SIGTERM (docker stop, Kubernetes) is handled like Ctrl-C: one line, exit 143, the same cleanup."""

import signal
import subprocess
import sys
import textwrap
import time

import pytest

VERB = textwrap.dedent(
    """
    import argparse, sys, threading, time
    from pathlib import Path
    import tasks.common.quiet as quiet
    quiet.import_tensorflow_quietly = lambda **_: None  # this fake verb needs no TensorFlow
    from tasks.common import cli
    from tasks.common.io import staged_directory
    cli.SIGTERM_GRACE_SECONDS = 2

    def verb(args):
        with staged_directory(Path(sys.argv[1])) as work:
            (work / "model_float.tflite").write_bytes(b"half")
            if sys.argv[2] == "blocked":  # stuck inside TensorFlow: a batch that never fills
                import tensorflow as tf
                threading.Timer(1.0, lambda: print("ready", flush=True)).start()
                next(iter(tf.data.Dataset.range(3).repeat().batch(10**9)))
            print("ready", flush=True)
            time.sleep(60)

    sys.exit(cli._run(argparse.Namespace(_run=verb), verbose=False))
    """
)


def run_and_terminate(export, mode):
    proc = subprocess.Popen([sys.executable, "-c", VERB, str(export), mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err.strip().splitlines(), time.monotonic() - start


def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "model_float.tflite").write_bytes(b"the good one")
    code, err, _ = run_and_terminate(export, "sleeping")
    assert code == 143 and err == ["lstm-suite: terminated (SIGTERM)"]
    assert (export / "model_float.tflite").read_bytes() == b"the good one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no export.partial, no lock file


@pytest.mark.slow  # imports TensorFlow in a subprocess (~25 s on two busy cores)
def test_sigterm_stops_a_process_stuck_inside_tensorflow(tmp_path):
    code, err, seconds = run_and_terminate(tmp_path / "export", "blocked")
    assert code == 143 and "still busy after 2 s, stopped without cleanup" in err[-1]  # (TF's start-up lines above)
    assert seconds < 30
