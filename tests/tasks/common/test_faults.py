"""Faults across processes: two runs on one directory, a killed run's stale lock, an export killed midway."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tasks.common.errors import UserError
from tasks.common.io import DirectoryLock, staged_directory

HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tasks.common.io import staged_directory
    with staged_directory(Path(sys.argv[1])) as work:
        (work / "model_float.tflite").write_bytes(b"half")
        print("ready", flush=True)
        time.sleep(60)
    """
)


def start_holder(path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_second_process_is_refused_naming_the_first(tmp_path):
    export = tmp_path / "export"
    holder = start_holder(export)
    try:
        with pytest.raises(UserError, match=rf"another lstm-suite process \(pid {holder.pid} export\)"):
            with DirectoryLock(export):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_export_killed_midway_leaves_the_old_export_and_no_half_files(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "model_float.tflite").write_bytes(b"the good one")
    holder = start_holder(export)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (export / "model_float.tflite").read_bytes() == b"the good one"
    # the stale lock of the killed run is taken over at once, and its half-built directory removed
    start = time.monotonic()
    with staged_directory(export) as work:
        assert not any(work.iterdir())
        (work / "model_float.tflite").write_bytes(b"new")
    assert time.monotonic() - start < 5
    assert (export / "model_float.tflite").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".export.lock", "export"]


def test_error_inside_staged_directory_keeps_the_old_one(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "a.tflite").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with staged_directory(export) as work:
            (work / "a.tflite").write_bytes(b"half")
            raise RuntimeError("converter failed")
    assert (export / "a.tflite").read_bytes() == b"old"
    assert not (tmp_path / "export.partial").exists()
