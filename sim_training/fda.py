"""Fourier Domain Adaptation (Yang & Soatto, CVPR 2020) of training frames, without a label.

A labelled sim or randomised frame and an unlabelled camera frame differ mostly in the lowest
spatial frequencies of their amplitude spectra (overall colour cast, brightness, smooth
shading), while the layout a segmenter must learn lives in the phase. Giving every labelled
training frame the low-frequency amplitude of a random camera frame, its phase kept, shows the
segmenter the camera's "look" on labelled content, so no camera frame ever needs a label
(issue #40; docs/results/no_label_fda.md).

``train_segmenter --fda-real SOURCE`` applies :func:`fda` to every sampled frame through
:class:`FDASampler`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from sim_training.data import FrameSampler, FrameSet


def fda(src: torch.Tensor, trg: torch.Tensor, beta: float) -> torch.Tensor:
    """``src`` with ``trg``'s low-frequency amplitude spectrum, ``src``'s phase kept.

    ``src`` and ``trg`` are float ``(N, 3, H, W)`` in [-1, 1] (the training tensors). Each
    channel is taken to 0-255 space and through ``fft2``; the four ``b x b`` corner squares of
    the (unshifted) amplitude, ``b = floor(min(H, W) * beta)``, i.e. the centred ``2b x 2b``
    low-frequency square including the DC term (the mean colour), are replaced by ``trg``'s;
    the inverse transform is clamped to 0..255 and taken back to [-1, 1]. ``beta = 0`` gives
    ``src`` back (up to the FFT round trip). The arithmetic is the probe's, so the package
    reproduces its weights bit for bit.
    """
    s = (src + 1) * 127.5
    t = (trg + 1) * 127.5
    fs = torch.fft.fft2(s)
    ft = torch.fft.fft2(t)
    amp_s, pha_s = fs.abs(), fs.angle()
    amp_t = ft.abs()
    h, w = s.shape[-2:]
    b = int(math.floor(min(h, w) * beta))
    if b > 0:
        for ys in (slice(0, b), slice(h - b, h)):
            for xs in (slice(0, b), slice(w - b, w)):
                amp_s[..., ys, xs] = amp_t[..., ys, xs]
    out = torch.fft.ifft2(torch.polar(amp_s, pha_s)).real
    return out.clamp(0, 255) / 127.5 - 1


class FDASampler(FrameSampler):
    """A :class:`FrameSampler` whose frames get the amplitude of uniformly drawn ``targets``.

    ``targets`` are unlabelled uint8 ``(M, H, W, 3)`` camera frames of the training size. The
    target indices come from the sampler's own generator *after* the frames, so the sampler's
    checkpointed generator state still resumes a run exactly.
    """

    def __init__(self, frames: FrameSet, *, targets: np.ndarray, beta: float, seed: int,
                 flip: bool = True, crop_pad: int = 0):
        super().__init__(frames, seed=seed, flip=flip, crop_pad=crop_pad)
        if len(targets) == 0:
            raise ValueError('fda: no target frames')
        if not 0.0 <= beta <= 0.5:
            raise ValueError(f'fda_beta: {beta} is not in [0, 0.5]')
        self.targets = torch.from_numpy(np.ascontiguousarray(targets))
        self.beta = beta

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``n`` augmented frames, each with a random target's low-frequency amplitude."""
        x, y = super().sample(n)
        idx = torch.randint(len(self.targets), (n,), generator=self.generator)
        trg = self.targets[idx].permute(0, 3, 1, 2).float() / 127.5 - 1
        return fda(x, trg, self.beta), y
