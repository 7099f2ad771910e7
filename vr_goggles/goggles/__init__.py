"""The goggles: a decoded camera frame in, the simulator-looking image to publish out.

``facade.Goggles`` owns every step between the two (translation by an engine, the floor prior
or semantic paint, the output size); ``floor_prior`` renders the sim floor from odometry and
paints segmented classes flat; ``stats_match`` is the training-free colour baseline;
``quality`` holds the translation and segmentation metrics (shift error, flicker, IoU).
Names are re-exported lazily so ``import vr_goggles.goggles.quality`` stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ['DEFAULT_MODEL', 'GENERATOR_ARCHITECTURES', 'Goggles']


def __getattr__(name: str) -> Any:
    if name in __all__:
        from vr_goggles.goggles import facade
        return getattr(facade, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
