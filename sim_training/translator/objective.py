"""The translator's objective: one table of named weight -> loss term, and the D losses.

Generator step (``G``: real->sim, shipped; ``F``: sim->real; ``D_sim`` / ``D_real``: PatchGAN;
``S``: frozen sim segmenter; every CE is weighted per class by ``sem_class_weights``)::

    L = lambda_adv       * [lsgan(D_sim(G(x_r))) + lsgan(D_real(F(x_s)))]
      + lambda_cycle     * [|F(G(x_r)) - x_r| + |G(F(x_s)) - x_s|]
      + lambda_identity  * [|G(x_s) - x_s| + |F(x_r) - x_r|]
      + lambda_selfreg   * [|psi(G(x_r)) - psi(x_r)| + |psi(F(x_s)) - psi(x_s)|]   (SimGAN)
      + lambda_sem_sim   * CE(S(F(x_s)), y_s)           (CyCADA, the simulator's true labels)
      + lambda_sem_real  * CE(S(G(x_r)), pseudo(x_r))   (CyCADA: confident argmax of a frozen
                           labeller S', pseudo_segmenter (default S), from pseudo_start_step)
      + lambda_sem_cycle * CE(S(G(F(x_s))), y_s)        (the true labels reach G on fake-real
                           input, where the pseudo-labels are unreliable)
      + lambda_feat_adv  * lsgan(D_feat(S.features(G(x_r))))   (CyCADA feature-level GAN)
      + lambda_shift     * [|T_ij(G(x_r)) - G(T_ij(x_r))|^2 + same for F]   (VR-Goggles;
                           i, j ~ U[0, 2^K), K = n_down, overlap region only)

During the first ``warmup_steps`` steps G and F learn only ``warmup_selfreg`` * the self-
regularisation term (SimGAN refiner pre-training) while the discriminators already train.

Each term is a pure function in :mod:`sim_training.losses` whose parameters name what it
reads (``fake_sim``, ``rec_sim``, ``seg_fake_sim``, ... see :class:`StepOutputs`); a zero weight
skips the term and every network output only it needs. Every generator and segmenter input
that does not depend on another output goes through its network in one batched call: the
networks normalise per sample (InstanceNorm; the frozen segmenter's BatchNorm uses running
statistics), so this is the same objective as separate calls, with fewer, larger kernels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
import inspect
from typing import Any

import torch
from torch import nn

from sim_training import losses as L
from sim_training.image_pool import ImagePool
from sim_training.translator.config import TranslatorConfig
from vr_goggles.goggles.quality import translate

#: weight field -> loss term; iterated in this order. The logged name drops ``lambda_``.
TERMS: dict[str, Callable[..., torch.Tensor]] = {
    'lambda_adv': L.adversarial,
    'lambda_cycle': L.cycle,
    'lambda_identity': L.identity,
    'lambda_selfreg': L.selfreg,
    'lambda_sem_sim': L.semantic_sim,
    'lambda_sem_real': L.semantic_real,
    'lambda_sem_cycle': L.semantic_cycle,
    'lambda_feat_adv': L.feature_adversarial,
    'lambda_shift': L.shift,
}
#: The objective of the warm-up steps (SimGAN): self-regularisation alone.
WARMUP_TERMS: dict[str, Callable[..., torch.Tensor]] = {'warmup_selfreg': L.selfreg}

#: What each term reads, by parameter name.
INPUTS: dict[str, tuple[str, ...]] = {
    name: tuple(inspect.signature(fn).parameters)
    for name, fn in {**TERMS, **WARMUP_TERMS}.items()}


@dataclass
class Networks:
    """The modules of one objective evaluation (DDP-wrapped where training is distributed)."""

    G: nn.Module                        #: real -> sim (shipped)
    F: nn.Module                        #: sim -> real
    D_sim: nn.Module
    D_real: nn.Module
    seg: nn.Module | None = None        #: frozen sim segmenter S
    labeller: Callable[[torch.Tensor], torch.Tensor] | None = None  #: pseudo-labeller S'
    D_feat: nn.Module | None = None


def unwrap(m: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper."""
    return m.module if hasattr(m, 'module') else m


def batched(fn: Callable[[torch.Tensor], torch.Tensor],
            inputs: Mapping[str, torch.Tensor | None]) -> dict[str, torch.Tensor]:
    """``fn`` applied to every non-None input in one call on their concatenation.

    Exact for networks that treat samples independently (InstanceNorm, frozen BatchNorm);
    fewer, larger kernels are what makes a small-image CPU step fast.
    """
    keys = [k for k, v in inputs.items() if v is not None]
    if not keys:
        return {}
    xs = [inputs[k] for k in keys]
    out = fn(torch.cat(xs)) if len(xs) > 1 else fn(xs[0])
    return dict(zip(keys, out.split([x.shape[0] for x in xs]), strict=True))


