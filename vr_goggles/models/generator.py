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

UPSAMPLE_MODES = ('transpose', 'resize')


class BlurPool2d(nn.Module):
    """Fixed binomial low-pass then stride-2 subsampling (anti-aliased downsampling).

    The 3x3 binomial [1, 2, 1]^T [1, 2, 1] / 16 with reflection padding is applied separably as
    strided slices and adds in float32: elementwise ops, which autocast leaves alone, where a
    depthwise conv would run in bf16 under CPU autocast and be slow (batch 3, 32 x 64 x 64,
    forward + backward: 4.0 ms as a bf16 depthwise conv). The reflected border is the odd
    neighbour one step back (output row 0 reads rows 1, 0, 1), taken by a one-row
    concatenation rather than a padded copy, whose backward is slow on CPU: 5.2 vs 7.8 ms at
    that size, bitwise the same output and gradient. The result is cast back to the input's
    dtype.
    """

    def __init__(self, *, channels: int, stride: int = 2):
        super().__init__()
        if stride != 2:
            raise ValueError(f'stride: only 2 is supported, got {stride}')
        self.stride = stride
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, C, H/2, W/2)
        """Low-pass then subsample (shapes in the trailing comment)."""
        y = x.float()
        if y.shape[-2] % 2 or y.shape[-1] % 2:  # odd sizes: the padded form
            y = F.pad(y, (1, 1, 1, 1), mode='reflect')  # (N, C, H + 2, W + 2)
            y = y[:, :, 0:-2:2] + 2.0 * y[:, :, 1:-1:2] + y[:, :, 2::2]
            y = y[..., 0:-2:2] + 2.0 * y[..., 1:-1:2] + y[..., 2::2]
        else:
            # rows: out[r] = in[2r - 1] + 2 in[2r] + in[2r + 1], in[-1] reflected to in[1]
            even, odd = y[:, :, 0::2], y[:, :, 1::2]  # (N, C, H/2, W) each
            y = torch.cat([odd[:, :, :1], odd[:, :, :-1]], dim=2) + 2.0 * even + odd
            even, odd = y[..., 0::2], y[..., 1::2]  # columns alike: (N, C, H/2, W/2) each
            y = torch.cat([odd[..., :1], odd[..., :-1]], dim=3) + 2.0 * even + odd
        return (y * (1.0 / 16.0)).to(x.dtype)


def _replicate_pad1(x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, C, H + 2, W + 2)
    """``F.pad(x, (1, 1, 1, 1), mode='replicate')`` as two concatenations.

    For ``torch.compile`` only: Inductor (torch 2.13, CPU) fails on replicate padding of a
    pixel-shuffled tensor ("vr must not be None"), which is what two resize-convs in a row
    produce; eager keeps the single pad kernel.
    """
    x = torch.cat([x[..., :1, :], x, x[..., -1:, :]], dim=-2)
    return torch.cat([x[..., :1], x, x[..., -1:]], dim=-1)


