"""The benchmark's % of peak: the peak arithmetic, the CPU-flag parsing, and the clock probe."""

import platform
import shutil

import pytest

from helpers import load_tool

peak = load_tool("machine_peak")

CPUINFO = """processor\t: 0
physical id\t: 0
cpu cores\t: 2
flags\t\t: fpu sse sse2 avx avx2 fma f16c
processor\t: 1
physical id\t: 0
cpu cores\t: 2
flags\t\t: fpu sse sse2 avx avx2 fma f16c
"""


def test_peak_arithmetic():
    # 2 cores x 8 lanes x 2 flops per FMA x 2 FMA/cycle x 3 GHz
    assert peak.peak_gflops(2, 8, 2, 3.0) == 192.0
    assert peak.peak_gflops(2, 16, 1, 3.5) == 224.0
    # 20k iterations x 12 FMAs in 80 us at 3 GHz = 1 per cycle; 2 when twice as fast
    assert peak.fma_per_cycle_from(80e-6, 20_000, 3.0) == 1.0
    assert peak.fma_per_cycle_from(41e-6, 20_000, 3.0) == 2.0
    p = peak.Peak(cores=2, lanes=8, fma_per_cycle=2, ghz=3.0, fma_how="measured", ghz_how="measured")
    assert p.gflops == 192.0 and "192 GFLOP/s" in p.describe()
    assert peak.Peak(2, 8, 2, None, "assumed", "no probe").gflops is None


def test_flags_and_cores_from_cpuinfo():
    features = peak.cpu_features(CPUINFO)
    assert peak.fp32_lanes(features) == 8
    assert peak.fp32_lanes(features | {"avx512f", "avx512_bf16"}) == 16
    assert peak.fp32_lanes({"sse", "sse2", "avx"}) == 4
    assert peak.physical_cores(CPUINFO) == 2
    hyperthreaded = CPUINFO.replace("cpu cores\t: 2", "cpu cores\t: 1")
    assert peak.physical_cores(hyperthreaded) == 1


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64") or not shutil.which("cc"),
                    reason="the probe is x86-64 assembly compiled with cc")
def test_probe_measures_a_plausible_clock():
    ghz, fma = peak.measure(repeats=5, iters=5_000)
    assert 0.5 < ghz < 7.0 and fma in (1.0, 2.0, 3.0, 4.0)