def term_weights(cfg: TranslatorConfig, step: int) -> dict[str, float]:
    """The terms active at ``step`` and their weights, in :data:`TERMS` order.

    The warm-up's one term counts even at weight 0 (the step needs a graph); after it, a zero
    weight drops a term, and the real-side semantic term waits for ``pseudo_start_step``.
    """
    if step < cfg.warmup_steps:
        return {'warmup_selfreg': cfg.warmup_selfreg}
    weights = {name: getattr(cfg, name) for name in TERMS}
    if step < cfg.pseudo_start_step:
        weights['lambda_sem_real'] = 0.0
    return {name: w for name, w in weights.items() if w}


def pseudo_labels(labeller: Callable[[torch.Tensor], torch.Tensor], x_real: torch.Tensor, *,
                  threshold: float) -> torch.Tensor:
    """Confidence-filtered argmax labels of the frozen labeller on the raw real frames."""
    with torch.no_grad():
        return L.pseudo_labels(labeller(x_real), threshold=threshold)


#: The step's network outputs in the order the networks run, one tuple per stage.
STAGES: tuple[tuple[str, ...], ...] = (
    ('fake_sim', 'fake_real', 'idt_sim', 'idt_real', 'shifted_fake_sim', 'shifted_fake_real'),
    ('d_sim_fake', 'd_real_fake'),
    ('rec_sim', 'rec_real'),
    ('seg_fake_real', 'seg_fake_sim', 'seg_rec_sim', 'pseudo'),
    ('d_feat_fake',),
)
_STAGE_OF = {name: k for k, names in enumerate(STAGES) for name in names}


class StepOutputs:
    """Every input a term may read, each network stage run when a term first reads from it.

    Names: ``fake_sim = G(x_real)``, ``fake_real = F(x_sim)`` (always), ``idt_sim = G(x_sim)``,
    ``idt_real = F(x_real)``, ``shifted_fake_sim = G(T(x_real))``, ``shifted_fake_real =
    F(T(x_sim))``, ``d_sim_fake`` / ``d_real_fake`` (discriminator scores of the fakes),
    ``rec_sim = G(F(x_sim))``, ``rec_real = F(G(x_real))``, ``seg_fake_real = S(F(x_sim))``,
    ``seg_fake_sim = S(G(x_real))``, ``seg_rec_sim = S(G(F(x_sim)))``, ``pseudo``,
    ``d_feat_fake``, plus the inputs and the config values ``gen_target``, ``selfreg_space``,
    ``class_weight`` and ``offset`` (the step's shift draw). An output is computed only where
    ``need`` names it (or an output that depends on it). The stages run in :data:`STAGES`
    order and the terms are read in table order, so the autograd graph, and with it every
    gradient sum, is built in one fixed order.
    """

    def __init__(self, cfg: TranslatorConfig, nets: Networks, need: set[str],
                 x_sim: torch.Tensor, y_sim: torch.Tensor | None, x_real: torch.Tensor,
                 offset: tuple[int, int], class_weight: torch.Tensor | None = None):
        self.cfg, self.nets, self.need = cfg, nets, need
        self.values: dict[str, Any] = {
            'x_sim': x_sim, 'y_sim': y_sim, 'x_real': x_real, 'offset': offset,
            'gen_target': cfg.adv_gen_target, 'selfreg_space': cfg.selfreg_space,
            'class_weight': class_weight}
        self._stages = (self._generators, self._discriminators, self._reconstructions,
                        self._segmenter, self._feature_discriminator)
        self._ran = 0

    def read(self, names: tuple[str, ...]) -> dict[str, Any]:
        """The values of ``names`` (None where not computed), running the stages they need."""
        last = max((_STAGE_OF.get(n, -1) for n in names), default=-1)
        while self._ran <= last:
            self._stages[self._ran]()
            self._ran += 1
        return {n: self.values.get(n) for n in names}

    def _wants(self, *names: str) -> bool:
        return any(n in self.need for n in names)

    def _generators(self) -> None:
        v, offset = self.values, self.values['offset']
        shifted = offset != (0, 0)
        v.update(batched(self.nets.G, {
            'fake_sim': v['x_real'],
            'idt_sim': v['x_sim'] if self._wants('idt_sim') else None,
            'shifted_fake_sim': (translate(v['x_real'], *offset)
                                 if shifted and self._wants('shifted_fake_sim') else None)}))
        v.update(batched(self.nets.F, {
            'fake_real': v['x_sim'],
            'idt_real': v['x_real'] if self._wants('idt_real') else None,
            'shifted_fake_real': (translate(v['x_sim'], *offset)
                                  if shifted and self._wants('shifted_fake_real') else None)}))

    def _discriminators(self) -> None:
        if self._wants('d_sim_fake', 'd_real_fake'):   # unwrapped: no DDP sync in the G step
            self.values['d_sim_fake'] = unwrap(self.nets.D_sim)(self.values['fake_sim'])
            self.values['d_real_fake'] = unwrap(self.nets.D_real)(self.values['fake_real'])

    def _reconstructions(self) -> None:
        if self._wants('rec_sim', 'seg_rec_sim'):
            self.values['rec_sim'] = self.nets.G(self.values['fake_real'])
        if self._wants('rec_real'):
            self.values['rec_real'] = self.nets.F(self.values['fake_sim'])

    def _segmenter(self) -> None:
        v = self.values
        v.update(batched(self.nets.seg, {
            'seg_fake_real': v['fake_real'] if self._wants('seg_fake_real') else None,
            'seg_fake_sim': v['fake_sim'] if self._wants('seg_fake_sim') else None,
            'seg_rec_sim': v.get('rec_sim') if self._wants('seg_rec_sim') else None}))
        if self._wants('pseudo'):
            v['pseudo'] = pseudo_labels(self.nets.labeller, v['x_real'],
                                        threshold=self.cfg.pseudo_threshold)

    def _feature_discriminator(self) -> None:
        if self._wants('d_feat_fake'):
            feats = self.nets.seg.features(self.values['fake_sim'])
            self.values['d_feat_fake'] = unwrap(self.nets.D_feat)(feats)


