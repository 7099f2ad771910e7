"""Translator training objectives: one pure function per term (CycleGAN, CyCADA, VR-Goggles).

Weights are applied by the caller from named config fields; nothing here
gates or scales a term on its own.

Shapes: images ``(N, 3, H, W)`` in [-1, 1]; discriminator scores ``(N, 1, h, w)``; segmenter
logits ``(N, K, H, W)``; labels ``(N, H, W)`` int64 class ids.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from vr_goggles.goggles.quality import overlap_pair, translate

#: Label value the semantic loss skips (low-confidence pseudo-labels, unlabelled pixels).
IGNORE_INDEX = 255


def lsgan_d_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor, *,
                 real_label: float = 0.9, fake_label: float = 0.0) -> torch.Tensor:
    """Least-squares discriminator loss (Mao et al. 2017) with one-sided label smoothing.

    Real patches are pushed to ``real_label`` (< 1 smooths only the real side, as in GazeGAN /
    Salimans et al. 2016: it stops D from growing over-confident without rewarding fakes).
    """
    real = F.mse_loss(real_scores, torch.full_like(real_scores, real_label))
    fake = F.mse_loss(fake_scores, torch.full_like(fake_scores, fake_label))
    return 0.5 * (real + fake)


def lsgan_g_loss(fake_scores: torch.Tensor, *, target: float = 1.0) -> torch.Tensor:
    """Least-squares generator loss: fakes should be scored ``target``."""
    return F.mse_loss(fake_scores, torch.full_like(fake_scores, target))


def cycle_loss(reconstruction: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Cycle consistency ``|F(G(x)) - x|_1`` (mean over pixels)."""
    return F.l1_loss(reconstruction, original)


def identity_loss(same_domain_output: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Identity term of CycleGAN, ``|G(y) - y|_1`` for ``y`` already in G's target domain."""
    return F.l1_loss(same_domain_output, original)


def paired_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Randomised-to-canonical term of RCAN (James et al. 2019), ``|G(x_dr) - x_sim|_1``.

    ``x_dr`` and ``x_sim`` are the same simulator state rendered with a domain-randomised look
    and with the sim look (pixel-aligned: same pose, same geometry), so G gets dense
    supervision on *what* to keep (every object where it is) across looks it has never
    seen, which the unpaired terms alone do not give it.
    """
    return F.l1_loss(output, target)


def self_regularization(output: torch.Tensor, source: torch.Tensor, *,
                        space: str = 'pixel', pool: int = 4) -> torch.Tensor:
    """Self-regularisation of SimGAN, ``|psi(G(x)) - psi(x)|_1`` with a fixed feature map.

    ``space='pixel'``: psi = identity (SimGAN's choice). ``space='pooled'``: psi =
    ``pool`` x ``pool`` average pooling, i.e. keep the low-frequency layout and colours of the
    input while leaving texture free to change, which suits a real->sim look change better
    than pixel L1.
    """
    if space == 'pixel':
        return F.l1_loss(output, source)
    if space == 'pooled':
        return F.l1_loss(F.avg_pool2d(output, pool), F.avg_pool2d(source, pool))
    raise ValueError(f"space: expected 'pixel' or 'pooled', got {space!r}")


def pseudo_labels(logits: torch.Tensor, *, threshold: float,
                  ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Argmax labels ``(N, H, W)`` of frozen-segmenter logits, confidence-filtered.

    ``ignore_index`` where the softmax confidence is below ``threshold`` (CyCADA pseudo-labels
    on the unlabelled domain).
    """
    with torch.no_grad():
        prob = torch.softmax(logits.float(), dim=1)
        conf, labels = prob.max(dim=1)
        return torch.where(conf >= threshold, labels, torch.full_like(labels, ignore_index))


def semantic_loss(logits: torch.Tensor, labels: torch.Tensor, *,
                  weight: torch.Tensor | None = None,
                  ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Semantic consistency (CyCADA): cross-entropy of ``segmenter(G(x))`` vs ``labels``.

    ``labels`` are the simulator's true labels (sim->real side) or confidence-filtered
    pseudo-labels (real->sim side). ``weight``: optional per-class weights (the weighted mean
    of torch's cross-entropy). Returns 0 (with a graph) if every pixel is ignored.
    """
    labels = labels.long()
    valid = labels != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels, weight=weight, ignore_index=ignore_index)


def class_color_loss(image: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, *,
                     min_pixels: int = 4, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Per-class appearance: ``|mean colour of image over class c - targets[c]|_1``.

    ``labels`` ``(N, H, W)`` (``ignore_index`` skipped), ``targets`` ``(K, 3)`` the target
    domain's mean colour of each class in the network range (NaN rows: class never seen). The
    mean is over the (image, class) pairs with at least ``min_pixels`` pixels, so a small chair
    weighs as much as the floor. The segmenter-judged semantic term accepts a chair of any
    colour, while the sim policy only ever saw the sim ones. Returns 0 (with a graph) when no
    pair qualifies.
    """
    k = targets.shape[0]
    onehot = (labels[:, None] == torch.arange(k, device=labels.device)[None, :, None, None])
    mask = onehot.to(image.dtype)                                   # (N, K, H, W)
    counts = mask.sum((2, 3))                                       # (N, K)
    means = torch.einsum('nchw,nkhw->nkc', image, mask) / counts.clamp(min=1)[..., None]
    valid = (counts >= min_pixels) & torch.isfinite(targets).all(1)[None]
    if not bool(valid.any()):
        return image.sum() * 0.0
    diff = (means - torch.nan_to_num(targets)[None].to(image.dtype)).abs().mean(-1)
    return diff[valid].mean()


def task_consistency(features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Task-network consistency ``|phi(G(x)) - phi(x)|_1`` in a frozen policy's feature space.

    CyCADA's semantic consistency judged by the downstream task network itself: ``phi`` is the
    sim policy's encoder, so the translator is asked to keep what the policy looks at (a chair
    a few pixels wide weighs little in any pixel loss). ``reference`` = ``phi`` of the
    untranslated sim frame; it carries no gradient.
    """
    return F.l1_loss(features, reference.detach())


def shift_loss(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, i: int, j: int,
               y: torch.Tensor | None = None) -> torch.Tensor:
    """VR-Goggles shift loss ``|T_ij(G(x)) - G(T_ij(x))|_2^2`` on the overlap region.

    ``T_ij`` translates by ``i`` rows and ``j`` columns (see :mod:`vr_goggles.goggles.quality`);
    the
    squared error is averaged over the region valid in both images. Pass ``y = fn(x)`` when it
    is already computed to save one forward pass. ``(i, j) = (0, 0)`` gives exactly 0.
    """
    if i == 0 and j == 0:
        return x.new_zeros(()) if y is None else y.sum() * 0.0
    if y is None:
        y = fn(x)
    return shift_residual(y, fn(translate(x, i, j)), i, j)


def shift_residual(y: torch.Tensor, y_of_shifted: torch.Tensor, i: int, j: int) -> torch.Tensor:
    """The shift loss from outputs already computed: ``y = G(x)``, ``y_of_shifted = G(T_ij x)``.

    The training step gets both from one batched generator call (see :func:`shift_loss`).
    """
    a, b = overlap_pair(y, y_of_shifted, i, j)
    return F.mse_loss(a.float(), b.float())
