"""The suite's file plumbing: user files with one-line errors, JSON, directory locks, staged directories.

Atomic writes come from :mod:`lstm_core.atomic` (the library writes its exports the same way)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import sys
from pathlib import Path
from typing import Iterable, Iterator

from lstm_core.atomic import atomic_path, remove, replace, write_bytes_atomic
from tasks.common.errors import UserError

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
    """An exclusive ``flock`` on ``.<dir>.lock`` (beside ``dir``) so two runs never use one directory.

    One lock per directory, whatever the verb: ``train`` takes it on ``--out`` and ``export`` on
    ``--model``, so they exclude each other (see ``docs/task_contract.md``). The lock file holds the
    owner's pid for the error message; the kernel drops the lock when its owner dies, so a stale
    file (a killed run) is simply taken over.

    The file is never followed nor truncated before it is ours: it is opened with ``O_NOFOLLOW``
    and without ``O_TRUNC``, and a symlink, a hard-linked or non-regular file is refused with one
    line (a planted ``.x.lock -> ~/.bashrc`` is never written to). It is removed on release, so no
    lock files stay behind. Unlinking races with a process that opened the same file just before:
    the owner unlinks while it still holds the lock, and every process, once it holds the lock,
    checks that the path still names the inode it locked; if not (unlinked or replaced), it drops
    it and starts over on the new file. Parent directories it had to create are removed again when
    the locked directory was never created (a failed command leaves nothing).
    """

    def __init__(self, directory: str | os.PathLike, what: str = "training"):
        self.directory = Path(directory)
        absolute = Path(os.path.abspath(self.directory))  # "." and "x/.." have a name too
        self.path = absolute.with_name(f".{absolute.name}.lock")
        self.what = what
        self._fd: int | None = None
        self._created: list[Path] = []

    def __enter__(self):
        self._created = _make_parents(self.path.parent, self.directory)
        try:
            for _ in range(100):  # each retry means another process released the file meanwhile
                if self._try_acquire():
                    self._write_owner()
                    return self
        except BaseException:
            self._remove_created_parents()
            raise
        self._remove_created_parents()
        raise UserError(f"{self.path}: lock file keeps changing; is another lstm-suite process looping?")

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise UserError(f"{self.path}: the lock file is a symbolic link; refusing to follow it "
                                "(remove it if you did not make it)") from None
            raise UserError(f"{self.directory}: cannot create the lock file {self.path} "
                            f"({err.strerror or err})") from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
            os.close(fd)
            kind = "is not a regular file" if not stat.S_ISREG(info.st_mode) else "has other hard links"
            raise UserError(f"{self.path}: the lock file {kind}; refusing to use it (remove it if you did not make it)")
        return fd

    def _try_acquire(self) -> bool:
        """Lock the file now at ``self.path``; False when it was replaced meanwhile (retry)."""
        import fcntl

        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = (os.pread(fd, 200, 0).decode(errors="replace").strip().splitlines() or ["unknown"])[0][:80]
            os.close(fd)
            raise UserError(
                f"{self.directory}: another lstm-suite process (pid {owner}) is using this directory; "
                "wait for it to finish or choose another directory"
            ) from None
        mine = os.fstat(fd)
        try:
            now = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            now = None
        if now is None or (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
            os.close(fd)  # its owner unlinked it on release: lock the file that is there now
            return False
        self._fd = fd
        return True

    def _write_owner(self) -> None:
        os.ftruncate(self._fd, 0)  # our own regular file (checked above), never a link's target
        os.pwrite(self._fd, f"{os.getpid()} {self.what}\n".encode(), 0)

    def __exit__(self, *exc):
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # still ours: every other process re-checks the inode after locking
            os.close(self._fd)
            self._fd = None
        self._remove_created_parents()
        return False

    def _remove_created_parents(self) -> None:
        if self.directory.exists():
            return
        for parent in self._created:  # deepest first
            with contextlib.suppress(OSError):
                parent.rmdir()
        self._created = []


def _make_parents(parent: Path, target: Path) -> list[Path]:
    """``mkdir -p parent``; returns the directories it created, deepest first (for cleanup)."""
    missing = []
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            pass
        except OSError as err:
            for made in missing[missing.index(path) + 1:]:
                with contextlib.suppress(OSError):
                    made.rmdir()
            raise UserError(f"{target}: cannot create {path} ({err.strerror or err})") from None
    return missing


@contextlib.contextmanager
def staged_directory(final: str | os.PathLike, what: str = "export", *, lock: str | os.PathLike | None = None):
    """Build a directory in ``<final>.partial`` under a lock; rename it onto ``final`` on success.

    Whatever happens before the rename (error, Ctrl-C, SIGTERM, full disk) leaves ``final`` as it
    was and removes the half-built ``.partial``.

    Args:
        final: the directory to (re)build.
        what: the verb, for another process' error message.
        lock: the directory whose :class:`DirectoryLock` to take (default ``final``); ``False``
            when the caller already holds the right lock (an export holds its model's).
    """
    final = Path(final)
    guard = contextlib.nullcontext() if lock is False else DirectoryLock(final if lock is None else lock, what)
    with guard:
        work = final.with_name(final.name + ".partial")
        remove(work)
        work.mkdir(parents=True)
        try:
            yield work
        except BaseException:
            remove(work)
            raise
        replace(work, final)


# ----------------------------------------------------------------------------- stdin
STDIN_BATCH = 256


def stdin_batches(stream=None, max_batch: int = STDIN_BATCH) -> Iterator[list[str]]:
    """Non-blank lines of stdin in batches of what has arrived (at most ``max_batch``).

    Lines end at ``\n`` only (a trailing ``\r`` is dropped; U+2028, form feeds and other
    Unicode line breaks stay inside the text), so every input line is one text. Each batch is
    what one read returned, so interactive input is answered line by line and a file in large
    batches. Bytes that are not UTF-8 → ``<stdin>:LINE: not UTF-8``.
    """
    stream = stream if stream is not None else sys.stdin.buffer
    read = getattr(stream, "read1", None) or stream.read
    pending, line_number = b"", 0
    while True:
        chunk = read(1 << 16)
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop() if chunk else b""
        batch = []
        for raw in lines:
            line_number += 1
            text = _decode_line(raw, line_number)
            if text.strip():
                batch.append(text)
            if len(batch) == max_batch:
                yield batch
                batch = []
        if batch:
            yield batch
        if not chunk:
            return


def _decode_line(raw: bytes, line_number: int) -> str:
    try:
        return raw.removesuffix(b"\r").decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"<stdin>:{line_number}: not UTF-8") from None


def input_batches(items: Iterable[str]) -> Iterator[list[str]]:
    """The command line's inputs in order, each ``-`` replaced by stdin's lines as they arrive
    (:func:`stdin_batches`): what ``predict`` answers, one batch at a time."""
    given = []
    for item in items:
        if item != "-":
            given.append(item)
            continue
        if given:
            yield given
            given = []
        yield from stdin_batches()
    if given:
        yield given
