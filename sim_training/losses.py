"""Translator training objectives: one pure function per term (CycleGAN, CyCADA, VR-Goggles).

Two layers. The primitives (``lsgan_*``, ``cycle_loss``, ``semantic_loss``, ``shift_residual``
...) are the textbook losses of one network output. The *terms* at the end (``adversarial``,
``cycle``, ``identity``, ``selfreg``, ``semantic_*``, ``feature_adversarial``, ``shift``) are
the objective's summands as the papers write them, both translation directions in one call;
:data:`sim_training.translator.objective.TERMS` pairs each with its weight, and feeds each
parameter by name from the step's network outputs (``fake_sim = G(x_real)``, ``rec_sim =
G(F(x_sim))``, ``seg_fake_sim = S(G(x_real))``, ... see that module). Weights are applied by
the caller from named config fields; nothing here gates or scales a term on its own.

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


# --- the objective's terms (both directions each; parameters named after the step's outputs)
def adversarial(d_sim_fake: torch.Tensor, d_real_fake: torch.Tensor, gen_target: float
                ) -> torch.Tensor:
    """GAN term (LSGAN): ``lsgan(D_sim(G(x_r))) + lsgan(D_real(F(x_s)))``, to ``gen_target``."""
    return (lsgan_g_loss(d_sim_fake, target=gen_target)
            + lsgan_g_loss(d_real_fake, target=gen_target))


def cycle(rec_real: torch.Tensor, x_real: torch.Tensor, rec_sim: torch.Tensor,
          x_sim: torch.Tensor) -> torch.Tensor:
    """Cycle consistency (CycleGAN): ``|F(G(x_r)) - x_r|_1 + |G(F(x_s)) - x_s|_1``."""
    return cycle_loss(rec_real, x_real) + cycle_loss(rec_sim, x_sim)


def identity(idt_sim: torch.Tensor, x_sim: torch.Tensor, idt_real: torch.Tensor,
             x_real: torch.Tensor) -> torch.Tensor:
    """Identity term (CycleGAN): ``|G(x_s) - x_s|_1 + |F(x_r) - x_r|_1``."""
    return identity_loss(idt_sim, x_sim) + identity_loss(idt_real, x_real)


def selfreg(fake_sim: torch.Tensor, x_real: torch.Tensor, fake_real: torch.Tensor,
            x_sim: torch.Tensor, selfreg_space: str) -> torch.Tensor:
    """Self-regularisation (SimGAN): ``|psi(G(x_r)) - psi(x_r)| + |psi(F(x_s)) - psi(x_s)|``."""
    return (self_regularization(fake_sim, x_real, space=selfreg_space)
            + self_regularization(fake_real, x_sim, space=selfreg_space))


def semantic_sim(seg_fake_real: torch.Tensor, y_sim: torch.Tensor,
                 class_weight: torch.Tensor | None) -> torch.Tensor:
    """Sim-side semantic consistency (CyCADA): ``CE(S(F(x_s)), y_s)``, the simulator's labels."""
    return semantic_loss(seg_fake_real, y_sim, weight=class_weight)


def semantic_real(seg_fake_sim: torch.Tensor, pseudo: torch.Tensor,
                  class_weight: torch.Tensor | None) -> torch.Tensor:
    """Real-side semantic consistency (CyCADA): ``CE(S(G(x_r)), pseudo(x_r))``, pseudo-labels."""
    return semantic_loss(seg_fake_sim, pseudo, weight=class_weight)


def semantic_cycle(seg_rec_sim: torch.Tensor, y_sim: torch.Tensor,
                   class_weight: torch.Tensor | None) -> torch.Tensor:
    """Semantic cycle: ``CE(S(G(F(x_s))), y_s)``, the true labels reach G on fake-real input."""
    return semantic_loss(seg_rec_sim, y_sim, weight=class_weight)


def feature_adversarial(d_feat_fake: torch.Tensor, gen_target: float) -> torch.Tensor:
    """Feature-level GAN term (CyCADA): ``lsgan(D_feat(S.features(G(x_r))))``."""
    return lsgan_g_loss(d_feat_fake, target=gen_target)


def shift(fake_sim: torch.Tensor, shifted_fake_sim: torch.Tensor | None,
          fake_real: torch.Tensor, shifted_fake_real: torch.Tensor | None,
          offset: tuple[int, int]) -> torch.Tensor:
    """Shift loss (VR-Goggles) of both generators for the step's draw ``offset = (i, j)``.

    ``|T_ij(G(x_r)) - G(T_ij(x_r))|^2 + |T_ij(F(x_s)) - F(T_ij(x_s))|^2`` on the overlap;
    ``(0, 0)`` (T is the identity) gives exactly 0, still part of the graph.
    """
    i, j = offset
    if (i, j) == (0, 0):
        return fake_sim.sum() * 0.0
    return (shift_residual(fake_sim, shifted_fake_sim, i, j)
            + shift_residual(fake_real, shifted_fake_real, i, j))
