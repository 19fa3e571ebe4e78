"""This machine's fp32 peak, from its CPU flags and a measured clock (for the benchmark's % of peak).

peak = cores x fp32 lanes per vector x 2 (an FMA is two flops) x FMA issues per cycle x clock.

- lanes: 16 with ``avx512f`` (the kernel is built with ``-mavx512f`` there), 8 with ``avx2`` +
  ``fma``, else 4 (SSE), read from ``/proc/cpuinfo``.
- clock: a chain of dependent register adds (one cycle each on every x86-64 core) timed in a
  small C program compiled on the spot; the fastest of several short runs, so that time slices
  lost to other processes do not count.
- FMA issues per cycle: measured with 12 independent FMA chains at the kernel's vector width,
  divided by the measured clock and rounded; if that cannot run, 2 is assumed (two FMA pipes, as
  on Zen 2-5 and Intel server cores; Zen 4 runs a 512-bit FMA as two halves, which the
  measurement sees as 1).
- cores: physical cores (``cpu cores`` x sockets in ``/proc/cpuinfo``), else ``os.cpu_count()``.

    python tools/machine_peak.py     # prints the figures and how each was obtained
"""

from __future__ import annotations

import ctypes
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

ASSUMED_FMA_PER_CYCLE = 2
ADDS_PER_ITERATION = 100
FMA_CHAINS = 12

PROBE_SOURCE = r"""
#include <stdint.h>
#include <time.h>
static double now(void) {
  struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec;
}
/* seconds for iters x 100 dependent 1-cycle adds (the loop counter runs alongside) */
double add_chain_seconds(long iters) {
  uint64_t x = 0, one = 1;
  double start = now();
  for (long i = 0; i < iters; ++i) {
    __asm__ volatile(".rept 100\n\taddq %1, %0\n\t.endr" : "+r"(x) : "r"(one));
  }
  return now() - start;
}
typedef float vec __attribute__((vector_size(LANES * 4)));
/* seconds for iters x 12 independent vector FMAs (12 named accumulators: all in registers) */
double fma_seconds(long iters, float a, float b) {
  vec va = {0}, vb = {0};
  va += a; vb += b;
  vec a0 = va, a1 = va * 2, a2 = va * 3, a3 = va * 4, a4 = va * 5, a5 = va * 6;
  vec a6 = va * 7, a7 = va * 8, a8 = va * 9, a9 = va * 10, a10 = va * 11, a11 = va * 12;
  double start = now();
  for (long i = 0; i < iters; ++i) {
    a0 = a0 * va + vb; a1 = a1 * va + vb; a2 = a2 * va + vb; a3 = a3 * va + vb;
    a4 = a4 * va + vb; a5 = a5 * va + vb; a6 = a6 * va + vb; a7 = a7 * va + vb;
    a8 = a8 * va + vb; a9 = a9 * va + vb; a10 = a10 * va + vb; a11 = a11 * va + vb;
  }
  double seconds = now() - start;
  vec sum = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
  return seconds + 0.0 * sum[0];
}
"""


class Peak:
    """The fp32 peak and its parts; ``*_how`` say whether a part was measured or assumed."""

    def __init__(self, cores: int, lanes: int, fma_per_cycle: float, ghz: float | None,
                 fma_how: str, ghz_how: str):
        self.cores, self.lanes, self.fma_per_cycle, self.ghz = cores, lanes, fma_per_cycle, ghz
        self.fma_how, self.ghz_how = fma_how, ghz_how

    @property
    def gflops(self) -> float | None:
        return None if self.ghz is None else peak_gflops(self.cores, self.lanes, self.fma_per_cycle, self.ghz)

    def describe(self) -> str:
        if self.ghz is None:
            return f"fp32 peak unknown ({self.ghz_how})"
        return (f"fp32 peak {self.gflops:.0f} GFLOP/s = {self.cores} cores x {self.lanes} lanes x 2 "
                f"x {self.fma_per_cycle:g} FMA/cycle ({self.fma_how}) x {self.ghz:.2f} GHz ({self.ghz_how})")


