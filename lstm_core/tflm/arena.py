"""The tensor arena a model needs: the smallest size that loads and runs it, found by bisection.

Each attempt runs in the TFLM subprocess (:mod:`lstm_core.tflm.child`): a too-small arena
raises in some places and crashes TFLM in others.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from lstm_core.errors import TFLMError
from lstm_core.tflm.child import describe_exit, run_child, run_samples
from lstm_core.tflm.flatbuffer import hybrid_ops, model_bytes
from lstm_core.tflm.runtime import ARENA_ALIGNMENT

__all__ = ["MAX_ARENA_BYTES", "arena_works", "measure_arena"]

MAX_ARENA_BYTES = 256 << 20


def _probe(work: Path, job: dict) -> tuple[dict[int, bool], subprocess.CompletedProcess]:
    """Run an arena job; ``{size: works}`` for every size it finished, plus the size it
    crashed on (as failing)."""
    proc = run_child(dict(job, model=str(work / "model.tflite")), work)
    results: dict[int, bool] = {}
    last_try = None
    for line in proc.stdout.split("\n"):
        parts = line.split()
        if len(parts) == 2 and parts[0] == "try":
            last_try = int(parts[1])
        elif len(parts) == 2 and parts[0] in ("ok", "fail"):
            results[int(parts[1])] = parts[0] == "ok"
    if last_try is not None and last_try not in results:
        results[last_try] = False  # the subprocess died trying it
    elif "done" not in proc.stdout.split("\n") and proc.returncode != 0:
        raise TFLMError(f"TFLM arena probe {describe_exit(proc.returncode)}: {proc.stderr.strip()[-300:]}")
    return results, proc


def arena_works(model, arena_size: int) -> bool:
    """Whether ``model`` loads and runs one invoke with an arena of ``arena_size`` bytes
    (in a subprocess; a crash counts as "no")."""
    data, _ = model_bytes(model)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "model.tflite").write_bytes(data)
        results, _ = _probe(work, {"kind": "arena", "sizes": [int(arena_size)]})
        return results.get(int(arena_size), False)


def measure_arena(model, *, max_bytes: int = MAX_ARENA_BYTES) -> dict:
    """Smallest tensor arena (bytes, 16-byte resolution) that loads ``model`` and runs it.

    Bisection in one subprocess (TensorFlow is not loaded there), each attempt in a forked
    child of it: a too-small arena raises in some places and crashes TFLM in others (e.g. the
    LSTM's prepare when a scratch buffer did not fit); a crash counts as failing. Without
    ``os.fork`` a crash ends the subprocess and a fresh one continues the bisection. The
    recommended figure adds 25% (optimized kernels such as CMSIS-NN ask for other scratch
    buffers) rounded up to 1 KiB.

    Returns:
        ``{"arena_bytes", "arena_recommended_bytes", "largest_failing_bytes", "subprocesses"}``.
    """
    data, source = model_bytes(model)
    hybrid = hybrid_ops(data)
    if hybrid:
        raise TFLMError(f"{source}: TensorFlow Lite Micro has no hybrid kernels for {', '.join(hybrid)}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "model.tflite").write_bytes(data)
        lo, hi, subprocesses = _bisect(work, source, _growing_sizes(len(data), max_bytes))
    recommended = -(-int(hi * 1.25) // 1024) * 1024
    return {
        "arena_bytes": hi,
        "arena_recommended_bytes": recommended,
        "largest_failing_bytes": lo,
        "subprocesses": subprocesses,
    }


def _growing_sizes(model_size: int, max_bytes: int) -> list[int]:
    """Sizes to try until one works: max(64 KiB, 4x the model), then x4 up to ``max_bytes``."""
    step = ARENA_ALIGNMENT
    sizes = [-(-max(64 << 10, 4 * model_size) // step) * step]
    while sizes[-1] < max_bytes:
        sizes.append(min(sizes[-1] * 4, max_bytes))
    return sizes


def _bisect(work: Path, source: str, sizes: list[int]) -> tuple[int, int, int]:
    """``(largest failing, smallest working, subprocesses used)``; each subprocess continues
    from what the previous ones learned (one is enough unless TFLM crashes it)."""
    lo, hi, subprocesses = 0, None, 0
    while hi is None or hi - lo > ARENA_ALIGNMENT:
        pending = [s for s in sizes if s > lo] if hi is None else []
        if hi is None and not pending:
            raise _load_failure(work, source)
        job = {"kind": "arena", "sizes": pending, "lo": lo, "hi": hi, "bisect": True}
        results, _ = _probe(work, job)
        subprocesses += 1
        for size, ok in results.items():
            if ok:
                hi = size if hi is None else min(hi, size)
            else:
                lo = max(lo, size)
        if hi is None and not any(s > lo for s in sizes):
            raise _load_failure(work, source)
    return lo, hi, subprocesses


def _load_failure(work: Path, source: str) -> TFLMError:
    """The TFLMError a load in a subprocess gives (it names the op), or a generic one."""
    result = run_samples(work, [], MAX_ARENA_BYTES)
    message = result.get("error") or f"cannot run the model with a {MAX_ARENA_BYTES}-byte arena"
    return TFLMError(message.replace("<tflite bytes>", source) if message.startswith("<") else f"{source}: {message}")