def generator_losses(cfg: TranslatorConfig, nets: Networks, step: int, x_sim: torch.Tensor,
                     y_sim: torch.Tensor | None, x_real: torch.Tensor, *,
                     shift_rng: torch.Generator | None = None,
                     class_weight: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor,
                                torch.Tensor]:
    """Total generator loss, its logged terms, and the fakes ``(G(x_real), F(x_sim))``.

    ``shift_rng`` draws the shift ``(i, j)`` (only when the shift term is active).
    """
    weights = term_weights(cfg, step)
    need = {p for name in weights for p in INPUTS[name]}
    offset = (0, 0)
    if 'lambda_shift' in weights:
        ij = torch.randint(2 ** cfg.n_down, (2,), generator=shift_rng)
        offset = (int(ij[0]), int(ij[1]))
    out = StepOutputs(cfg, nets, need, x_sim, y_sim, x_real, offset, class_weight)
    fakes = out.read(('fake_sim', 'fake_real'))
    total = x_real.new_zeros(())
    logs: dict[str, torch.Tensor] = {}
    for name, weight in weights.items():
        term = TERMS.get(name) or WARMUP_TERMS[name]
        value = term(**out.read(INPUTS[name]))
        logs[name.removeprefix('lambda_')] = value
        total = total + weight * value
    if out.values.get('pseudo') is not None:
        logs['pseudo_valid'] = (out.values['pseudo'] != L.IGNORE_INDEX).float().mean()
    return total, logs, fakes['fake_sim'], fakes['fake_real']


def discriminator_losses(cfg: TranslatorConfig, nets: Networks, pool_sim: ImagePool,
                         pool_real: ImagePool, x_sim: torch.Tensor, x_real: torch.Tensor,
                         fake_sim: torch.Tensor, fake_real: torch.Tensor
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """LSGAN D losses on real frames vs pooled fakes (one batched call per D)."""
    kw = dict(real_label=cfg.adv_real_label, fake_label=cfg.adv_fake_label)
    old_s = pool_sim.query(fake_sim.detach().float())
    old_r = pool_real.query(fake_real.detach().float())
    ds = batched(nets.D_sim, {'real': x_sim, 'fake': old_s.to(x_sim.dtype)})
    dr = batched(nets.D_real, {'real': x_real, 'fake': old_r.to(x_real.dtype)})
    terms = {'D_sim': L.lsgan_d_loss(ds['real'], ds['fake'], **kw),
             'D_real': L.lsgan_d_loss(dr['real'], dr['fake'], **kw)}
    if nets.D_feat is not None:
        with torch.no_grad():
            f_real, f_fake = nets.seg.features(x_sim), nets.seg.features(fake_sim.detach())
        terms['D_feat'] = L.lsgan_d_loss(nets.D_feat(f_real), nets.D_feat(f_fake), **kw)
    return sum(terms.values()), terms