class ResizeConv2d(nn.Conv2d):
    """Nearest-neighbour x2 resize, then a 3x3 conv with reflection padding (Odena et al.).

    Computed without the resize: each of the four output phases (row and column parity) sees
    a 2x2 input window, with the 3x3 taps summed in pairs. So one 2x2 conv at the *low*
    resolution (replicate padding, which is what reflection padding of the resized image
    amounts to) into ``4 * out_channels``, each phase cropped at its own offset, then a pixel
    shuffle, gives the same output (to float rounding). Same parameters as the ``nn.Conv2d``
    it replaces. Forward + backward at batch 3, one CPU thread, bf16: 4.5 / 6.0 ms for the
    16x16 / 32x32 layers of the shipped generator, vs 6.7 / 6.3 ms for the same phases as one
    zero-filled 3x3 conv, and 2.25x fewer multiply-adds.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 3)
        self._phase_cache: tuple[tuple, torch.Tensor] | None = None

    def _inference_phase_weight(self) -> torch.Tensor:
        """:meth:`phase_weight`, rebuilt only when the weight changes (no-grad calls only).

        Rebuilding it costs 0.1-0.2 ms per layer per call on a CPU thread, 5 % of a 64x64
        eager forward; the key follows in-place updates (``_version``), copies and moves.
        Eager only: :meth:`forward` skips it while ``torch.compiler.is_compiling()`` (which
        torch documents as true under torch.compile and torch.export, strict or not).
        """
        w = self.weight
        key = (w._version, w.data_ptr(), w.dtype, w.device)
        if self._phase_cache is None or self._phase_cache[0] != key:
            self._phase_cache = (key, self.phase_weight())
        return self._phase_cache[1]

    def phase_weight(self) -> torch.Tensor:
        """``(4 * out, in, 2, 2)``: the 2x2 taps of phase ``(a, b)`` at channel ``4 o + 2 a + b``.

        Phase ``(a, b)`` reads padded input rows ``i + a, i + a + 1`` and columns alike.
        """
        w = self.weight  # (O, I, 3, 3)
        out_ch, in_ch = w.shape[:2]
        # rows: phase 0 reads input rows (i-1, i) with taps (w0, w1 + w2), phase 1 (i, i+1)
        # with (w0 + w1, w2); columns alike
        rows = (torch.stack([w[:, :, 0], w[:, :, 1] + w[:, :, 2]], 2),
                torch.stack([w[:, :, 0] + w[:, :, 1], w[:, :, 2]], 2))  # (O, I, 2, 3) each
        phases = []
        for r in rows:
            phases += [torch.stack([r[..., 0], r[..., 1] + r[..., 2]], 3),
                       torch.stack([r[..., 0] + r[..., 1], r[..., 2]], 3)]  # (O, I, 2, 2)
        return torch.stack(phases, 1).reshape(out_ch * 4, in_ch, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, I, H, W) -> (N, O, 2H, 2W)
        """Resize-conv as one low-resolution conv, four phase crops and a pixel shuffle."""
        n, _, h, w = x.shape
        bias = None if self.bias is None else self.bias.repeat_interleave(4)
        # The cache keys on ``data_ptr()``, which the fake tensors of torch.export and
        # torch.compile refuse: a traced graph derives the phase weight from the parameter
        # (a constant folded at build time) and eager no-grad calls keep the cache.
        weight = (self.phase_weight()
                  if torch.is_grad_enabled() or torch.compiler.is_compiling()
                  else self._inference_phase_weight())
        xp = (_replicate_pad1(x) if torch.compiler.is_compiling()
              else F.pad(x, (1, 1, 1, 1), mode='replicate'))  # (N, I, H + 2, W + 2)
        y = F.conv2d(xp, weight, bias)  # (N, 4 O, H + 1, W + 1)
        y = y.view(n, self.out_channels, 4, h + 1, w + 1)
        y = torch.stack([y[:, :, 2 * a + b, a:a + h, b:b + w] for a in (0, 1) for b in (0, 1)],
                        2)  # (N, O, 4, H, W)
        return F.pixel_shuffle(y.reshape(n, 4 * self.out_channels, h, w), 2)


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
    ``2 ** n_down``. ``antialias`` uses BlurPool downsampling: conv -> norm -> ReLU ->
    BlurPool (Zhang's ConvBlurPool), or with ``blur_first`` BlurPool -> conv -> norm -> ReLU,
    which low-passes every subsampling just the same but runs the conv on a quarter of the
    pixels. ``upsample`` is ``'transpose'`` (CycleGAN) or ``'resize'`` (nearest-neighbour
    resize then conv, :class:`ResizeConv2d`).
    """

    def __init__(self, *, in_channels: int = 3, out_channels: int = 3, ngf: int = 16,
                 n_blocks: int = 6, n_down: int = 2, antialias: bool = False,
                 blur_first: bool = False, upsample: str = 'transpose'):
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f'upsample: expected one of {UPSAMPLE_MODES}, got {upsample!r}')
        if blur_first and not antialias:
            raise ValueError('blur_first needs antialias=True')
        if n_down < 0 or n_blocks < 0 or ngf < 1:
            raise ValueError(f'invalid sizes ngf={ngf} n_blocks={n_blocks} n_down={n_down}')
        self.n_down = n_down
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7), nn.InstanceNorm2d(ngf),
            nn.ReLU(inplace=True)]
        ch = ngf
        for _ in range(n_down):  # (N, ch, H, W) -> (N, 2ch, H/2, W/2)
            if antialias and blur_first:
                layers += [BlurPool2d(channels=ch),
                           nn.Conv2d(ch, ch * 2, 3, padding=1, padding_mode='reflect'),
                           nn.InstanceNorm2d(ch * 2), nn.ReLU(inplace=True)]
            elif antialias:
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
                layers += [ResizeConv2d(ch, ch // 2)]
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
