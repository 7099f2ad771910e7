"""Latency statistics and memory measurement for ``vr-goggles bench``.

:func:`time_engine` itself lives in :mod:`vr_goggles.engines.timing`, since the ``auto``
selection times backends too and the engines never import the benchmarks.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _proc_status_kb(field: str) -> int | None:
    """A ``/proc/self/status`` field in kB (Linux), or ``None`` elsewhere."""
    try:
        with open('/proc/self/status', encoding='ascii') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) by writing 5 to ``/proc/self/clear_refs``.

    This gives a per-measurement peak without psutil; returns False where unsupported (then the
    peak is the process-lifetime maximum and deltas read 0 unless memory grew).
    """
    try:
        with open('/proc/self/clear_refs', 'w', encoding='ascii') as f:
            f.write('5')
        return True
    except OSError:
        return False


class PeakMemory:
    """Context manager: peak memory added while inside, in MiB.

    CPU: VmHWM after minus VmRSS before (resident set, includes allocator caches and the
    backend's workspace). CUDA: ``torch.cuda.max_memory_allocated`` after a reset (tensors only,
    not the CUDA context).
    """

    def __init__(self, device: str = 'cpu'):
        self.device = device
        self.kind = 'cuda_max_memory_allocated' if device.startswith('cuda') else 'cpu_rss_hwm'
        self.peak_mb: float | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.startswith('cuda'):
            import torch
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._reset_ok = reset_peak_rss()
            self._base = _proc_status_kb('VmRSS')
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.startswith('cuda'):
            import torch
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            self.peak_mb = max(0.0, (peak - self._base) / 2**20)
        else:
            hwm = _proc_status_kb('VmHWM')
            if hwm is not None and self._base is not None:
                self.peak_mb = max(0.0, (hwm - self._base) / 1024.0)
            if not self._reset_ok:
                self.kind = 'cpu_rss_hwm_lifetime'


def latency_stats(times_s: np.ndarray, batch: int) -> dict[str, float]:
    """p50/p90/p99/mean latency in ms per batch, and throughput in images/s.

    Throughput is taken at the median latency: on shared machines a few preempted calls would
    otherwise dominate the mean (which is reported too).
    """
    ms = np.asarray(times_s, dtype=np.float64) * 1e3
    p50 = float(np.percentile(ms, 50))
    return {'p50_ms': p50, 'p90_ms': float(np.percentile(ms, 90)),
            'p99_ms': float(np.percentile(ms, 99)), 'mean_ms': float(ms.mean()),
            'throughput_ips': float(batch * 1e3 / p50) if p50 > 0 else float('inf')}
