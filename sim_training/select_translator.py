"""Pick a translator checkpoint by what it is for: closed-loop driving on *training* layouts.

``python -m sim_training.select_translator runs/vr_goggles/snapshots/step_* --episodes 100
--json runs/select_vr_goggles.json`` drives the sim policy through each candidate generator on
the real-proxy look, in layouts drawn from the simulator's ``train`` split, and ranks the
candidates by success rate (then SPL). GAN losses say little about which checkpoint drives
best, and picking on the evaluation layouts would leak the test set into the demo's table; the
training split is disjoint from it (see ``sim_training.envs.chair_nav.SPLITS``).

Candidates run in parallel worker processes (``--workers``, spawned: each has its own EGL
context and one torch thread); the result is the same for any worker count. A selection can
run for an hour (21 candidates x 100 episodes: 38 min on two cores), so with ``--json`` the
file is rewritten atomically after every candidate (``"complete": false`` until the last), and
``--resume`` drives only the candidates it does not hold yet, refusing a file made with other
settings.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
import json
import multiprocessing
from pathlib import Path
import sys
from typing import Any

from sim_training.config_cli import setting_differences
from vr_goggles.weights import atomic_write_bytes


def evaluate_candidate(model: str, *, policy: str = 'policy_sim', episodes: int = 100,
                       seed: int = 0, engine: str = 'torch',
                       max_episode_steps: int | None = None,
                       floor_prior: bool = False) -> dict[str, Any]:
    """Closed-loop success of ``policy`` behind generator ``model`` on training layouts.

    With ``floor_prior`` the goggled frames pass through :mod:`vr_goggles.goggles.floor_prior` at
    the
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
           max_episode_steps: int | None = None, floor_prior: bool = False,
           done: dict[str, dict[str, Any]] | None = None,
           on_result: Callable[[list[dict[str, Any]]], None] | None = None,
           progress: bool = False) -> list[dict[str, Any]]:
    """Evaluate every candidate; return the results best first (success, then SPL).

    ``done`` maps models to results already measured with the same settings (not driven
    again); ``on_result(ranking so far)`` runs after each candidate, in completion order.
    """
    if not models:
        raise ValueError('no candidate models given')
    kw = dict(policy=policy, episodes=episodes, seed=seed, engine=engine,
              max_episode_steps=max_episode_steps, floor_prior=floor_prior)
    done = done or {}
    results = [done[m] for m in models if m in done]
    todo = [m for m in models if m not in done]
    from tqdm import tqdm

    bar = tqdm(total=len(models), initial=len(results), unit='candidate', disable=not progress)

    def finished(result: dict[str, Any]) -> None:
        results.append(result)
        bar.update(1)
        if progress:
            bar.write(f"{100 * result['success_rate']:5.1f}%  {result['model']}")
        if on_result is not None:
            on_result(_ranked(results))

    try:
        if workers <= 1:
            for m in todo:
                finished(evaluate_candidate(m, **kw))
        elif todo:
            ctx = multiprocessing.get_context('spawn')
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = [pool.submit(evaluate_candidate, m, **kw) for m in todo]
                for future in as_completed(futures):
                    finished(future.result())
    finally:
        bar.close()
    return _ranked(results)


def _ranked(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(results, key=lambda r: (-r['success_rate'], -r['spl'], r['model']))


def _candidates(paths: list[str]) -> list[str]:
    """Model paths without suffix, one per candidate (``x.safetensors`` and ``x.json`` -> x)."""
    files: list[str] = []
    for p in paths:
        path = Path(p)
        files.extend(sorted(str(q) for q in path.glob('*.safetensors')) if path.is_dir() else [p])
    stems = (str(Path(f).with_suffix('')) if Path(f).suffix in ('.safetensors', '.json') else f
             for f in files)
    return list(dict.fromkeys(stems))  # first occurrence wins, order kept


def load_partial(path: Path, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Results of an earlier (possibly interrupted) run in ``path``, keyed by model.

    ``settings``: this run's (``split`` and :func:`select`'s keywords but ``workers``), which
    the file must share. Raises ``ValueError`` naming the file and the reason when it is
    unreadable, not a selection, or made with other settings (its figures would not be
    comparable).
    """
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f'{path}: cannot resume from it: {e}') from e
    if not isinstance(doc, dict) or not isinstance(doc.get('ranking'), list) or not all(
            isinstance(r, dict) and {'model', 'success_rate', 'spl'} <= r.keys()
            for r in doc['ranking']):
        raise ValueError(f'{path}: cannot resume from it: not a select_translator result')
    diff = setting_differences(doc, settings, settings)
    if diff:
        raise ValueError(f'{path}: cannot resume from it: made with other settings ({diff})')
    return {r['model']: r for r in doc['ranking']}


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (every flag with its help)."""
    p = argparse.ArgumentParser(prog='python -m sim_training.select_translator',
                                description=__doc__.split('\n\n')[0])
    p.add_argument('models', nargs='+',
                   help='generator weights (path or shipped name), or folders of snapshots')
    p.add_argument('--policy', default='policy_sim',
                   help='the sim policy that drives behind each generator (default policy_sim)')
    p.add_argument('--episodes', type=int, default=100,
                   help='training-split layouts per candidate (default 100)')
    p.add_argument('--seed', type=int, default=0, help='permutes the training-split layouts')
    p.add_argument('--workers', type=int, default=1,
                   help='candidates driven in parallel processes (default 1)')
    p.add_argument('--engine', default='torch',
                   help='inference engine of the goggles (default torch)')
    p.add_argument('--max-episode-steps', type=int, default=None,
                   help='episode time limit (default: the environment\'s)')
    p.add_argument('--floor-prior', action='store_true',
                   help='drive behind the goggles + the floor prior (the demo\'s '
                   'real_vr_goggles_floor condition) instead of the goggles alone')
    p.add_argument('--json', type=Path, default=None,
                   help='write the ranking here, rewritten after every candidate')
    p.add_argument('--resume', action='store_true',
                   help='keep the candidates --json already holds (same settings) and drive '
                   'only the rest')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.resume and args.json is None:
        p.error('--resume needs --json (the file to resume from)')
    models = _candidates(args.models)
    kw = dict(policy=args.policy, episodes=args.episodes, seed=args.seed, engine=args.engine,
              max_episode_steps=args.max_episode_steps, floor_prior=args.floor_prior)
    settings = {'split': 'train', **kw}
    done = load_partial(args.json, settings) if args.resume else {}
    command = ('python -m sim_training.select_translator '
               + ' '.join(sys.argv[1:] if argv is None else argv))

    def write(ranking: list[dict[str, Any]], complete: bool) -> None:
        if args.json is not None:
            doc = {**settings, 'command': command, 'complete': complete, 'ranking': ranking}
            atomic_write_bytes(args.json, (json.dumps(doc, indent=1) + '\n').encode())

    if done:
        print(f'resuming {args.json}: {sum(m in done for m in models)} of {len(models)} '
              'candidates already driven', flush=True)
    results = select(models, workers=args.workers, **kw,
                     done=done,
                     on_result=lambda ranking: write(ranking, False),
                     progress=not args.no_progress)
    for r in results:
        lo, hi = r['ci95']
        print(f"{100 * r['success_rate']:5.1f}% [{100 * lo:4.1f}, {100 * hi:4.1f}]  "
              f"SPL {r['spl']:.3f}  {r['model']}")
    write(results, True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
