"""Side-by-side iteration time of the translator presets (same sizes, data and process).

The presets are timed in interleaved rounds so that load from other processes on a shared
machine hits all of them alike; the result is the median ms per full training step (G step +
D step) and its ratio to plain CycleGAN.

``python -m sim_training.bench_translator --rounds 10 --steps 5 [--precision bf16]
[--device cuda] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
import time

import numpy as np
import torch

from sim_training.data import synthetic_frames
from sim_training.translator.config import PRESETS, TranslatorConfig
from sim_training.translator.trainer import TranslatorTrainer
from vr_goggles.models.segmenter import SegmentationNet


def bench(presets: list[str], *, rounds: int, steps: int, overrides: dict) -> dict:
    """Median ms/step per preset over interleaved rounds, plus ratios to the first preset."""
    size = overrides.get('size', 64)
    sim = synthetic_frames(64, (size, size), domain='sim', seed=0)
    real = synthetic_frames(64, (size, size), domain='real', seed=1)
    trainers = {}
    for name in presets:
        # every term active from step 0 (no warm-up, no delayed pseudo-label term): the
        # figure is the cost of a *full* iteration of each objective
        cfg = TranslatorConfig(**{**PRESETS[name], 'preset': name, 'warmup_steps': 0,
                                  'pseudo_start_step': 0, **overrides})
        torch.manual_seed(0)
        trainers[name] = TranslatorTrainer(cfg, sim=sim, real=real, segmenter=SegmentationNet())
        for _ in range(2):
            trainers[name].train_step()  # warm-up (allocator, autocast caches)
    cuda = str(overrides.get('device', 'cpu')).startswith('cuda')
    times: dict[str, list[float]] = {n: [] for n in presets}
    for _ in range(rounds):
        for name, tr in trainers.items():
            for _ in range(steps):
                if cuda:  # a step ends with host reads of the losses, but be explicit
                    torch.cuda.synchronize()
                t = time.perf_counter()
                tr.train_step()
                if cuda:
                    torch.cuda.synchronize()
                times[name].append(1000 * (time.perf_counter() - t))
    med = {n: float(np.median(v)) for n, v in times.items()}
    base = med[presets[0]]
    return {'ms_per_step': {n: round(v, 2) for n, v in med.items()},
            'ratio_to_' + presets[0]: {n: round(v / base, 3) for n, v in med.items()},
            'steps_timed': rounds * steps, 'overrides': overrides,
            'threads': torch.get_num_threads(),
            'device_name': (torch.cuda.get_device_name(torch.device(overrides['device']))
                            if cuda else 'cpu')}


def summarize(runs: list[dict], base: str) -> dict:
    """Several runs -> one result: median and range of each preset's per-run ratio.

    On a shared machine the run-to-run spread is the figure's error bar. One run is returned
    as is.
    """
    result = dict(runs[0])
    if len(runs) > 1:
        key = 'ratio_to_' + base
        per = {n: [r[key][n] for r in runs] for n in runs[0][key]}
        result['ms_per_step'] = {n: round(float(np.median([r['ms_per_step'][n] for r in runs])),
                                          2) for n in per}
        result[key] = {n: round(float(np.median(v)), 3) for n, v in per.items()}
        result['ratio_range'] = {n: [min(v), max(v)] for n, v in per.items()}
        result['ratio_runs'] = per
        result['repeats'] = len(runs)
    return result


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (every flag with its help)."""
    p = argparse.ArgumentParser(prog='python -m sim_training.bench_translator',
                                description=__doc__.split('\n\n')[0])
    p.add_argument('--presets', nargs='+', default=['cyclegan', 'cycada', 'vr_goggles'],
                   help='presets to time; ratios are to the first (default all three)')
    p.add_argument('--rounds', type=int, default=10,
                   help='interleaved rounds over the presets (default 10)')
    p.add_argument('--steps', type=int, default=5,
                   help='timed steps of each preset per round (default 5)')
    p.add_argument('--threads', type=int, default=1, help='torch threads (default 1)')
    p.add_argument('--precision', default='fp32', help='fp32, bf16 or fp16 (default fp32)')
    p.add_argument('--size', type=int, default=64, help='square frame size (default 64)')
    p.add_argument('--ngf', type=int, default=16, help='generator width (default 16)')
    p.add_argument('--batch-size', type=int, default=1,
                   help='frames per domain per step (default 1)')
    p.add_argument('--repeats', type=int, default=1,
                   help='independent runs (fresh trainers); the median ratio is reported')
    p.add_argument('--device', default='cpu', help='cpu or cuda[:N]')
    p.add_argument('--json', default='', help='write the result here')
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = {'precision': args.precision, 'size': args.size, 'ngf': args.ngf,
                 'batch_size': args.batch_size, 'threads': args.threads, 'device': args.device}
    runs = [bench(args.presets, rounds=args.rounds, steps=args.steps, overrides=overrides)
            for _ in range(args.repeats)]
    result = summarize(runs, args.presets[0])
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
