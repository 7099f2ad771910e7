"""Evaluate an exported navigation policy on the held-out evaluation layouts.

``python -m sim_training.evaluate_policy --policy policy_sim --domain real --episodes 200
--json out.json`` runs :class:`vr_goggles.policy.Policy` (the very code the robot runs, with the
project's one preprocessing path) on ``split='eval'`` layouts only. Layout seeds are a
permutation of ``EVAL_SEEDS`` drawn from ``--seed``, so the same command gives the same JSON.

:func:`run_episodes` is the reusable loop: the closed-loop goggles demo passes the goggles as
``image_transform`` (uint8 RGB image -> uint8 RGB image) in front of the policy.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import json
import os
from pathlib import Path
import sys
import time
from typing import Any

import numpy as np

os.environ.setdefault('PYGLET_HEADLESS', '1')

from sim_training.stats import format_summary, spl_episode, summarize  # noqa: E402
from vr_goggles.policy.actions import ACTION_NAMES, FORWARD, FORWARD_STEP  # noqa: E402

ENV_ID = 'VrGoggles/ChairNav-v0'
DOMAINS = ('sim', 'real', 'randomized')


def eval_seeds(episodes: int, seed: int, split: str = 'eval') -> list[int]:
    """``episodes`` layout seeds of ``split``: a ``seed``-determined permutation, cycled.

    Distinct layouts come first; only an evaluation longer than the split repeats layouts.
    Reported figures use ``split='eval'``; ``'train'`` is for model selection (e.g.
    ``sim_training.select_translator``), so that choosing a model never sees the test layouts.
    """
    from sim_training.envs.chair_nav import split_seeds

    seeds = split_seeds(split)
    pool = np.arange(seeds.start, seeds.stop, seeds.step, dtype=np.int64)
    if pool.size == 0:
        raise ValueError(f'the {split!r} split has no layout seeds')
    order = np.random.default_rng(seed).permutation(pool)
    return [int(order[i % pool.size]) for i in range(episodes)]


def make_chair_env(**kwargs: Any):
    """``gym.make`` ChairNav (registering it first); ``max_episode_steps`` sets its TimeLimit."""
    import gymnasium as gym

    import sim_training  # noqa: F401  (registers the environment)

    return gym.make(ENV_ID, **kwargs)


def _path_step(prev_pos: Any, pos: Any, action: int) -> float:
    """Distance moved by one step: from the agent positions if the env reports them."""
    if prev_pos is not None and pos is not None:
        return float(np.linalg.norm(np.asarray(pos, float) - np.asarray(prev_pos, float)))
    return FORWARD_STEP if action == FORWARD else 0.0


def run_episodes(policy_fn: Callable[[np.ndarray], int], domain: str, episodes: int,
                 seed: int = 0, image_transform: Callable[[np.ndarray], np.ndarray] | None = None,
                 *, obs_size: int = 64, max_episode_steps: int | None = None,
                 progress: bool = True, env_kwargs: dict[str, Any] | None = None,
                 split: str = 'eval',
                 on_step: Callable[[int, np.ndarray, np.ndarray, dict[str, Any]], None]
                 | None = None,
                 on_info: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run ``episodes`` evaluation episodes of ``policy_fn`` in ``domain``; return a summary.

    ``policy_fn`` maps a uint8 RGB observation to an action index (its ``reset()``, if it has
    one, is called at every episode start); ``image_transform`` (e.g. the
    goggles) is applied to every observation first. Path length is what the env
    reports (``info['path_length']``, else summed ``agent_pos`` moves, else forward steps x
    ``FORWARD_STEP``); the SPL reference is ``info['shortest_path']`` (else
    ``start_distance``). The result is
    deterministic for a deterministic ``policy_fn`` (no timings in it). ``on_step(episode,
    camera_image, policy_input, info)`` is called before every decision (reports record frames
    and trajectories through it); it must not change its arguments. ``on_info(info)`` gets the
    env's info after every reset and step, before the next transform (the odometry of a
    transform that needs the pose, e.g. :class:`sim_training.closed_loop.PosedGoggles`).
    """
    from tqdm import tqdm

    if domain not in DOMAINS:
        raise ValueError(f'domain: expected one of {DOMAINS}, got {domain!r}')
    if episodes < 1:
        raise ValueError(f'episodes: expected >= 1, got {episodes}')
    kwargs: dict[str, Any] = {'domain': domain, 'split': split, 'obs_size': obs_size}
    if max_episode_steps is not None:
        kwargs['max_episode_steps'] = max_episode_steps
    kwargs.update(env_kwargs or {})
    env = make_chair_env(**kwargs)
    seeds = eval_seeds(episodes, seed, split)
    records: list[dict[str, Any]] = []
    try:
        bar = tqdm(seeds, desc=f'eval {domain}', unit='ep', disable=not progress, leave=False)
        reset_policy = getattr(policy_fn, 'reset', None)  # stateful (frame-stacking) policies
        for episode, ep_seed in enumerate(bar):
            obs, info = env.reset(seed=ep_seed)
            if on_info is not None:
                on_info(info)
            if reset_policy is not None:
                reset_policy()
            start_distance = float(info.get('start_distance', info.get('distance', 0.0)))
            pos = info.get('agent_pos')
            steps, path, counts = 0, 0.0, [0] * len(ACTION_NAMES)
            terminated = truncated = False
            while not (terminated or truncated):
                img = image_transform(obs) if image_transform is not None else obs
                if on_step is not None:
                    on_step(episode, obs, img, info)
                action = int(policy_fn(img))
                obs, _, terminated, truncated, info = env.step(action)
                if on_info is not None:
                    on_info(info)
                new_pos = info.get('agent_pos')
                path += _path_step(pos, new_pos, action)
                pos = new_pos
                steps += 1
                counts[action] += 1
            success = bool(info.get('success', False))
            # Prefer the env's own SPL reference and odometry; else the fallbacks above.
            shortest = float(info.get('shortest_path', start_distance))
            path = float(info.get('path_length', path))
            records.append({
                'seed': ep_seed, 'success': success, 'steps': steps,
                'collisions': int(info.get('collisions', 0)),
                'start_distance': round(start_distance, 6), 'path_length': round(path, 6),
                'final_distance': round(float(info.get('distance', float('nan'))), 6),
                'shortest_path': round(shortest, 6),
                'spl': round(spl_episode(success, shortest, path), 6),
                'actions': dict(zip(ACTION_NAMES, counts)),
            })
            if progress:
                k = sum(r['success'] for r in records)
                bar.set_postfix(success=f'{k}/{len(records)}')
    finally:
        env.close()
    summary = summarize(records)
    return {'domain': domain, 'seed': seed, 'split': split, 'obs_size': obs_size,
            'image_transform': getattr(image_transform, '__name__',
                                       type(image_transform).__name__)
            if image_transform is not None else None,
            **summary, 'per_episode': records}


