"""The TFLM subprocess: both sides of it.

A too-small arena or an unsupported kernel can crash TFLM (a segfault, not an exception), so
reports and arena measurements run TFLM in a child Python process (TensorFlow is not loaded
there). The parent writes a JSON job file and starts ``python -c "... child.main()" job.json``
(:func:`run_child`); the child runs the job with :class:`lstm_core.tflm.runtime.TFLMModel`:

- ``run``: raw outputs for sample inputs (:func:`run_samples` is the parent side);
- ``arena``: try arena sizes, printing ``try N`` before and ``ok N`` / ``fail N`` after each
  attempt, so a crash still names the size (the parent side is :mod:`lstm_core.tflm.arena`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from lstm_core.errors import InvalidModelError, TFLMError
from lstm_core.tflm.flatbuffer import schema
from lstm_core.tflm.runtime import ARENA_ALIGNMENT, TFLMModel, captured_native_stderr, quantization_parameters

__all__ = ["main", "run_child", "run_samples", "describe_exit"]


# ----------------------------------------------------------------------------- parent side
def run_child(job: dict, workdir: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Write ``job`` to ``workdir/job.json`` and run it in a child process (output captured)."""
    job_file = workdir / "job.json"
    job_file.write_text(json.dumps(job))
    return subprocess.run(
        _child_command(job_file), capture_output=True, text=True, timeout=timeout, env=_child_env()
    )


def _child_command(job_file: Path) -> list[str]:
    return [sys.executable, "-c", "import sys; from lstm_core.tflm.child import main; sys.exit(main())", str(job_file)]


def _child_env() -> dict:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def describe_exit(code: int) -> str:
    """``"crashed with SIGSEGV"`` or ``"exited with status N"`` for a child's return code."""
    if code < 0:
        import signal

        try:
            return f"crashed with {signal.Signals(-code).name}"
        except ValueError:
            return f"crashed with signal {-code}"
    return f"exited with status {code}"


def run_samples(work: Path, samples: Sequence[Sequence[np.ndarray]], arena_size: int | None) -> dict:
    """Raw TFLM outputs for ``samples`` of ``work/model.tflite`` from a subprocess: ``{"ok",
    "outputs": [[array...]...], "quantization", "dtypes"}`` or ``{"ok": False, "error"}`` (a
    crash is an error too)."""
    arrays = {"count": np.asarray(len(samples)), "width": np.asarray(len(samples[0]) if samples else 0)}
    for index, sample in enumerate(samples):
        for position, value in enumerate(sample):
            arrays[f"s{index}_{position}"] = np.asarray(value)
    np.savez(work / "inputs.npz", **arrays)
    job = {
        "kind": "run",
        "model": str(work / "model.tflite"),
        "inputs": str(work / "inputs.npz"),
        "outputs": str(work / "outputs.npz"),
        "result": str(work / "result.json"),
        "arena_size": arena_size,
    }
    proc = run_child(job, work)
    result_file = work / "result.json"
    if proc.returncode != 0 or not result_file.exists():
        tail = "; ".join(l for l in proc.stderr.strip().splitlines()[-3:])
        return {"ok": False, "error": f"TensorFlow Lite Micro {describe_exit(proc.returncode)} ({tail[-300:]})"}
    result = json.loads(result_file.read_text())
    if result.get("ok"):
        with np.load(work / "outputs.npz", allow_pickle=False) as saved:
            result["outputs"] = [
                [saved[f"s{index}_{position}"] for position in range(result["outputs"])]
                for index in range(len(samples))
            ]
    return result


# ----------------------------------------------------------------------------- child side
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the TFLM subprocess: ``run`` (outputs for sample inputs) or ``arena``
    (bisection; prints ``try N`` before each attempt so a crash names the size)."""
    job = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    model = Path(job["model"]).read_bytes()
    if job["kind"] == "run":
        _run_job(job, model)
    else:
        _arena_job(job, model)
    return 0


def _run_job(job: dict, model: bytes) -> None:
    """Run every sample; outputs to ``job["outputs"]`` (npz), the summary to ``job["result"]``."""
    result = {"ok": False}
    try:
        runner = TFLMModel(model, arena_size=job.get("arena_size"))
        samples = np.load(job["inputs"], allow_pickle=False)
        count = int(samples["count"])
        width = int(samples["width"])
        outputs = {}
        for index in range(count):
            sample = [samples[f"s{index}_{k}"] for k in range(width)]
            for position, value in enumerate(runner.run_quantized(*sample)):
                outputs[f"s{index}_{position}"] = value
        np.savez(job["outputs"], **outputs)
        result = {
            "ok": True,
            "outputs": len(runner.output_details),
            "quantization": [quantization_parameters(d) for d in runner.output_details],
            "dtypes": [np.dtype(d["dtype"]).name for d in runner.output_details],
        }
    except (InvalidModelError, TFLMError) as error:
        result["error"] = str(error)
    Path(job["result"]).write_text(json.dumps(result))


def _arena_job(job: dict, model: bytes) -> None:
    """Try ``job["sizes"]`` in order (with ``bisect``: stop at the first that works), then
    bisect between the largest failing and smallest working size to ``ARENA_ALIGNMENT``."""
    sizes = [int(size) for size in job.get("sizes", [])]
    lo, hi = int(job.get("lo", 0)), job.get("hi")  # multiples of ARENA_ALIGNMENT; lo fails, hi works
    for size in sizes:
        print(f"try {size}", flush=True)
        works = _works_isolated(model, size)
        print(f"{'ok' if works else 'fail'} {size}", flush=True)
        if works:
            hi = size if hi is None else min(hi, size)
            if job.get("bisect"):
                break
        else:
            lo = max(lo, size)
    while job.get("bisect") and hi is not None and hi - lo > ARENA_ALIGNMENT:
        size = (lo + hi) // 2 // ARENA_ALIGNMENT * ARENA_ALIGNMENT
        print(f"try {size}", flush=True)
        works = _works_isolated(model, size)
        print(f"{'ok' if works else 'fail'} {size}", flush=True)
        lo, hi = (lo, size) if works else (size, hi)
    print("done", flush=True)


def _works_isolated(model: bytes, size: int) -> bool:
    """:func:`_works_here` in a forked process where the OS has fork: a crash there costs
    a few milliseconds instead of this whole subprocess."""
    if not hasattr(os, "fork"):
        return _works_here(model, size)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked child
        code = 1
        try:
            code = 0 if _works_here(model, size) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _works_here(model: bytes, size: int) -> bool:
    """Load + one invoke on zero inputs with an arena of ``size`` bytes (may crash)."""
    from tflite_micro import runtime

    with captured_native_stderr():
        try:
            interpreter = runtime.Interpreter.from_bytes(model, arena_size=size)
            for index in range(schema().Model.GetRootAsModel(model, 0).Subgraphs(0).InputsLength()):
                detail = interpreter.get_input_details(index)
                interpreter.set_input(np.zeros(detail["shape"], detail["dtype"]), index)
            interpreter.invoke()
            return True
        except (RuntimeError, ValueError):
            return False
