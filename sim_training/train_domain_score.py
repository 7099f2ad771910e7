"""Fit the domain score (issue #37) on the goggles' own training look, no label of any kind.

``--data`` is what the translator learned from (its real-domain frames: a collector export, a
folder of images or a bag with ``:/topic``): the rotation net learns to orient those frames
(left-right flips and brightness/contrast jitter), the colour layout is their per-row colour
histogram. ``--calibration`` holds *other* in-domain frames (other layouts, or the held-out tail
of a robot's recordings): each part's mean and spread there standardise the score, and the 1st
percentile of the scores there is the card's stop ``threshold`` (about one in-domain frame in a
hundred falls below it; ``policy_node`` stops only after several in a row). Without
``--calibration`` the last ``--val-fraction`` of ``--data`` is held out for it.

``python -m sim_training.train_domain_score --data data/real --calibration data/real_cal
--out vr_goggles/weights/domain_score``

About a minute on two CPU cores for 3,000 frames; Ctrl-C stops with exit 130 and saves nothing
(a rerun starts again). An ``--out`` that holds weights is refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
import json
from pathlib import Path
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from sim_training.config_cli import add_config_flags
from sim_training.data import jitter, load_source
from sim_training.run_control import (
    StopOnInterrupt,
    TrainingInterrupted,
    command_line,
    run_as_tool,
    small_domain_warning,
)
from vr_goggles.models.domain_score_net import (
    COMPONENTS,
    DomainScoreNet,
    RotationNet,
    fit_colour_layout,
    four_turns,
)


@dataclass
class DomainScoreConfig:
    """Every setting of a domain-score fit."""

    data: str = ''            #: the goggles' training frames (the translator's real data)
    calibration: str = ''     #: other in-domain frames for the standardisation and threshold
    val_fraction: float = 0.1  #: without --calibration: held-out tail of --data used for it
    size: int = 64            #: square input size (the goggles' input size)
    width: int = 16           #: rotation net width (channels of the first convolution)
    depth: int = 4            #: rotation net stride-2 convolutions
    bins: int = 8             #: colour layout bins per channel
    epochs: int = 15          #: passes over --data (each frame in its four turns)
    batch_size: int = 64      #: frames per step (x4 turns)
    lr: float = 2e-3          #: AdamW peak learning rate (one-cycle schedule)
    weight_decay: float = 1e-4  #: AdamW weight decay
    jitter: float = 0.4       #: contrast jitter range (brightness: 0.75 x this)
    percentile: float = 1.0   #: threshold = this percentile of the calibration scores
    seed: int = 0             #: seed of weights and sampling
    threads: int = 2          #: torch intra-op threads
    out: str = ''             #: weights path (safetensors + card); '' = do not save
    overwrite: bool = False   #: replace the weights at --out
    synthetic: int = 0        #: >0: procedural frames instead of --data (tests)


def _frames(spec: str, size: int) -> np.ndarray:
    return load_source(spec, (size, size), labels='none').images


def _synthetic(n: int, size: int, seed: int) -> np.ndarray:
    """Rooms in miniature: dark floor below a bright band, a lit ceiling, noise."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0, 1, size)[None, :, None, None]
    base = np.where(rows < 0.3, 200, np.where(rows < 0.6, 150, 60)).astype(np.float64)
    tint = rng.uniform(0.8, 1.2, (n, 1, 1, 3))
    out = base * tint + rng.normal(0, 8, (n, size, size, 3))
    return np.clip(out, 0, 255).astype(np.uint8)


