"""The suite's file plumbing: user files with one-line errors, JSON, directory locks, staged directories.

Atomic writes come from :mod:`lstm_core.atomic` (the library writes its exports the same way)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from lstm_core.atomic import atomic_path, remove, replace, write_bytes_atomic

__all__ = [
    "DirectoryLock", "atomic_path", "read_json", "read_user_file", "remove", "replace", "staged_directory",
    "write_bytes_atomic", "write_json_atomic",
]


def read_user_file(path: str | os.PathLike, expected: str) -> bytes:
    """The bytes of a file the user named; missing, a directory or unreadable → one UserError line.

    Args:
        path: the file.
        expected: what the file should be, for the message ("a .wav file").
    """
    from tasks.common.errors import UserError

    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected {expected}") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from None


def write_json_atomic(path, obj) -> Path:
    return write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path):
    return json.loads(Path(path).read_text())


class DirectoryLock:
    """An exclusive ``fcntl`` lock on ``.<dir>.lock`` so two runs never build the same directory.

    The hidden lock file holds the owner's pid for the error message. The kernel drops the lock
    when its owner dies, so a stale file (a killed run) is simply taken over. The file is kept
    (emptied) on release: unlinking a lock file races with a process that just opened it.
    """

    def __init__(self, directory: str | os.PathLike, what: str = "training"):
        self.directory = Path(directory)
        self.path = self.directory.with_name(f".{self.directory.name}.lock")
        self.what = what
        self._handle = None

    def __enter__(self):
        import fcntl

        from tasks.common.errors import UserError

        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise UserError(
                f"{self.directory}: another lstm-suite process (pid {owner}) is using this directory; "
                "wait for it to finish or choose another directory"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {self.what}\n")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc):
        import fcntl

        if self._handle is not None:
            self._handle.truncate(0)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
        return False


@contextlib.contextmanager
def staged_directory(final: str | os.PathLike, what: str = "export"):
    """Build a directory in ``<final>.partial`` under a lock; rename it onto ``final`` on success.

    Whatever happens before the rename (error, Ctrl-C, full disk) leaves ``final`` as it was and
    removes the half-built ``.partial``.
    """
    final = Path(final)
    with DirectoryLock(final, what):
        work = final.with_name(final.name + ".partial")
        remove(work)
        work.mkdir(parents=True)
        try:
            yield work
        except BaseException:
            remove(work)
            raise
        replace(work, final)
