"""Semantic classes of the simulator's label pass, shared by segmenter, training and metrics."""

from __future__ import annotations

import numpy as np

#: Class id = index. ``void`` marks pixels with no surface (never expected indoors).
CLASS_NAMES: tuple[str, ...] = ('void', 'floor', 'wall', 'ceiling', 'chair', 'object')
VOID, FLOOR, WALL, CEILING, CHAIR, OBJECT = range(len(CLASS_NAMES))
NUM_CLASSES = len(CLASS_NAMES)

#: RGB colour per class for visualisation PNGs.
PALETTE = np.array([
    [0, 0, 0],        # void
    [128, 64, 128],   # floor
    [70, 70, 70],     # wall
    [190, 153, 153],  # ceiling
    [220, 20, 60],    # chair
    [250, 170, 30],   # object
], dtype=np.uint8)


def colorize(labels: np.ndarray) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 RGB visualisation."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f'labels: class ids must be in [0, {NUM_CLASSES}), '
                         f'got range [{labels.min()}, {labels.max()}]')
    return PALETTE[labels]


def classes_json() -> dict:
    """The class table written beside exported datasets."""
    return {'classes': [{'id': i, 'name': n, 'color': PALETTE[i].tolist()}
                        for i, n in enumerate(CLASS_NAMES)]}


def class_weights(spec: str, flag: str = 'class_weights') -> list[float] | None:
    """``'chair=4,object=2'`` -> one loss weight per class, 1 for the classes not named.

    ``''`` -> None (uniform). Rare classes (the chair covers a few percent of the pixels) need
    a weight for a cross-entropy to keep them at all. ``flag`` names the setting in errors.
    """
    if not spec.strip():
        return None
    weights = [1.0] * NUM_CLASSES
    for item in spec.split(','):
        name, sep, value = item.partition('=')
        name = name.strip()
        if not sep or name not in CLASS_NAMES:
            raise ValueError(f'{flag}: expected name=weight with a name from '
                             f'{list(CLASS_NAMES)}, got {item!r}')
        w = float(value)
        if not w >= 0:
            raise ValueError(f'{flag}: weight of {name} must be >= 0, got {w}')
        weights[CLASS_NAMES.index(name)] = w
    return weights
