"""Pick a translator checkpoint by what it is for: closed-loop driving on *training* layouts.

``python -m sim_training.select_translator runs/vr_goggles/snapshots/step_* --episodes 100
--json runs/select_vr_goggles.json`` drives the sim policy through each candidate generator on
the real-proxy look, in layouts drawn from the simulator's ``train`` split, and ranks the
candidates by success rate (then SPL). GAN losses say little about which checkpoint drives
best, and picking on the evaluation layouts would leak the test set into the demo's table; the
training split is disjoint from it (see ``sim_training.envs.chair_nav.SPLITS``).

Candidates run in parallel worker processes (``--workers``, spawned: each has its own EGL
context and one torch thread); the result is the same for any worker count.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
import json
import multiprocessing
from pathlib import Path
import sys
from typing import Any

from vr_goggles.weights import atomic_write_bytes


def evaluate_candidate(model: str, *, policy: str = 'policy_sim', episodes: int = 100,
                       seed: int = 0, engine: str = 'torch',
                       max_episode_steps: int | None = None,
                       floor_prior: bool = False) -> dict[str, Any]:
    """Closed-loop success of ``policy`` behind generator ``model`` on training layouts.

    With ``floor_prior`` the goggled frames pass through :mod:`vr_goggles.floor_prior` at the
    simulator's pose, as in the demo's ``real_vr_goggles_floor`` condition.
    """
    import torch

    from sim_training.evaluate_policy import run_episodes
    from vr_goggles.goggles import Goggles
    from vr_goggles.policy import Policy

    torch.set_num_threads(1)
    transform: Any = Goggles.from_model(model, engine=engine)
    if floor_prior:
        from sim_training.closed_loop import with_floor_prior

        transform, _ = with_floor_prior(transform)
    result = run_episodes(Policy.load(policy), 'real', episodes, seed, transform,
                          progress=False, split='train', max_episode_steps=max_episode_steps,
                          on_info=getattr(transform, 'observe', None))
    return {'model': str(model), 'policy': policy, 'floor_prior': floor_prior,
            'split': result['split'],
            'episodes': result['episodes'], 'success_rate': result['success_rate'],
            'ci95': [round(float(v), 4) for v in result['success_ci95']],
            'spl': round(float(result['spl']), 4), 'mean_steps': result['mean_steps']}


def select(models: list[str], *, policy: str = 'policy_sim', episodes: int = 100,
           seed: int = 0, workers: int = 1, engine: str = 'torch',
           max_episode_steps: int | None = None,
           floor_prior: bool = False) -> list[dict[str, Any]]:
    """Evaluate every candidate; return the results best first (success, then SPL)."""
    if not models:
        raise ValueError('no candidate models given')
    kw = dict(policy=policy, episodes=episodes, seed=seed, engine=engine,
              max_episode_steps=max_episode_steps, floor_prior=floor_prior)
    if workers <= 1:
        results = [evaluate_candidate(m, **kw) for m in models]
    else:
        ctx = multiprocessing.get_context('spawn')
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            results = list(pool.map(_evaluate_kw, [(m, kw) for m in models]))
    return sorted(results, key=lambda r: (-r['success_rate'], -r['spl'], r['model']))


def _evaluate_kw(args: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    model, kw = args
    return evaluate_candidate(model, **kw)


def _candidates(paths: list[str]) -> list[str]:
    """Model paths without suffix, one per candidate (``x.safetensors`` and ``x.json`` -> x)."""
    files: list[str] = []
    for p in paths:
        path = Path(p)
        files.extend(sorted(str(q) for q in path.glob('*.safetensors')) if path.is_dir() else [p])
    stems = (str(Path(f).with_suffix('')) if Path(f).suffix in ('.safetensors', '.json') else f
             for f in files)
    return list(dict.fromkeys(stems))  # first occurrence wins, order kept


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('models', nargs='+',
                   help='generator weights (path or shipped name), or folders of snapshots')
    p.add_argument('--policy', default='policy_sim')
    p.add_argument('--episodes', type=int, default=100)
    p.add_argument('--seed', type=int, default=0, help='permutes the training-split layouts')
    p.add_argument('--workers', type=int, default=1)
    p.add_argument('--engine', default='torch')
    p.add_argument('--max-episode-steps', type=int, default=None,
                   help='episode time limit (default: the environment\'s)')
    p.add_argument('--floor-prior', action='store_true',
                   help='drive behind the goggles + the floor prior (the demo\'s '
                   'real_vr_goggles_floor condition) instead of the goggles alone')
    p.add_argument('--json', type=Path, default=None)
    args = p.parse_args(argv)
    results = select(_candidates(args.models), policy=args.policy, episodes=args.episodes,
                     seed=args.seed, workers=args.workers, engine=args.engine,
                     max_episode_steps=args.max_episode_steps, floor_prior=args.floor_prior)
    for r in results:
        lo, hi = r['ci95']
        print(f"{100 * r['success_rate']:5.1f}% [{100 * lo:4.1f}, {100 * hi:4.1f}]  "
              f"SPL {r['spl']:.3f}  {r['model']}")
    if args.json is not None:
        doc = {'split': 'train', 'episodes': args.episodes, 'seed': args.seed,
               'policy': args.policy, 'floor_prior': args.floor_prior,
               'command': 'python -m sim_training.select_translator '
               + ' '.join(sys.argv[1:] if argv is None else argv), 'ranking': results}
        atomic_write_bytes(args.json, (json.dumps(doc, indent=1) + '\n').encode())
    return 0


if __name__ == '__main__':
    sys.exit(main())
