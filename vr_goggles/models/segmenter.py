"""Small encoder-decoder semantic segmenter (the CyCADA task network, trained on sim labels).

Frozen during translator training: its predictions on translated images supervise the
generators' semantic-consistency loss, and ``features()`` feeds the optional feature-level
adversarial loss. It is also the evaluation probe: mIoU of ``segmenter(G(x_real))`` against the
real domain's labels measures how much scene content the translation preserves.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from vr_goggles.image.semantics import NUM_CLASSES


class _BatchNorm2d(nn.BatchNorm2d):
    """BatchNorm without the 0-d ``num_batches_tracked`` counter in its state dict.

    The counter only matters for ``momentum=None`` (cumulative averages); without it a weights
    file holds real tensors only. BatchNorm's forward supports a None counter; the loader is
    told the state is current (version 2) so that it does not invent the counter back.
    """

    def __init__(self, channels: int):
        super().__init__(channels)
        self.num_batches_tracked = None

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        local_metadata = {**local_metadata, 'version': 2}
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)


def _bn(channels: int) -> nn.BatchNorm2d:
    return _BatchNorm2d(channels)


def _cbr(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        _bn(cout), nn.ReLU(inplace=True))


class SegmentationNet(nn.Module):
    """U-Net-lite: two stride-2 stages, a dilated context block, resize-conv decoder with skips.

    Input ``(N, in_channels, H, W)`` in [-1, 1] with H, W multiples of 4; output logits
    ``(N, num_classes, H, W)``.
    """

    def __init__(self, *, in_channels: int = 3, num_classes: int = NUM_CLASSES,
                 width: int = 16):
        super().__init__()
        w = width
        self.num_classes = num_classes
        self.stem = nn.Sequential(_cbr(in_channels, w), _cbr(w, w))           # (N, w, H, W)
        self.down1 = nn.Sequential(_cbr(w, 2 * w, 2), _cbr(2 * w, 2 * w))    # (N, 2w, H/2, W/2)
        self.down2 = nn.Sequential(_cbr(2 * w, 4 * w, 2), _cbr(4 * w, 4 * w, dilation=2),
                                   _cbr(4 * w, 4 * w, dilation=4))           # (N, 4w, H/4, W/4)
        self.up1 = _cbr(4 * w + 2 * w, 2 * w)                                # (N, 2w, H/2, W/2)
        self.up2 = _cbr(2 * w + w, w)                                        # (N, w, H, W)
        self.head = nn.Conv2d(w, num_classes, 1)                             # (N, K, H, W)

    @property
    def feature_channels(self) -> int:
        """Channels of :meth:`features` (input of a feature-level discriminator)."""
        return self.down2[0][0].out_channels

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, 4w, H/4, W/4)
        """Return the bottleneck, where the CyCADA feature-level adversarial loss acts."""
        return self.down2(self.down1(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, K, H, W)
        """Apply the module (shapes in the trailing comment)."""
        s0 = self.stem(x)
        s1 = self.down1(s0)
        s2 = self.down2(s1)
        u1 = self.up1(torch.cat([F.interpolate(s2, scale_factor=2.0, mode='nearest'), s1], 1))
        u2 = self.up2(torch.cat([F.interpolate(u1, scale_factor=2.0, mode='nearest'), s0], 1))
        return self.head(u2)
