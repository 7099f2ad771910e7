"""Seconds per engine call.

What ``engine='auto'`` compares backends by, and what ``vr-goggles bench`` reports
(:mod:`vr_goggles.bench.engines` adds the statistics).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        import torch
        torch.cuda.synchronize(device)


def time_engine(engine: Any, batch: np.ndarray, *, warmup: int = 2,
                iters: int = 10) -> np.ndarray:
    """Seconds per call of ``engine(batch)`` after ``warmup`` untimed calls."""
    device = str(getattr(engine, 'device', 'cpu'))
    for _ in range(max(0, warmup)):
        engine(batch)
    _sync(device)
    times = np.empty(max(1, iters))
    for i in range(len(times)):
        t0 = time.perf_counter()
        engine(batch)
        _sync(device)
        times[i] = time.perf_counter() - t0
    return times
