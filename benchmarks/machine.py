"""The machine's measured matrix-multiply peak, to print beside any throughput (CPUs differ between machines:
only figures measured side by side in one run compare).

    python benchmarks/machine.py
"""

from __future__ import annotations

import time


def matmul_peak(size: int = 2048, seconds: float = 2.0) -> dict[str, float]:
    """GFLOP/s of square matrix products in fp32 and bf16 with torch's current threads.

    A CPU without native bf16 instructions runs bf16 products hundreds of times slower than fp32 (one 2048 x 2048
    product can take a minute), so each dtype is first timed on a 256 x 256 product and measured on the largest
    power of two up to ``size`` whose product takes at most a quarter of ``seconds``.
    """
    import torch

    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        n = 256
        probe = torch.randn(n, n, dtype=dtype)
        probe @ probe  # the first product also starts the thread pool
        start = time.perf_counter()
        probe @ probe
        per_flop = (time.perf_counter() - start) / (2 * n ** 3)
        while n < size and per_flop * 2 * (2 * n) ** 3 <= seconds / 4:
            n *= 2
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b  # warm-up
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            runs += 1
        peaks[name] = 2 * n ** 3 * runs / (time.perf_counter() - start) / 1e9
    return peaks


def _gflops(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def describe(peaks: dict[str, float] | None = None) -> str:
    """The CPU, its threads and its matmul peak (measured now unless ``peaks`` are given)."""
    import platform

    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    peaks = peaks or matmul_peak()
    return (f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}: matmul peak "
            f"fp32 {_gflops(peaks['fp32'])} GFLOP/s, bf16 {_gflops(peaks['bf16'])} GFLOP/s")


if __name__ == "__main__":
    print(describe())
