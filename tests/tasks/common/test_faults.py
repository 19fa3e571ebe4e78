"""Faults across processes: two runs on one directory, a killed run's stale lock, an export killed midway,
planted lock files (symlinks, hard links), lock files left behind, the unlink-on-release race."""

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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # the stale lock file is gone too


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


@pytest.fixture(params=["export", "train"])
def lock_user(request):
    """Enter the lock the way export (staged_directory) or train (model_directory) does."""
    if request.param == "export":
        return lambda path: staged_directory(path)
    from tasks.common.training import model_directory

    return lambda path: model_directory(path, overwrite=True)


def test_symlinked_lock_is_refused_and_its_target_untouched(tmp_path, lock_user):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / ".out.lock").symlink_to(victim)
    with pytest.raises(UserError, match=r"\.out\.lock: the lock file is a symbolic link") as err:
        with lock_user(tmp_path / "out"):
            raise AssertionError("must not start")
    assert "\n" not in str(err.value)
    assert victim.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "victim.txt"]


def test_hard_linked_or_special_lock_is_refused(tmp_path, lock_user):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.link(victim, tmp_path / ".out.lock")
    with pytest.raises(UserError, match="has other hard links"):
        with lock_user(tmp_path / "out"):
            raise AssertionError("must not start")
    assert victim.read_text() == "precious\n"
    os.unlink(tmp_path / ".out.lock")
    os.mkfifo(tmp_path / ".out.lock")  # a FIFO would block a plain open() forever
    with pytest.raises(UserError, match="is not a regular file"):
        with lock_user(tmp_path / "out"):
            raise AssertionError("must not start")


def test_no_lock_file_stays_after_success_failure_or_refusal(tmp_path, lock_user):
    with lock_user(tmp_path / "a" / "b" / "out") as work:
        (work / "config.json").write_text('{"task": "sentiment"}')
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["out"]
    with pytest.raises(RuntimeError):
        with lock_user(tmp_path / "a" / "b" / "out"):
            raise RuntimeError("failed")
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["out"]
    # a command that fails before creating its directory leaves neither a lock nor the parents it made
    with pytest.raises(UserError):
        with lock_user(tmp_path / "new" / "deep" / "out"):
            raise UserError("bad data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


CONTEND = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from tasks.common.errors import UserError
    from tasks.common.io import DirectoryLock
    target, holder, end = Path(sys.argv[1]), Path(sys.argv[2]), time.monotonic() + float(sys.argv[3])
    held = clashes = 0
    while time.monotonic() < end:
        try:
            with DirectoryLock(target):
                try:  # only one process may hold the lock: a second holder finds this file
                    os.close(os.open(holder, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    clashes += 1
                    continue
                held += 1
                os.unlink(holder)
        except UserError:
            pass
    print(held, clashes)
    """
)


def test_unlink_on_release_never_lets_two_processes_hold_the_lock(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", CONTEND, str(tmp_path / "out"), str(tmp_path / "holder"), "1.5"],
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    results = [tuple(map(int, proc.communicate(timeout=60)[0].split())) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    assert sum(held for held, _ in results) > 20  # they really took turns
    assert sum(clashes for _, clashes in results) == 0
    assert not (tmp_path / ".out.lock").exists()