def train(cfg: DomainScoreConfig, command: str = '') -> tuple[DomainScoreNet, dict]:
    """Fit both parts, standardise and calibrate, optionally save; returns net and metrics."""
    from vr_goggles.image.preprocess import normalize

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if cfg.out and not cfg.overwrite:
        from vr_goggles.weights import paths_for

        if paths_for(cfg.out)[0].exists():
            raise ValueError(f'{paths_for(cfg.out)[0]} already exists; --overwrite fits it '
                             'again and replaces it')
    if cfg.synthetic:
        data = _synthetic(cfg.synthetic, cfg.size, cfg.seed)
    else:
        data = _frames(cfg.data, cfg.size)
        warning = small_domain_warning(cfg.data, '--data', len(data))
        if warning:
            print(f'warning: {warning}', file=sys.stderr, flush=True)
    if cfg.calibration:
        cal = _frames(cfg.calibration, cfg.size)
    else:
        n_cal = max(1, int(len(data) * cfg.val_fraction))
        data, cal = data[:-n_cal], data[-n_cal:]
    if len(data) < cfg.batch_size or len(cal) < 20:
        raise ValueError(f'too few frames: {len(data)} to train (need >= --batch-size '
                         f'{cfg.batch_size}) and {len(cal)} to calibrate (need >= 20)')
    x = torch.from_numpy(normalize(data))
    net = RotationNet(width=cfg.width, depth=cfg.depth, batch_norm=True)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = len(x) // cfg.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr,
                                                total_steps=cfg.epochs * per_epoch)
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    acc = 0.0
    with StopOnInterrupt(enabled=True, what='the domain score') as stop:
        for epoch in range(cfg.epochs):
            perm = torch.randperm(len(x), generator=gen)
            hits = 0.0
            for i in range(per_epoch):
                if stop.requested:
                    raise TrainingInterrupted(f'interrupted in epoch {epoch + 1} of '
                                              f'{cfg.epochs}: nothing saved (about a minute '
                                              'to run again)')
                b = x[perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]].clone()
                flip = torch.rand(len(b), generator=gen) < 0.5
                b[flip] = b[flip].flip(3)
                b = jitter(b, contrast=cfg.jitter, brightness=0.75 * cfg.jitter, generator=gen)
                turned, labels = four_turns(b)
                net.train()
                logits = net(turned)
                loss = F.cross_entropy(logits, labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                hits += (logits.argmax(1) == labels).float().mean().item()
            acc = hits / per_epoch
            print(f'epoch {epoch + 1}/{cfg.epochs} loss {loss.item():.4f} turn accuracy '
                  f'{acc:.3f}', flush=True)
    model = DomainScoreNet(size=cfg.size, width=cfg.width, depth=cfg.depth, bins=cfg.bins)
    model.rotation.load_state_dict(net.eval().folded().state_dict())
    model.colour_layout.copy_(fit_colour_layout(x, cfg.bins))
    model.eval()
    xc = torch.from_numpy(normalize(cal))
    with torch.inference_mode():
        parts = model.components(xc).double()
        mean, spread = parts.mean(0), parts.std(0).clamp_min(1e-6)
        model.standardise.copy_(torch.stack([mean, spread], 1).float())
        scores = model(xc).double().numpy()
    threshold = float(np.percentile(scores, cfg.percentile))
    metrics = {
        'train_turn_accuracy': round(acc, 4), 'train_frames': len(x),
        'calibration_frames': len(xc), 'threshold': round(threshold, 4),
        'calibration_score': {'median': round(float(np.median(scores)), 4),
                              'p1': round(float(np.percentile(scores, 1)), 4),
                              'p5': round(float(np.percentile(scores, 5)), 4)},
        'train_wall_s': round(time.perf_counter() - t0, 1)}
    print(json.dumps(metrics), flush=True)
    if cfg.out:
        from vr_goggles.image.preprocess import Preprocessor
        from vr_goggles.weights import ModelCard, save

        pre = Preprocessor(size=(cfg.size, cfg.size), keep_aspect=True)
        card = ModelCard(
            name=Path(cfg.out).name, architecture='DomainScoreNet',
            kwargs={'size': cfg.size, 'width': cfg.width, 'depth': cfg.depth,
                    'bins': cfg.bins},
            input_size=[cfg.size, cfg.size],
            task='domain score of a camera frame against the goggles\' training look '
                 '(higher = more in-domain; below threshold = the goggles do not know it)',
            training_command=command, metrics=metrics,
            extra={'threshold': threshold, 'fitted_on': cfg.data or 'synthetic',
                   'calibrated_on': cfg.calibration or f'last {cfg.val_fraction} of data',
                   'components': list(COMPONENTS),
                   'standardise': model.standardise.tolist(),
                   'config': asdict(cfg), 'preprocess': pre.card()})
        print(f'saved {save(cfg.out, model.state_dict(), card)}', flush=True)
    return model, metrics


def build_parser() -> argparse.ArgumentParser:
    """One flag per :class:`DomainScoreConfig` field, its ``#:`` comment as help."""
    p = argparse.ArgumentParser(prog='python -m sim_training.train_domain_score',
                                description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_flags(p, DomainScoreConfig)
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = build_parser()
    cfg = DomainScoreConfig(**vars(p.parse_args(argv)))
    if not cfg.data and not cfg.synthetic:
        p.error('--data is required')
    command = command_line('sim_training.train_domain_score', argv)
    return run_as_tool('train_domain_score', lambda: train(cfg, command))


if __name__ == '__main__':
    sys.exit(main())
