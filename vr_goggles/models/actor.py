"""The navigation policy's actor: a small CNN encoder plus a linear action head.

Training (``sim_training.policy_training.trainer``) wraps :class:`NavEncoder` as the SB3
features extractor, so the exported :class:`NavActor` holds exactly the trained layers and runs
without SB3. Input is ``vr_goggles.image.preprocess.normalize`` output: float32 ``(N, 3, 64, 64)``
in
[-1, 1] (RGB); output is one logit per action of ``vr_goggles.policy.actions.ACTION_NAMES``.
Three convolutions + one linear layer (~1.2 MMAC at 64x64 with the default sizes) keep CPU
inference well under 1 ms.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class NavEncoder(nn.Module):
    """Nature-CNN-shaped encoder (8x8/4, 4x4/2, 3x3/1 convs, then a linear layer) with ReLUs."""

    def __init__(self, *, in_channels: int = 3, input_size: Sequence[int] = (64, 64),
                 channels: Sequence[int] = (16, 32, 32), features_dim: int = 128):
        super().__init__()
        c1, c2, c3 = (int(c) for c in channels)
        self.cnn = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=8, stride=4), nn.ReLU(),
            nn.Conv2d(c1, c2, kernel_size=4, stride=2), nn.ReLU(),
            nn.Conv2d(c2, c3, kernel_size=3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flat = self.cnn(torch.zeros(1, in_channels, *(int(s) for s in input_size))).shape[1]
        self.linear = nn.Sequential(nn.Linear(n_flat, features_dim), nn.ReLU())
        self.features_dim = int(features_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, features_dim)``."""
        return self.linear(self.cnn(x))


class NavActor(nn.Module):
    """Encoder + linear action head: normalised image batch -> action logits ``(N, n_actions)``.

    Keyword sizes are recorded in the model card so ``vr_goggles.weights.build_module`` can
    rebuild it.
    """

    def __init__(self, *, in_channels: int = 3, input_size: Sequence[int] = (64, 64),
                 channels: Sequence[int] = (16, 32, 32), features_dim: int = 128,
                 n_actions: int = 3):
        super().__init__()
        self.features = NavEncoder(in_channels=in_channels, input_size=input_size,
                                   channels=channels, features_dim=features_dim)
        self.action_net = nn.Linear(features_dim, n_actions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images ``(N, 3, H, W)`` -> action logits ``(N, n_actions)``."""
        return self.action_net(self.features(x))

    @torch.no_grad()
    def act(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic action (argmax of the logits), as SB3 ``predict(deterministic=True)``."""
        return self.forward(x).argmax(dim=1)
