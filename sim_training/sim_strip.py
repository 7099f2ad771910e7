"""Render ``docs/sim_strip.png``: sim / real-proxy / randomized / labels for a few seeds.

``python -m sim_training.sim_strip [--out docs/sim_strip.png] [--size 128] [--seeds 0 1 2 3]``

One column per layout seed, one row per domain plus the colourised labels. The robot turns to
face the chair and drives two steps, so each column shows the chair; the randomized row is
rendered without physical randomisation so that all rows share the one label row.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

import numpy as np

ROWS = ('sim', 'real', 'randomized')


def _pose(env, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from vr_goggles.policy.actions import FORWARD, TURN_LEFT, TURN_RIGHT

    obs, info = env.reset(seed=seed)
    for _ in range(24):
        if abs(info['bearing']) < 0.15:
            break
        obs, _, _, _, info = env.step(TURN_LEFT if info['bearing'] > 0 else TURN_RIGHT)
    for _ in range(2):
        obs, _, term, _, info = env.step(FORWARD)
        if term:
            break
    return obs, info['labels']


def render_strip(seeds: list[int], size: int = 128, gap: int = 2) -> np.ndarray:
    """The strip as an RGB uint8 image."""
    import sim_training  # noqa: F401  (headless pyglet before the env module loads)
    from sim_training.envs.chair_nav import ChairNavEnv
    from vr_goggles.image.semantics import colorize

    rows: list[list[np.ndarray]] = []
    labels: list[np.ndarray] = []
    for domain in ROWS:
        env = ChairNavEnv(domain=domain, obs_size=size, labels=True,
                          physical_randomization=False)
        try:
            row = []
            for seed in seeds:
                obs, lab = _pose(env, seed)
                row.append(obs)
                if domain == 'sim':
                    labels.append(lab)
            rows.append(row)
        finally:
            env.close()
    rows.append([colorize(lab) for lab in labels])
    white = 255
    h = len(rows) * size + (len(rows) - 1) * gap
    w = len(seeds) * size + (len(seeds) - 1) * gap
    canvas = np.full((h, w, 3), white, np.uint8)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            y, x = r * (size + gap), c * (size + gap)
            canvas[y:y + size, x:x + size] = img
    return canvas


def main(argv: list[str] | None = None) -> int:
    """Write the strip PNG."""
    import cv2

    p = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    p.add_argument('--out', type=Path, default=Path('docs/sim_strip.png'))
    p.add_argument('--size', type=int, default=128)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2, 3, 4])
    args = p.parse_args(argv)
    strip = render_strip(args.seeds, args.size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), np.ascontiguousarray(strip[:, :, ::-1]))
    print(f'wrote {args.out} ({strip.shape[1]}x{strip.shape[0]})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