def build_parser() -> argparse.ArgumentParser:
    """CLI of ``python -m sim_training.evaluate_policy``."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--policy', default='policy_sim',
                   help='shipped policy name or path to its .safetensors/.json')
    p.add_argument('--domain', choices=DOMAINS, default='sim')
    p.add_argument('--episodes', type=int, default=200)
    p.add_argument('--seed', type=int, default=0, help='picks the evaluation layouts')
    p.add_argument('--split', choices=('eval', 'train'), default='eval',
                   help='layouts to run: eval (reported figures) or train (choosing a '
                        'checkpoint without looking at the evaluation layouts)')
    p.add_argument('--max-episode-steps', type=int, default=None,
                   help="override the environment's episode limit")
    p.add_argument('--json', default=None, help='write the full result here')
    p.add_argument('--update-card', action='store_true',
                   help="record the summary in the policy card's metrics (eval_<domain>)")
    p.add_argument('--no-progress', action='store_true')
    return p


def main(argv: list[str] | None = None) -> int:
    """Evaluate, print one summary line, optionally write JSON / update the card."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.update_card and args.split != 'eval':
        parser.error('--update-card records evaluation-split figures only (--split eval)')
    import torch

    torch.set_num_threads(1)
    from vr_goggles.policy import Policy

    policy = Policy.load(args.policy)
    t0 = time.perf_counter()
    result = run_episodes(policy, args.domain, args.episodes, args.seed,
                          max_episode_steps=args.max_episode_steps,
                          progress=not args.no_progress, split=args.split)
    wall = time.perf_counter() - t0
    result['policy'] = policy.card.name
    print(format_summary(result, f'{policy.card.name} in {args.domain}'))
    print(f'({args.episodes} episodes in {wall:.1f} s)', file=sys.stderr)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + '\n', encoding='utf-8')
    if args.update_card:
        from sim_training.export_policy import update_card_metrics

        brief = {k: v for k, v in result.items() if k != 'per_episode'}
        brief['command'] = 'python -m sim_training.evaluate_policy ' + ' '.join(
            sys.argv[1:] if argv is None else argv)
        update_card_metrics(args.policy, f'eval_{args.domain}', brief)
    return 0


if __name__ == '__main__':
    sys.exit(main())
