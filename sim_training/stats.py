"""Evaluation statistics shared by policy evaluation and the closed-loop goggles demo.

Success rates come with a Wilson score interval because evaluations here are a few hundred
episodes with rates near 0 or 1, where the normal (Wald) interval collapses or leaves [0, 1].
SPL is Anderson et al. 2018: success weighted by shortest / max(taken, shortest) path length.
"""

from __future__ import annotations

from collections.abc import Sequence
import math
from typing import Any

#: Two-sided 95 % standard-normal quantile.
Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` for ``successes`` out of ``n`` trials."""
    if n <= 0:
        raise ValueError(f'n: expected a positive number of trials, got {n}')
    if not 0 <= successes <= n:
        raise ValueError(f'successes: expected 0..{n}, got {successes}')
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # The ends are exact (0 and 1), not 1e-16 off by rounding.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def spl_episode(success: bool, shortest: float, taken: float) -> float:
    """Success weighted by path length for one episode (0 on failure)."""
    if not success:
        return 0.0
    if shortest <= 0:
        return 1.0
    return float(shortest / max(taken, shortest))


def summarize(episodes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate per-episode records (keys ``success``, ``spl``, ``steps``, ``collisions``).

    Returns success rate with its 95 % Wilson interval, SPL, and means; the success rate and the
    interval are fractions in [0, 1].
    """
    n = len(episodes)
    if n == 0:
        raise ValueError('episodes: nothing to summarize')
    k = sum(1 for e in episodes if e['success'])
    low, high = wilson_interval(k, n)

    def mean(key: str, subset: Sequence[dict[str, Any]] = episodes) -> float | None:
        vals = [float(e[key]) for e in subset if e.get(key) is not None]
        return sum(vals) / len(vals) if vals else None

    succ = [e for e in episodes if e['success']]
    return {
        'episodes': n,
        'successes': k,
        'success_rate': k / n,
        'success_ci95': [low, high],
        'spl': mean('spl'),
        'mean_steps': mean('steps'),
        'mean_steps_success': mean('steps', succ),
        'mean_collisions': mean('collisions'),
        'collision_episodes': sum(1 for e in episodes if e.get('collisions', 0) > 0),
        'mean_final_distance': mean('final_distance'),
    }


def format_summary(summary: dict[str, Any], label: str = '') -> str:
    """One human-readable line: ``label: success 97.0% [93.6, 98.6] SPL 0.81 ...``."""
    low, high = summary['success_ci95']
    parts = [f'{label}: ' if label else '',
             f'success {100 * summary["success_rate"]:.1f}% [{100 * low:.1f}, {100 * high:.1f}]'
             f' ({summary["successes"]}/{summary["episodes"]})']
    if summary.get('spl') is not None:
        parts.append(f', SPL {summary["spl"]:.3f}')
    if summary.get('mean_steps') is not None:
        parts.append(f', mean steps {summary["mean_steps"]:.1f}')
    if summary.get('mean_collisions') is not None:
        parts.append(f', mean collisions {summary["mean_collisions"]:.2f}')
    return ''.join(parts)
