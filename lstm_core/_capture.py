"""Capture what C++ code (the TFLite converter, MLIR) writes straight to file descriptors 1 and 2.

The converter prints dozens of lines per model that Python logging cannot filter. Captured text
goes to the ``lstm_core`` logger at DEBUG level, and to stderr if the block fails, so a real error
is never hidden. Nothing process-wide changes: the descriptors are restored on exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile

__all__ = ["captured_output"]

logger = logging.getLogger("lstm_core")


_FDS = {"stdout": 1, "stderr": 2}


def _redirectable(streams):
    """``(Python stream, descriptor)`` pairs: descriptors 1 and 2 themselves, where C++ writes,
    whatever ``sys.stdout``/``sys.stderr`` are (pytest and notebooks replace those objects)."""
    targets = []
    for name in streams:
        try:
            os.fstat(_FDS[name])
        except OSError:  # a closed descriptor: nothing to redirect
            continue
        targets.append((getattr(sys, name), _FDS[name]))
    return targets


@contextlib.contextmanager
def captured_output(streams=("stdout", "stderr")):
    """Send the file descriptors of ``streams`` to a temporary file for the block (see module doc)."""
    targets = _redirectable(streams)
    if not targets:
        yield
        return
    saved = []
    with tempfile.TemporaryFile(mode="w+b") as capture:
        for stream, fd in targets:
            _flush(stream)
            saved.append((stream, fd, os.dup(fd)))
            os.dup2(capture.fileno(), fd)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            for stream, fd, copy in saved:
                _flush(stream)
                os.dup2(copy, fd)
                os.close(copy)
            capture.seek(0)
            text = capture.read()[-20000:].decode(errors="replace")
            if failed:
                sys.stderr.write(text)
                sys.stderr.flush()
            elif text and logger.isEnabledFor(logging.DEBUG):
                logger.debug("captured output:\n%s", text)


def _flush(stream) -> None:
    try:
        stream.flush()
    except (AttributeError, ValueError, OSError):  # closed or replaced by a caller
        pass
