"""PatchGAN discriminator (Isola et al. 2017): the local adversarial loss of SimGAN/CycleGAN.

Each output cell judges one receptive-field patch of the input, so the generator is penalised
for local artefacts anywhere in the image instead of for global statistics only (SimGAN's
"local adversarial loss"). With ``n_layers=3`` the receptive field is 70x70 pixels.
"""

from __future__ import annotations

import torch
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == 'instance':
        return nn.InstanceNorm2d(channels)
    if kind == 'none':
        return nn.Identity()
    raise ValueError(f"norm: expected 'instance' or 'none', got {kind!r}")


class PatchDiscriminator(nn.Module):
    """C(ndf)-C(2ndf)-...: ``n_layers`` stride-2 4x4 convs, one stride-1 conv, 1-channel map.

    Input ``(N, in_channels, H, W)``; output raw scores ``(N, 1, H', W')`` (LSGAN: no sigmoid).
    """

    def __init__(self, *, in_channels: int = 3, ndf: int = 32, n_layers: int = 3,
                 norm: str = 'instance', max_mult: int = 8):
        super().__init__()
        if n_layers < 1 or ndf < 1:
            raise ValueError(f'invalid sizes ndf={ndf} n_layers={n_layers}')
        layers: list[nn.Module] = [  # (N, C, H, W) -> (N, ndf, H/2, W/2); no norm on layer 1
            nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        ch = ndf
        for n in range(1, n_layers):  # (N, ch, H, W) -> (N, ch', H/2, W/2)
            out = ndf * min(2 ** n, max_mult)
            layers += [nn.Conv2d(ch, out, 4, stride=2, padding=1), _norm(norm, out),
                       nn.LeakyReLU(0.2, True)]
            ch = out
        out = ndf * min(2 ** n_layers, max_mult)
        layers += [nn.Conv2d(ch, out, 4, stride=1, padding=1), _norm(norm, out),  # H-1
                   nn.LeakyReLU(0.2, True),
                   nn.Conv2d(out, 1, 4, stride=1, padding=1)]  # (N, 1, H-2, W-2)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, 1, H', W')
        """Apply the module (shapes in the trailing comment)."""
        return self.net(x)
