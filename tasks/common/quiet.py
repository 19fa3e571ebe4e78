"""Keep TensorFlow's, absl's and LiteRT's own lines (start-up, oneDNN, XNNPACK, converter) off the terminal.

TensorFlow and LiteRT write these lines from C++ straight to file descriptor 2, before and
regardless of Python logging (``E0000 ... oneDNN supports DT_INT64/DT_BOOL only on platforms
with AVX-512``, ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``), so the only
reliable filter is at the descriptor: :func:`filtered_stderr` points descriptor 2 at a file
that a thread reads, forwarding every line except those of :data:`NOISE`; Python's own
``sys.stderr`` (logging, warnings, progress bars) keeps writing to the terminal directly. Lines
held back are replayed if the command fails with a traceback, so a real error is never hidden.
``--verbose`` (``LSTM_SUITE_VERBOSE=1``) turns all of this off.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import threading

from lstm_core._capture import captured_output

VERBOSE_ENV = "LSTM_SUITE_VERBOSE"

# What TensorFlow, absl, XLA and LiteRT print from C++; any other line passes through.
NOISE = re.compile(
    r"^(?:"
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\s:]+:\d+\] "  # absl / glog: I0000 00:00:17.5  123 file.cc:31]
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] [^\s:]+:\d+\] "  # TensorFlow's older C++ format
    r"|To enable the following instructions: .* rebuild TensorFlow"  # 2nd line of the CPU-feature notice
    r"|INFO: "  # LiteRT's logger: "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
    r")"
)


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


class _StderrFilter:
    """Descriptor 2 → a temporary file; a thread forwards its non-:data:`NOISE` lines to the real stderr.

    A file, not a pipe: C++ code writing while it holds the GIL can never block on a full buffer.
    """

    POLL_SECONDS = 0.1
    KEEP = 200  # noise lines kept for a replay after a crash

    def __init__(self):
        self.held: list[str] = []
        self._stop = threading.Event()

    def start(self) -> None:
        _flush(sys.stderr)
        self.real = os.dup(2)
        self.sink = tempfile.TemporaryFile()
        self.position, self.pending = 0, b""
        self.python_stderr = sys.stderr
        if _fileno(sys.stderr) == 2:  # Python's writes bypass the filter (no delay, \r progress bars work)
            sys.stderr = io.TextIOWrapper(io.FileIO(self.real, "w", closefd=False), encoding=sys.stderr.encoding,
                                          errors="backslashreplace", line_buffering=True, write_through=True)
        os.dup2(self.sink.fileno(), 2)
        _ACTIVE.append(self)
        self.thread = threading.Thread(target=self._run, name="stderr-filter", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.POLL_SECONDS):
            self._forward(final=False)

    def _forward(self, final: bool) -> None:
        """Forward the complete lines written since the last call (all of it when ``final``)."""
        while True:  # pread: descriptor 2 shares the file offset, which must stay at the end
            chunk = os.pread(self.sink.fileno(), 1 << 16, self.position)
            if not chunk:
                break
            self.position += len(chunk)
            self.pending += chunk
        lines = self.pending.split(b"\n")
        self.pending = lines.pop()  # an unfinished line waits for its end
        if final and self.pending:
            lines.append(self.pending)
            self.pending = b""
        passed = []
        for raw in lines:
            line = raw.decode(errors="replace")
            if NOISE.match(line):
                self.held = (self.held + [line])[-self.KEEP:]
            else:
                passed.append(raw + b"\n")
        if passed:
            _write_all(self.real, b"".join(passed))

    def stop(self, failed: bool) -> None:
        self._stop.set()
        self.thread.join()
        _ACTIVE.remove(self)
        os.dup2(self.real, 2)
        self._forward(final=True)
        if sys.stderr is not self.python_stderr:
            _flush(sys.stderr)
            replacement, sys.stderr = sys.stderr, self.python_stderr
            _repoint_log_handlers(replacement, self.python_stderr)
        if failed and self.held:
            _write_all(2, ("\n".join(["(TensorFlow/LiteRT lines held back:)", *self.held]) + "\n").encode())
        os.close(self.real)
        self.sink.close()


_ACTIVE: list[_StderrFilter] = []


def real_stderr_fd() -> int:
    """The terminal's stderr while :func:`filtered_stderr` holds descriptor 2 (else 2): for a helper
    process whose line must reach the user even if this process is killed before the filter forwards it."""
    return _ACTIVE[-1].real if _ACTIVE else 2


@contextlib.contextmanager
def filtered_stderr():
    """Hide :data:`NOISE` lines written to descriptor 2 for the block (unless verbose; see the module doc).

    Example:

    ```python
    with filtered_stderr():
        import tensorflow as tf   # its C++ start-up lines are dropped, any other line passes
    ```
    """
    if verbose() or not _usable(2):
        yield
        return
    guard = _StderrFilter()
    guard.start()
    failed = True
    try:
        yield
        failed = False
    except (KeyboardInterrupt, SystemExit):
        failed = False
        raise
    finally:
        guard.stop(failed)


def _usable(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return None


def _flush(stream) -> None:
    with contextlib.suppress(AttributeError, ValueError, OSError):
        stream.flush()


def _write_all(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):
        while data:
            data = data[os.write(fd, data):]


def _repoint_log_handlers(old, new) -> None:
    """Log handlers made while the filter ran (``basicConfig``) write to ``new`` afterwards."""
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and handler.stream is old:
                handler.setStream(new)


@contextlib.contextmanager
def silenced_output(streams=("stderr",)):
    """Send the file descriptors of ``streams`` (stdout/stderr) to a temporary file for the block.

    What was captured is replayed on stderr if the block raises, so a real error is never hidden.
    """
    if verbose():
        yield
        return
    with captured_output(streams):
        yield


def silenced_stderr():
    """:func:`silenced_output` for stderr only (TensorFlow's start-up lines)."""
    return silenced_output(("stderr",))


def import_tensorflow_quietly(first_op: bool = True) -> None:
    """Import TensorFlow and Keras with their start-up lines hidden (unless verbose).

    ``first_op=False`` leaves TensorFlow's context unstarted (``--distribute multi-worker`` must
    configure its collectives before anything runs)."""
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    with silenced_stderr():
        import tensorflow as tf  # noqa: F401
        import keras  # noqa: F401

        if first_op:
            tf.constant(0.0) + 1.0  # the CPU-feature and oneDNN lines come with the first op
    if not verbose():
        import logging as std_logging

        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
        tf.get_logger().setLevel(std_logging.ERROR)
