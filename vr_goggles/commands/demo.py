"""``vr-goggles demo``: the closed-loop real-to-sim benchmark on the shipped weights."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``demo`` verb."""
    p = sub.add_parser(
        'demo', help='closed-loop benchmark: sim policy on real-looking input, with and '
                     'without goggles',
        description='Run the shipped sim policy in the simulator\'s evaluation layouts under '
                    'each condition (sim, real without goggles, real behind each translator, '
                    'channel-statistics baseline, domain-randomised policy) and write '
                    'results.json and report.html. Needs the training extra (simulator).')
    p.add_argument('--episodes', type=int, default=30,
                   help='evaluation episodes per condition (default 30; the README quotes '
                        '200)')
    p.add_argument('--out', default='out/demo', help='output folder (default out/demo)')
    p.add_argument('--seed', type=int, default=0, help='seed of the evaluation layout order')
    p.add_argument('--conditions', default='',
                   help='comma-separated subset of conditions (default: all)')
    p.add_argument('--engine', default='auto',
                   help='goggles engine: auto, torch, onnxruntime, tensorrt (default auto)')
    p.add_argument('--device', default='cpu', help='cpu, cuda or auto (default cpu)')
    p.add_argument('--precision', default='fp32', help='fp32, fp16 or bf16 (default fp32)')
    p.add_argument('--max-steps', type=int, default=None,
                   help='episode step limit (default: the environment\'s, 120)')
    p.add_argument('--no-progress', action='store_true', help='no progress bars')
    p.add_argument('--resume', action='store_true',
                   help='reuse the conditions an interrupted run into --out finished with the '
                        'same settings (kept in OUT/partial/ until results.json is written)')
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the demo and print the results table."""
    try:
        from sim_training.closed_loop import CONDITIONS, DemoConfig, format_table, run_demo
    except ImportError as e:
        raise RuntimeError(f'the demo needs the simulator: pip install "vr_goggles[train]" '
                           f'({e})') from None
    conditions = [c.strip() for c in args.conditions.split(',') if c.strip()] or list(CONDITIONS)
    cfg = DemoConfig(episodes=args.episodes, seed=args.seed, conditions=conditions,
                     engine=args.engine, device=args.device, precision=args.precision,
                     max_episode_steps=args.max_steps, progress=not args.no_progress)
    results = run_demo(cfg, args.out, command=getattr(args, 'command_line', 'vr-goggles demo'),
                       resume=args.resume)
    print()
    print(format_table(results['conditions']))
    for goal, ok in results['goals'].items():
        print(f'goal {goal}: {"met" if ok else "MISSED"}')
    print(f'wrote {args.out}/results.json and {args.out}/report.html')
    return 0
