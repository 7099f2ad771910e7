"""Measure ChairNav-v0 steps per second, one process, per domain, with labels off and on.

``python -m sim_training.bench_env [--size 64] [--steps 2000] [--domains sim real randomized]``

Random actions; episode resets are included in the timing (as in training). The figures vary
with machine load, so compare runs made back to back.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def bench(domain: str, size: int, steps: int, labels: bool,
          seed: int = 0) -> tuple[float, float]:
    """(wall-clock, CPU-time) steps per second of ``steps`` random steps after a warm-up.

    CPU time (this process, all threads) is the steadier figure on a shared machine.
    """
    from sim_training.envs.chair_nav import ChairNavEnv

    env = ChairNavEnv(domain=domain, obs_size=size, labels=labels)
    try:
        rng = np.random.default_rng(seed)
        env.reset(seed=seed)
        for _ in range(20):  # warm-up: texture uploads, first display lists
            env.step(int(rng.integers(3)))
        actions = rng.integers(3, size=steps)
        env.reset(seed=seed + 1)
        t0, c0 = time.perf_counter(), time.process_time()
        for a in actions:
            _, _, terminated, truncated, _ = env.step(int(a))
            if terminated or truncated:
                env.reset()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return steps / wall, steps / max(cpu, 1e-9)
    finally:
        env.close()


def main(argv: list[str] | None = None) -> int:
    """Print a table (and optionally JSON) of steps/s per domain and label setting."""
    p = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    p.add_argument('--size', type=int, default=64, help='observation size (default 64)')
    p.add_argument('--steps', type=int, default=2000, help='timed steps per setting')
    p.add_argument('--domains', nargs='+', default=['sim', 'real', 'randomized'],
                   choices=['sim', 'real', 'randomized'])
    p.add_argument('--json', action='store_true', help='also print the results as JSON')
    args = p.parse_args(argv)
    import sim_training  # noqa: F401  (headless pyglet before the env module loads)

    results = {}
    print(f'ChairNav-v0 at {args.size}x{args.size}, {args.steps} random steps, one process')
    print('steps/s: wall clock (CPU time in brackets); label cost = step time with labels / '
          'without, from CPU time')
    print(f'{"domain":<12}{"no labels":>16}{"labels":>16}{"label cost":>12}')
    for domain in args.domains:
        off, off_cpu = bench(domain, args.size, args.steps, labels=False)
        on, on_cpu = bench(domain, args.size, args.steps, labels=True)
        results[domain] = {'steps_per_s': round(off, 1), 'steps_per_s_labels': round(on, 1),
                           'cpu_steps_per_s': round(off_cpu, 1),
                           'cpu_steps_per_s_labels': round(on_cpu, 1),
                           'label_cost_ratio': round(off_cpu / on_cpu, 3)}
        print(f'{domain:<12}{off:>8.0f} ({off_cpu:>4.0f}){on:>9.0f} ({on_cpu:>4.0f})'
              f'{off_cpu / on_cpu:>11.2f}x', flush=True)
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == '__main__':
    sys.exit(main())
