"""Helpers of the no-label segmenter tests (FDA, DACS): a camera folder and saved weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def camera_folder(path: Path, n: int = 4, size: int = 16) -> Path:
    """A folder of unlabelled PNG 'camera frames' (no labels/ anywhere)."""
    from sim_training.collect import _write_png
    from sim_training.data import synthetic_frames

    path.mkdir()
    for i, img in enumerate(synthetic_frames(n, (size, size), domain='real', seed=7).images):
        _write_png(path / f'{i:03d}.png', img)
    return path


def weights(stem: Path | str) -> dict[str, np.ndarray]:
    """The tensors a training run saved at ``stem``."""
    from safetensors.numpy import load_file

    return load_file(f'{stem}.safetensors')
