"""Translation-quality metrics shared by training, evaluation and replay (no ROS, no torch import).

Every function accepts numpy arrays or torch tensors ``(N, C, H, W)`` and works in the caller's
units (the project's network range is [-1, 1]).

Shift convention (VR-Goggles): ``T_ij`` translates an image down by ``i`` rows and right by
``j`` columns. The pixels that enter from the border are not defined by the original image, so
every comparison is restricted to the region valid in both images, rows ``[i, H)`` and columns
``[j, W)`` of the shifted frame (equivalently rows ``[0, H - i)``, columns ``[0, W - j)`` of the
unshifted one). ``translate`` fills the entering border by wrapping (``roll``); the fill never
enters the compared region directly, only through the network's receptive field near the edge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith('torch')


def translate(x: Any, i: int, j: int) -> Any:
    """``T_ij``: shift ``(..., H, W)`` content down ``i`` rows, right ``j`` columns (wrapping)."""
    if i == 0 and j == 0:
        return x
    if _is_torch(x):
        import torch

        return torch.roll(x, shifts=(i, j), dims=(-2, -1))
    return np.roll(x, shift=(i, j), axis=(-2, -1))


def overlap_pair(shifted_of_output: Any, output_of_shifted: Any, i: int, j: int
                 ) -> tuple[Any, Any]:
    """Crop ``T_ij(G(x))`` and ``G(T_ij(x))`` to the region valid in both (rows >= i, cols >= j).

    ``shifted_of_output`` may also be passed *unshifted* as ``G(x)``: the valid region of
    ``T_ij(G(x))`` is exactly ``G(x)[..., :H-i, :W-j]``, so no roll is needed; this function
    takes ``G(x)`` for that reason.
    """
    h, w = output_of_shifted.shape[-2:]
    return shifted_of_output[..., :h - i, :w - j], output_of_shifted[..., i:, j:]


def shift_pairs(max_shift: int) -> list[tuple[int, int]]:
    """All ``(i, j)`` in ``[0, max_shift)^2`` except ``(0, 0)`` (the identity shift)."""
    return [(i, j) for i in range(max_shift) for j in range(max_shift) if (i, j) != (0, 0)]


def shift_error(fn: Callable[[Any], Any], x: Any, max_shift: int,
                shifts: Iterable[tuple[int, int]] | None = None) -> float:
    """Mean ``|T_ij(fn(x)) - fn(T_ij(x))|`` over the overlap region, averaged over shifts.

    ``fn`` maps ``(N, C, H, W)`` to ``(N, C', H, W)`` (same spatial size). ``max_shift`` is
    ``2 ** K`` for a network with ``K`` stride-2 layers: shifts that are multiples of it are
    (away from borders) handled equivariantly by any such network, the others are not. A
    perfectly shift-equivariant map (identity, 1x1 conv) scores 0 up to border effects.
    """
    pairs = list(shifts) if shifts is not None else shift_pairs(max_shift)
    if not pairs:
        raise ValueError(f'max_shift={max_shift}: no non-zero shift to evaluate')
    y = fn(x)
    total = 0.0
    for i, j in pairs:
        a, b = overlap_pair(y, fn(translate(x, i, j)), i, j)
        d = a - b
        total += float(abs(d).mean())
    return total / len(pairs)


def flicker(frames_out: Any, frames_in: Any) -> float:
    """Temporal flicker: ``sum|y_{t+1} - y_t| / sum|x_{t+1} - x_t|`` over consecutive frames.

    ``frames_*`` are ``(T, C, H, W)`` in the same units; 1.0 means the output changes as much as
    the input does (identity), above 1 means the translation adds flicker.
    """
    dy = float(abs(frames_out[1:] - frames_out[:-1]).sum())
    dx = float(abs(frames_in[1:] - frames_in[:-1]).sum())
    return dy / max(dx, 1e-12)


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int,
                     ignore_index: int | None = None) -> np.ndarray:
    """``(K, K)`` int64 counts, rows = true class, columns = predicted class."""
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    target = np.asarray(target).reshape(-1).astype(np.int64)
    keep = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        keep &= target != ignore_index
    idx = target[keep] * num_classes + np.clip(pred[keep], 0, num_classes - 1)
    return np.bincount(idx, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU from a confusion matrix; NaN for classes absent from both pred and target."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(conf: np.ndarray) -> float:
    """Mean IoU over the classes present in the ground truth (rows with support).

    Classes only ever predicted (never labelled) still cost IoU through the false positives
    they take from labelled classes, but do not add a zero term of their own.
    """
    conf = np.asarray(conf)
    present = conf.sum(1) > 0
    if not present.any():
        return float('nan')
    return float(np.nanmean(iou_per_class(conf)[present]))


def object_presence(pred: np.ndarray, target: np.ndarray, cls: int, *, min_found: int = 15,
                    min_true: int = 40) -> dict[str, Any]:
    """Frame-level presence errors of class ``cls`` in label maps ``(N, H, W)``.

    A navigation policy steers at a blob, so a translator that paints the target into empty
    frames (``false_frames``: share of frames without a true ``cls`` pixel where ``pred`` has
    ``>= min_found``) fails differently from one that erases it (``missed_frames``: share of
    frames with ``>= min_true`` true pixels where ``pred`` has fewer than ``min_found``); the
    pixel IoU mixes both. Also the pixel ``precision`` / ``recall`` and the frame counts; a
    share is None when no frame qualifies.
    """
    pred = np.asarray(pred).reshape(len(pred), -1) == cls
    true = np.asarray(target).reshape(len(target), -1) == cls
    found = pred.sum(1) >= min_found
    n_true = true.sum(1)
    empty, big = n_true == 0, n_true >= min_true
    tp = int((pred & true).sum())

    def share(frames: np.ndarray, hit: np.ndarray) -> float | None:
        return round(float(hit[frames].mean()), 4) if frames.any() else None

    return {'false_frames': share(empty, found), 'missed_frames': share(big, ~found),
            'precision': round(tp / max(int(pred.sum()), 1), 4),
            'recall': round(tp / max(int(true.sum()), 1), 4),
            'empty_frames': int(empty.sum()), 'present_frames': int(big.sum())}
