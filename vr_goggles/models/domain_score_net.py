"""The domain score's network: how much a camera frame looks like the goggles' training look.

Two parts, each fitted on the camera frames the translator learned from (no label of any kind):

- ``RotationNet``: a small CNN that tells which of 0/90/180/270 degrees a frame was turned by,
  the self-supervised pretext of Hendrycks et al. (NeurIPS 2019, "Using self-supervised
  learning can improve model robustness and uncertainty"). It orients the rooms it learned
  confidently and frames unlike them (another building, a covered lens, a camera mounted
  sideways) poorly. Trained with batch norm, shipped with it folded into the convolutions.
- a per-row colour histogram (8x8x8 bins per image row) of those frames: where in the image
  which colours lie;
- texture: how much the grey level changes between neighbouring pixels, which a lens cap, a
  black or a white frame lack (counted only when it is lower than in the rooms).

``DomainScoreNet`` adds the three (texture weighted twice), each standardised by its mean and
spread on held-out in-domain frames: higher is more in-domain, 0 is a typical in-domain frame.
It runs on the normalised camera frame, independent of the generator and its engine, and
exports to ONNX as one graph. Issue #37's measurements: ``docs/results/domain_score.md``.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

#: quarter turns the rotation net classifies (counter-clockwise, ``torch.rot90``)
TURNS = 4
#: the parts of the score, each a log-likelihood-like value (higher = more in-domain)
COMPONENTS = ('rotation', 'colour_layout', 'texture')
#: their weights in the score: texture twice, or a black frame (whose only tell is its
#: flatness) scores above the threshold (docs/results/domain_score.md, amendment 3)
PART_WEIGHTS = (1.0, 1.0, 2.0)


class RotationNet(nn.Module):
    """``depth`` stride-2 3x3 convolutions (width doubling up to 4x), global mean, linear."""

    def __init__(self, *, in_channels: int = 3, width: int = 16, depth: int = 4,
                 batch_norm: bool = True) -> None:
        super().__init__()
        chans = [in_channels] + [width * min(2 ** i, 4) for i in range(depth)]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers.append(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], TURNS)
        self.sizes = {'in_channels': in_channels, 'width': width, 'depth': depth}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` in [-1, 1] -> logits ``(N, 4)`` over quarter turns 0..3."""
        return self.head(self.body(x).mean((2, 3)))

    def folded(self) -> RotationNet:
        """The same function in eval mode without batch norm (folded into the convs)."""
        out = RotationNet(**self.sizes, batch_norm=False)
        src = list(self.body)
        convs = [m for m in out.body if isinstance(m, nn.Conv2d)]
        with torch.no_grad():
            k = 0
            for i, m in enumerate(src):
                if not isinstance(m, nn.Conv2d):
                    continue
                w = m.weight.detach().clone()
                b = m.bias.detach().clone() if m.bias is not None else torch.zeros(w.shape[0])
                bn = src[i + 1]
                if isinstance(bn, nn.BatchNorm2d):
                    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                    w = w * scale[:, None, None, None]
                    b = (b - bn.running_mean) * scale + bn.bias
                convs[k].weight.copy_(w)
                convs[k].bias.copy_(b)
                k += 1
            out.head.load_state_dict(self.head.state_dict())
        return out.eval()


def quarter_turn(x: torch.Tensor, k: int) -> torch.Tensor:
    """``torch.rot90(x, k, (2, 3))`` of a square batch from flips and a transpose.

    ``aten::rot90`` has no ONNX export; flips and transposes do.
    """
    k %= TURNS
    if k == 1:
        return x.transpose(2, 3).flip(2)
    if k == 2:
        return x.flip(2).flip(3)
    if k == 3:
        return x.transpose(2, 3).flip(3)
    return x


def four_turns(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, C, H, W)`` -> its four quarter turns stacked ``(4N, ...)`` and their labels."""
    turned = torch.cat([quarter_turn(x, k) for k in range(TURNS)])
    return turned, torch.arange(TURNS).repeat_interleave(x.shape[0])


def rotation_log_likelihood(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Mean over the four turns of ``x`` of log p(the turn applied): ``(N,)``."""
    turned, labels = four_turns(x)
    logp = F.log_softmax(net(turned), 1).gather(1, labels[:, None])[:, 0]
    return logp.reshape(TURNS, x.shape[0]).mean(0)


def colour_bins(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Normalised ``(N, 3, H, W)`` in [-1, 1] -> colour bin ids ``(N, H, W)`` (``bins``^3)."""
    levels = torch.round((x + 1.0) * 127.5).clamp(0, 255)
    q = torch.div(levels * bins, 256, rounding_mode='floor').long()
    return (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]


class DomainScoreNet(nn.Module):
    """Normalised camera frame ``(N, 3, size, size)`` -> domain score ``(N,)``."""

    def __init__(self, *, size: int = 64, width: int = 16, depth: int = 4,
                 bins: int = 8) -> None:
        super().__init__()
        self.rotation = RotationNet(width=width, depth=depth, batch_norm=False)
        self.bins = bins
        #: log p(colour bin | image row), ``(size, bins**3)``
        self.register_buffer('colour_layout', torch.zeros(size, bins ** 3))
        #: in-domain mean and spread of each part of :meth:`components`, ``(3, 2)``
        self.register_buffer('standardise', torch.tensor([[0.0, 1.0]] * len(COMPONENTS)))
        #: weight of each standardised part in the sum (picked on calibration frames)
        self.register_buffer('weights', torch.tensor(PART_WEIGHTS))

    def components(self, x: torch.Tensor) -> torch.Tensor:
        """The raw parts ``(N, 3)``, in the order of :data:`COMPONENTS`."""
        rot = rotation_log_likelihood(self.rotation, x)
        ids = colour_bins(x, self.bins)  # (N, H, W)
        rows = torch.arange(ids.shape[1], device=x.device)[None, :, None].expand_as(ids)
        colour = self.colour_layout[rows, ids].mean((1, 2))
        return torch.stack([rot, colour, texture(x)], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The standardised sum: 0 is a typical in-domain frame, lower is less like it.

        Texture counts one way only: a frame flatter than the rooms (a lens cap, a black or
        white frame) is out of domain, a busier one is the other parts' business.
        """
        z = (self.components(x) - self.standardise[:, 0]) / self.standardise[:, 1]
        z = torch.cat([z[:, :2], z[:, 2:].clamp(max=0.0)], 1)
        return (z * self.weights).sum(1)


def texture(x: torch.Tensor) -> torch.Tensor:
    """Log of the mean absolute grey-level step between neighbours (0-255 scale): ``(N,)``."""
    grey = x.mean(1) * 127.5
    step = ((grey[:, 1:] - grey[:, :-1]).abs().mean((1, 2))
            + (grey[:, :, 1:] - grey[:, :, :-1]).abs().mean((1, 2)))
    return torch.log(step + 0.5)


def fit_colour_layout(x: torch.Tensor, bins: int = 8, prior: float = 0.1) -> torch.Tensor:
    """Log p(colour bin | row) of normalised frames ``x`` (a ``prior`` count per bin)."""
    ids = colour_bins(x, bins)  # (N, H, W)
    h = ids.shape[1]
    counts = torch.full((h, bins ** 3), prior, dtype=torch.float64)
    rows = torch.arange(h)[None, :, None].expand_as(ids)
    counts.index_put_((rows.reshape(-1), ids.reshape(-1)),
                      torch.ones(ids.numel(), dtype=torch.float64), accumulate=True)
    return torch.log(counts / counts.sum(1, keepdim=True)).float()
