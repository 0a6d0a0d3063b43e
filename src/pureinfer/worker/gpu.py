"""Measured machine figures for /health and /status: process memory (psutil) and, when an
NVIDIA GPU is present, its memory and utilisation through NVML. No GPU -> None, never a guess."""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

import psutil

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuFigures:
    name: str
    utilization_percent: float
    memory_used_mb: float
    memory_total_mb: float


def process_memory_mb() -> float:
    return round(psutil.Process(os.getpid()).memory_info().rss / 2**20, 1)


@functools.cache
def _nvml_ready() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetCount() > 0
    except Exception:  # no driver, no device: the honest answer is "no GPU figures"
        return False


def gpu_figures(index: int = 0) -> GpuFigures | None:
    if not _nvml_ready():
        return None
    try:
        import pynvml

        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        util = pynvml.nvmlDeviceGetUtilizationRates(handle)
        mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
        name = pynvml.nvmlDeviceGetName(handle)
        return GpuFigures(name if isinstance(name, str) else name.decode(), float(util.gpu),
                          round(mem.used / 2**20, 1), round(mem.total / 2**20, 1))
    except Exception:
        log.warning("NVML query failed", exc_info=True)
        return None
