"""Rates and latency percentiles over a sliding window, for node diagnostics and benchmarks.

Plain Python (no numpy, no ROS) so that recording a sample costs a deque append on the hot
path; the sorting happens only when a summary is asked for (about once a second).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
import math
import threading
import time


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` (q in 0-100), linearly interpolated like numpy.

    NaN for no values, so an idle node reports "no data" instead of a fake zero latency.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f'q: expected a percentile in [0, 100], got {q}')
    data = sorted(values)
    if not data:
        return math.nan
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


class RateMeter:
    """Events per second over the last ``window`` seconds (monotonic clock by default).

    The rate decays towards zero when events stop, so a dead camera reads as 0 Hz, not as
    the last rate it had.
    """

    def __init__(self, window: float = 5.0, clock=time.monotonic) -> None:
        if window <= 0:
            raise ValueError(f'window: expected > 0 seconds, got {window}')
        self.window = float(window)
        self._clock = clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self.total = 0

    def tick(self, t: float | None = None) -> None:
        """Record one event at time ``t`` (default: now)."""
        t = self._clock() if t is None else t
        with self._lock:
            self._times.append(t)
            self.total += 1
            self._trim(t)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()

    def rate(self, now: float | None = None) -> float:
        """Events per second in the window ending at ``now`` (0.0 with fewer than 2 events)."""
        now = self._clock() if now is None else now
        with self._lock:
            self._trim(now)
            n = len(self._times)
            if n < 2:
                return 0.0
            span = max(now, self._times[-1]) - self._times[0]
            return (n - 1) / span if span > 0 else 0.0


class LatencyStats:
    """The last ``maxlen`` latency samples (seconds) with percentile summaries."""

    def __init__(self, maxlen: int = 1000) -> None:
        if maxlen < 1:
            raise ValueError(f'maxlen: expected >= 1, got {maxlen}')
        self._samples: deque[float] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.total = 0

    def add(self, seconds: float) -> None:
        """Record one latency sample."""
        with self._lock:
            self._samples.append(float(seconds))
            self.total += 1

    def samples(self) -> list[float]:
        """Copy of the samples in the window."""
        with self._lock:
            return list(self._samples)

    def percentile(self, q: float) -> float:
        """``q``-th percentile of the window in seconds (NaN when empty)."""
        return percentile(self.samples(), q)

    def summary(self) -> dict[str, float]:
        """``count``, ``p50``, ``p90``, ``p99``, ``max`` and ``mean`` in milliseconds."""
        data = self.samples()
        if not data:
            return {'count': 0, 'p50': math.nan, 'p90': math.nan, 'p99': math.nan,
                    'max': math.nan, 'mean': math.nan}
        return {'count': len(data),
                'p50': 1e3 * percentile(data, 50), 'p90': 1e3 * percentile(data, 90),
                'p99': 1e3 * percentile(data, 99), 'max': 1e3 * max(data),
                'mean': 1e3 * sum(data) / len(data)}

    def clear(self) -> None:
        """Forget the window (totals stay)."""
        with self._lock:
            self._samples.clear()
