"""ResNet image-to-image generator (Johnson et al. / CycleGAN), the network the goggles run.

Reflection padding and InstanceNorm as in CycleGAN. Options: anti-aliased stride-2 downsampling
(BlurPool, Zhang 2019), which makes the network closer to shift-equivariant, and resize-conv
upsampling (Odena et al. 2016) instead of transposed convolutions, which avoids checkerboards.
Both matter to the VR-Goggles shift loss: ``n_down`` stride-2 layers make the output depend on
the input's position modulo ``2 ** n_down``.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class BlurPool2d(nn.Module):
    """Fixed binomial low-pass then stride-2 subsampling (anti-aliased downsampling)."""

    def __init__(self, *, channels: int, stride: int = 2):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None, :]) / 16.0
        self.register_buffer('kernel', k.expand(channels, 1, 3, 3).contiguous(),
                             persistent=False)
        self.stride = stride
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, C, H/2, W/2)
        """Low-pass then subsample (shapes in the trailing comment)."""
        x = F.pad(x, (1, 1, 1, 1), mode='reflect')
        return F.conv2d(x, self.kernel, stride=self.stride, groups=self.channels)


class ResnetBlock(nn.Module):
    """Two 3x3 convs with reflection padding and a residual connection."""

    def __init__(self, *, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, C, H, W)
        """Residual update ``x + body(x)``."""
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """c7s1-ngf, ``n_down`` stride-2 downs, ``n_blocks`` residual blocks, ``n_down`` ups, c7s1-3.

    Input and output are ``(N, in_channels, H, W)`` in [-1, 1]; H and W must be multiples of
    ``2 ** n_down``. ``antialias`` uses BlurPool downsampling; ``upsample`` is ``'transpose'``
    (CycleGAN) or ``'resize'`` (nearest-neighbour resize then conv).
    """

    def __init__(self, *, in_channels: int = 3, out_channels: int = 3, ngf: int = 16,
                 n_blocks: int = 6, n_down: int = 2, antialias: bool = False,
                 upsample: str = 'transpose'):
        super().__init__()
        if upsample not in ('transpose', 'resize'):
            raise ValueError(f"upsample: expected 'transpose' or 'resize', got {upsample!r}")
        if n_down < 0 or n_blocks < 0 or ngf < 1:
            raise ValueError(f'invalid sizes ngf={ngf} n_blocks={n_blocks} n_down={n_down}')
        self.n_down = n_down
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7), nn.InstanceNorm2d(ngf),
            nn.ReLU(inplace=True)]
        ch = ngf
        for _ in range(n_down):  # (N, ch, H, W) -> (N, 2ch, H/2, W/2)
            if antialias:
                layers += [nn.Conv2d(ch, ch * 2, 3, padding=1, padding_mode='reflect'),
                           nn.InstanceNorm2d(ch * 2), nn.ReLU(inplace=True),
                           BlurPool2d(channels=ch * 2)]
            else:
                layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1),
                           nn.InstanceNorm2d(ch * 2), nn.ReLU(inplace=True)]
            ch *= 2
        layers += [ResnetBlock(channels=ch) for _ in range(n_blocks)]
        for _ in range(n_down):  # (N, ch, H, W) -> (N, ch/2, 2H, 2W)
            if upsample == 'transpose':
                layers += [nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1,
                                              output_padding=1)]
            else:
                layers += [nn.Upsample(scale_factor=2, mode='nearest'),
                           nn.Conv2d(ch, ch // 2, 3, padding=1, padding_mode='reflect')]
            layers += [nn.InstanceNorm2d(ch // 2), nn.ReLU(inplace=True)]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, out_channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    @property
    def stride(self) -> int:
        """Total downsampling factor ``2 ** n_down``: inputs must be multiples of it."""
        return 2 ** self.n_down

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, 3, H, W)
        """Translate a batch in [-1, 1] (shapes in the trailing comment)."""
        return self.net(x)
