"""The machine's measured matrix-multiply peak, to print beside any throughput (CPUs differ between machines:
only figures measured side by side in one run compare).

    python benchmarks/machine.py
"""

from __future__ import annotations

import time


def matmul_peak(size: int = 2048, seconds: float = 2.0) -> dict[str, float]:
    """GFLOP/s of square matrix products in fp32 and bf16 with torch's current threads."""
    import torch

    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        a @ b  # warm-up
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            runs += 1
        peaks[name] = 2 * size ** 3 * runs / (time.perf_counter() - start) / 1e9
    return peaks


def describe(peaks: dict[str, float] | None = None) -> str:
    """The CPU, its threads and its matmul peak (measured now unless ``peaks`` are given)."""
    import platform

    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    peaks = peaks or matmul_peak()
    return (f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}: matmul peak "
            f"fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")


if __name__ == "__main__":
    print(describe())
