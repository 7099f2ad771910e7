"""Helpers of the segmenter-trainer tests: camera frames, a resumable run, weights, a cut-off."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest


def camera_folder(path: Path, n: int = 4, size: int = 16) -> Path:
    """A folder of unlabelled PNG 'camera frames' (no labels/ anywhere)."""
    from sim_training.collect import _write_png
    from sim_training.data import synthetic_frames

    path.mkdir()
    for i, img in enumerate(synthetic_frames(n, (size, size), domain='real', seed=7).images):
        _write_png(path / f'{i:03d}.png', img)
    return path


def resumable_config(tmp_path: Path, out: str, **kw: Any) -> Any:
    """A six-step run on 8 synthetic 16x16 frames, checkpointed every 2 steps.

    Saved at ``tmp_path / out``; :func:`interrupted_run`'s default cut (step 3) leaves its
    step-2 checkpoint behind.
    """
    from sim_training.train_segmenter import SegmenterConfig

    return SegmenterConfig(synthetic=8, size=16, width=4, steps=6, batch_size=4,
                           ckpt_every=2, out=str(tmp_path / out), **kw)


def weights(stem: Path | str) -> dict[str, np.ndarray]:
    """The tensors a training run saved at ``stem``."""
    from safetensors.numpy import load_file

    return load_file(f'{stem}.safetensors')


def interrupted_run(monkeypatch: pytest.MonkeyPatch, owner: type, method: str,
                    run: Callable[[], Any], at_call: int = 4) -> None:
    """``run()`` cut by a Ctrl-C on the ``at_call``-th call of ``owner.method``.

    With ``ckpt_every=2`` and one call per step, the default (the 4th call, step 3) leaves the
    step-2 checkpoint behind. ``owner.method`` is restored afterwards.
    """
    real, calls = getattr(owner, method), []

    def dies(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == at_call:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(owner, method, dies)
    try:
        with pytest.raises(KeyboardInterrupt):
            run()
    finally:
        monkeypatch.setattr(owner, method, real)