def peak_gflops(cores: int, lanes: int, fma_per_cycle: float, ghz: float) -> float:
    """fp32 GFLOP/s when every core issues ``fma_per_cycle`` ``lanes``-wide FMAs each cycle."""
    return cores * lanes * 2.0 * fma_per_cycle * ghz


def cpu_features(cpuinfo: str) -> set[str]:
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def fp32_lanes(features: set[str]) -> int:
    """fp32 lanes of the widest vector the kernel is compiled for (see kernels/build.py)."""
    if {"avx2", "fma"} <= features:
        return 16 if "avx512f" in features else 8
    return 4


def physical_cores(cpuinfo: str) -> int:
    """``cpu cores`` x distinct ``physical id`` (hyper-threads are not cores); cpu_count if absent."""
    per_socket = {line.split(":")[1].strip() for line in cpuinfo.splitlines() if line.startswith("cpu cores")}
    sockets = {line.split(":")[1].strip() for line in cpuinfo.splitlines() if line.startswith("physical id")}
    if len(per_socket) == 1:
        cores = int(per_socket.pop()) * max(1, len(sockets))
        return min(cores, os.cpu_count() or cores)
    return os.cpu_count() or 1


def fma_per_cycle_from(seconds: float, iters: int, ghz: float) -> float:
    """FMA instructions per cycle from the FMA probe's time, rounded to a whole number (>= 1)."""
    per_cycle = iters * FMA_CHAINS / (seconds * ghz * 1e9)
    return max(1.0, float(round(per_cycle)))


def _compile_probe(lanes: int, workdir: Path):
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise RuntimeError("no C compiler on PATH")
    arch = {16: ["-mavx512f", "-mfma"], 8: ["-mavx2", "-mfma"], 4: []}[lanes]
    source, library = workdir / "probe.c", workdir / "probe.so"
    source.write_text(PROBE_SOURCE)
    subprocess.run([cc, "-O2", "-shared", "-fPIC", *arch, f"-DLANES={lanes}", str(source), "-o", str(library)],
                   check=True, capture_output=True, timeout=60)
    probe = ctypes.CDLL(str(library))
    probe.add_chain_seconds.restype = ctypes.c_double
    probe.add_chain_seconds.argtypes = [ctypes.c_long]
    probe.fma_seconds.restype = ctypes.c_double
    probe.fma_seconds.argtypes = [ctypes.c_long, ctypes.c_float, ctypes.c_float]
    return probe


def measure(repeats: int = 30, iters: int = 20_000) -> tuple[float, float]:
    """``(GHz, FMA issues per cycle)`` on one core: fastest of ``repeats`` runs of each probe
    (each ~1 ms at 3 GHz). Raises RuntimeError/OSError/CalledProcessError where it cannot run."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        raise RuntimeError(f"the clock probe is x86-64 assembly ({platform.machine()})")
    lanes = fp32_lanes(cpu_features(Path("/proc/cpuinfo").read_text()))
    with tempfile.TemporaryDirectory() as tmp:
        probe = _compile_probe(lanes, Path(tmp))
        add = min(probe.add_chain_seconds(iters) for _ in range(repeats))
        ghz = iters * ADDS_PER_ITERATION / add / 1e9
        fma = min(probe.fma_seconds(iters * 10, 0.999999, 1e-6) for _ in range(repeats))
    return ghz, fma_per_cycle_from(fma, iters * 10, ghz)


def machine_peak() -> Peak:
    """This machine's :class:`Peak`; the clock and FMA rate measured where the probe runs."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    lanes, cores = fp32_lanes(cpu_features(cpuinfo)), physical_cores(cpuinfo)
    try:
        ghz, fma = measure()
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        return Peak(cores, lanes, ASSUMED_FMA_PER_CYCLE, None, "assumed", f"clock not measured: {err}")
    return Peak(cores, lanes, fma, ghz, "measured", "measured: dependent-add chain")


if __name__ == "__main__":
    print(machine_peak().describe())
