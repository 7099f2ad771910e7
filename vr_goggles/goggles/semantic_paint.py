"""Semantic paint: fill segmented classes of a goggled frame with their flat sim colour.

Why: at 64 x 64 the sim look is almost a function of the classes and the pose. Generators
render the chair faint and invent chair-like blobs; painted flat in the sim chair's colour,
the chair the segmenter finds is what the sim policy learned to steer to. With every class
painted (:data:`SEMANTIC_PAINT`) and the floor rendered from odometry by
:mod:`vr_goggles.goggles.floor_prior`, the goggled frame is the sim frame rendered from the
camera frame's classes: the *semantic goggles* (figures: ``docs/results.md``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from vr_goggles.image.semantics import CLASS_NAMES

#: The flat colour a class is painted in: the sim look's mean RGB of that class, measured
#: over sim frames of training layouts (``test_sim_env`` checks it against the simulator).
#: The sim chair is one dark mesh texture under one light and the sim walls and ceiling are
#: near-uniform (per-channel std 3-5), so a flat fill is close to them. Distractors
#: (``object``) are hidden in the wall colour instead of painted in theirs: the sim policy
#: drives as well past invisible distractors (94 %) but is misled by flat blobs (85 %,
#: ``docs/results/floor_prior_chair.json``).
SIM_CLASS_RGB: dict[str, tuple[int, int, int]] = {
    'chair': (82, 70, 71),
    'wall': (154, 153, 150),
    'ceiling': (110, 110, 110),
    'object': (154, 153, 150),
}

#: Every class but the floor (rendered) and void: with an exact segmenter the goggled frame is
#: then the sim frame rendered from the camera frame's classes and the odometry pose.
SEMANTIC_PAINT: tuple[str, ...] = ('chair', 'wall', 'ceiling', 'object')


def paint_table(classes: Iterable[str]) -> dict[int, tuple[int, int, int]]:
    """Class names -> ``{class id: sim RGB}``; an unpaintable name is refused by name."""
    classes = tuple(classes)
    unknown = [c for c in classes if c not in SIM_CLASS_RGB]
    if unknown:
        raise ValueError(f'paint: no sim colour for {unknown}; known: {sorted(SIM_CLASS_RGB)}')
    return {CLASS_NAMES.index(c): SIM_CLASS_RGB[c] for c in classes}


def paint(frame: np.ndarray, labels: np.ndarray,
          table: dict[int, np.ndarray | tuple[int, int, int]]) -> np.ndarray:
    """``frame`` (uint8 RGB, modified in place and returned) with each class of ``table`` filled.

    ``labels`` are the ``(H, W)`` class ids of the same pixels; classes are painted in the
    table's order, void and unnamed classes keep the frame's pixel.
    """
    for cls, rgb in table.items():
        frame[labels == cls] = rgb
    return frame
