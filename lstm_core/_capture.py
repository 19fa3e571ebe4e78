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


def _redirectable(streams):
    targets = []
    for name in streams:
        stream = getattr(sys, name)
        try:
            targets.append((stream, stream.fileno()))
        except (AttributeError, ValueError, OSError):  # pytest capture, notebooks: nothing to redirect
            continue
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
            stream.flush()
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
                stream.flush()
                os.dup2(copy, fd)
                os.close(copy)
            capture.seek(0)
            text = capture.read()[-20000:].decode(errors="replace")
            if failed:
                sys.stderr.write(text)
                sys.stderr.flush()
            elif text and logger.isEnabledFor(logging.DEBUG):
                logger.debug("captured output:\n%s", text)
