"""Where in a recording the goggles stop working: the domain score of every replayed frame.

The goggles hallucinate on frames unlike their training look (issue #37), and ``policy_node``
stops the robot with :class:`vr_goggles.goggles.domain_score.DomainGuard` when the
:class:`~vr_goggles.goggles.domain_score.DomainScore` of ``stop_after`` consecutive camera
frames falls below the card's threshold. A replay scores every frame it translates (the decoded
camera frame, as the node does) and runs the same guard over the sequence, so the metrics say
how often and for how long the robot would have been held, where it first stops and how long
the longest stretch of unknown frames lasts. Plain numpy, no ROS; the report draws the plot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vr_goggles.goggles.domain_score import DomainGuard

DEFINITION = ('DomainScore of the decoded camera frame: ~0 for a typical in-domain frame, '
              'lower = less like the goggles\' training look; below the threshold about 1 '
              'in-domain frame in 100. The guard is policy_node\'s stop rule (DomainGuard): '
              'stop after stop_after consecutive frames below, resume after resume_after at or '
              'above; a NaN score counts as below (null in per_frame, left out of median and '
              'min). t: seconds since the first translated frame (log time); stamp: the '
              'header stamp (s)')


@dataclass
class ScoreSeries:
    """Per-frame scores as the pipeline produces them, in frame order."""

    index: list[int] = field(default_factory=list)     # position in the camera topic
    stamp: list[float] = field(default_factory=list)   # header stamp (s)
    log_time: list[int] = field(default_factory=list)  # bag log time (ns)
    score: list[float] = field(default_factory=list)
    seconds: float = 0.0                               # time spent scoring

    def add(self, index: int, stamp: tuple[int, int], log_time: int, score: float) -> None:
        """Record one scored frame."""
        self.index.append(int(index))
        self.stamp.append(stamp[0] + 1e-9 * stamp[1])
        self.log_time.append(int(log_time))
        self.score.append(float(score))


def guard_over(scores: Sequence[float], guard: DomainGuard
               ) -> tuple[list[bool], list[tuple[int, int | None]]]:
    """Run ``guard`` over ``scores``: per-frame ``stopped`` (after the frame) and the stop spans.

    A span is ``(position where it stopped, position where it resumed)``; the end is ``None``
    when the sequence ends while stopped.
    """
    stopped: list[bool] = []
    spans: list[tuple[int, int | None]] = []
    for i, s in enumerate(scores):
        state = guard.update(s)
        stopped.append(state.stopped)
        if state.changed and state.stopped:
            spans.append((i, None))
        elif state.changed:
            spans[-1] = (spans[-1][0], i)
    return stopped, spans


def _longest_below(low: np.ndarray) -> tuple[int, int]:
    """``(start, length)`` of the longest run of ``True`` in ``low`` (the first if tied)."""
    best, run_start = (0, 0), None
    for i, v in enumerate([*low.tolist(), False]):
        if v and run_start is None:
            run_start = i
        elif not v and run_start is not None:
            if i - run_start > best[1]:
                best = (run_start, i - run_start)
            run_start = None
    return best


def summarize(series: ScoreSeries, threshold: float, *, name: str = '', weights: str = '',
              engine: str = '', stop_after: int | None = None,
              resume_after: int | None = None) -> dict[str, Any]:
    """The ``domain_score`` entry of the metrics: summary, guard events, per-frame series.

    ``stop_after`` / ``resume_after``: the guard's rule; ``None`` takes :class:`DomainGuard`'s
    defaults, which are ``policy_node``'s.
    """
    scores = np.asarray(series.score, dtype=np.float64)
    n = len(scores)
    t0 = series.log_time[0] if n else 0
    t = [round((lt - t0) / 1e9, 6) for lt in series.log_time]  # ns noise out of the JSON
    low = ~(scores >= threshold)  # NaN counts as below, as in the guard
    rule = DomainGuard(threshold, **{k: v for k, v in (('stop_after', stop_after),
                                                       ('resume_after', resume_after))
                                     if v is not None})
    stopped, spans = guard_over(series.score, rule)

    def at(i: int) -> dict[str, Any]:
        return {'index': series.index[i], 'stamp': series.stamp[i], 't': t[i]}

    stops = []
    for a, b in spans:
        end = b if b is not None else n - 1
        stops.append({'start': at(a), 'end': at(b) if b is not None else None,
                      'resumed': b is not None, 'frames': end - a + (0 if b is not None else 1),
                      'duration_s': round(t[end] - t[a], 6)})
    start, length = _longest_below(low)
    finite = scores[np.isfinite(scores)]
    return {
        'name': name,
        'weights': weights,
        'engine': engine,
        'threshold': float(threshold),
        'frames': n,
        'median': float(np.median(finite)) if finite.size else None,
        'min': float(finite.min()) if finite.size else None,
        'below_threshold': int(low.sum()),
        'share_below': float(low.mean()) if n else None,
        'longest_run_below': ({**at(start), 'frames': length,
                               'duration_s': round(t[start + length - 1] - t[start], 6)}
                              if length else None),
        'guard': {'stop_after': rule.stop_after, 'resume_after': rule.resume_after,
                  'stop_events': len(spans), 'stopped_frames': int(sum(stopped)),
                  'stopped_s': round(float(sum(s['duration_s'] for s in stops)), 6),
                  'first_stop': stops[0]['start'] if stops else None,
                  'stops': stops},
        'ms_per_frame': series.seconds * 1e3 / n if n else None,
        'definition': DEFINITION,
        'per_frame': {'index': series.index, 'stamp': series.stamp,
                      't': t,
                      'score': [round(float(s), 4) if np.isfinite(s) else None
                                for s in series.score],
                      'stopped': stopped},
    }


def _num(v: float | None, fmt: str = '.2f') -> str:
    return '-' if v is None else format(v, fmt)


def where_text(at: dict[str, Any] | None) -> str:
    """``"frame 8, t = 0.80 s (stamp 1700000000.800000)"``, or ``never``."""
    if at is None:
        return 'never'
    return f"frame {at['index']}, t = {at['t']:.2f} s (stamp {at['stamp']:.6f})"


def summary_rows(dm: dict[str, Any]) -> dict[str, Any]:
    """The report's summary-table rows for a ``domain_score`` metrics entry."""
    g = dm['guard']
    run = dm['longest_run_below']
    share = dm['share_below']
    return {
        'domain score (median; threshold)': f"{_num(dm['median'])}; {dm['threshold']:.2f}",
        'frames below threshold': (f"{dm['below_threshold']} of {dm['frames']}"
                                   + (f' ({share:.1%})' if share is not None else '')),
        f"guard stops (stop after {g['stop_after']}, resume after {g['resume_after']})":
            f"{g['stop_events']}, {g['stopped_s']:.2f} s stopped ({g['stopped_frames']} frames)",
        'first stop': where_text(g['first_stop']),
        'longest run below': ('none' if run is None else
                              f"{run['frames']} frames ({run['duration_s']:.2f} s) from "
                              + where_text(run)),
    }


def summary_line(dm: dict[str, Any]) -> str:
    """One line for the CLI summary."""
    g = dm['guard']
    share = dm['share_below']
    run = dm['longest_run_below']
    return (f"domain score ({dm['engine']}): median {_num(dm['median'])}, "
            f"{dm['below_threshold']} of {dm['frames']} frames"
            + (f' ({share:.1%})' if share is not None else '')
            + f" below {dm['threshold']:.2f}; guard would stop {g['stop_events']} time(s), "
            f"{g['stopped_s']:.2f} s in all, first at {where_text(g['first_stop'])}; longest "
            f"run below {run['frames'] if run else 0} frames")
