"""Training-free real-to-sim baseline: match each frame's channel statistics to the sim domain.

The AdaIN / BN-statistics idea (Huang & Belongie 2017; Li et al. 2016 "AdaBN"): shift and scale
each colour channel of a frame so its mean and standard deviation equal the simulator's. It
undoes global colour casts and exposure but not texture, which is exactly the gap the learned
goggles must close; the closed-loop demo reports it as a baseline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and standard deviation of RGB uint8 images, in [0, 255] units."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def of(cls, images: Iterable[np.ndarray]) -> ChannelStats:
        """Pooled statistics over a set of ``(H, W, 3)`` images."""
        pixels = np.concatenate([np.asarray(im, dtype=np.float64).reshape(-1, 3)
                                 for im in images])
        if pixels.size == 0:
            raise ValueError('images: need at least one non-empty image')
        return cls(tuple(pixels.mean(0).tolist()), tuple(pixels.std(0).tolist()))


class StatsMatcher:
    """Callable RGB uint8 image -> image whose channel mean/std equal ``target``'s."""

    def __init__(self, target: ChannelStats, eps: float = 1e-3):
        self.target = target
        self.eps = eps

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Return ``image`` with its channel mean/std replaced by the target's."""
        img = np.asarray(image, dtype=np.float32)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f'image: expected (H, W, 3) RGB, got shape {img.shape}')
        mean = img.reshape(-1, 3).mean(0)
        std = img.reshape(-1, 3).std(0)
        t_mean = np.asarray(self.target.mean, np.float32)
        t_std = np.asarray(self.target.std, np.float32)
        out = (img - mean) / np.maximum(std, self.eps) * t_std + t_mean
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
