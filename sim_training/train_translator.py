"""Train the real->sim translator: CycleGAN, CyCADA or VR-Goggles (CyCADA + shift loss).

All three use the SimGAN training tricks (history pool, warm-up, k G steps per D step).

Objective (generator step; every weight is a named :class:`TranslatorConfig` field, a zero
weight skips the term and all weights/switches are printed and logged at start)::

    G: real->sim (shipped), F: sim->real, D_sim / D_real: PatchGAN, S: frozen sim segmenter
    every CE below is weighted per class by sem_class_weights (uniform by default)
    L = lambda_adv      * [lsgan(D_sim(G(x_r))) + lsgan(D_real(F(x_s)))]
      + lambda_cycle    * [|F(G(x_r)) - x_r| + |G(F(x_s)) - x_s|]
      + lambda_identity * [|G(x_s) - x_s| + |F(x_r) - x_r|]
      + lambda_selfreg  * [|psi(G(x_r)) - psi(x_r)| + |psi(F(x_s)) - psi(x_s)|]   (SimGAN)
      + lambda_sem_sim  * CE(S(F(x_s)), y_s)            (CyCADA, simulator's true labels)
      + lambda_sem_real * CE(S(G(x_r)), pseudo(x_r))    (CyCADA: confident argmax of a frozen
                          labeller S' (pseudo_segmenter, default S) from pseudo_start_step,
                          optionally on G'(x_r), G' a periodic copy of G; the classes in
                          pseudo_ignore are never taken as labels)
      + lambda_class_color * mean_c |mean_{pseudo(x_r)=c} G(x_r) - mu_c|   (mu_c: the mean colour
                          of class c over the labelled sim frames; the same pseudo-labels)
      + lambda_sem_cycle * CE(S(G(F(x_s))), y_s)        (semantic cycle: G must keep the true
                          sim labels of fake-real frames; true labels reach G on real-looking
                          input, where the segmenter's own pseudo-labels are unreliable)
      + lambda_feat_adv * lsgan(D_feat(S.features(G(x_r))))   (CyCADA feature-level GAN)
      + lambda_task     * [|phi(G(F(x_s))) - phi(x_s)| + |phi(G(x_s)) - phi(x_s)|]
                          (task consistency: phi = the frozen sim policy's encoder, task_policy,
                          on the frame repeated over its frame stack)
      + lambda_shift    * [|T_ij(G(x_r)) - G(T_ij(x_r))|^2 (+ same for F if shift_both)]
                          i, j ~ U[0, 2^K), K = n_down, overlap region only (VR-Goggles)
      + lambda_paired   * |G(x_dr) - x_sim|              (RCAN, James et al. 2019: the same
                          simulator state in a domain-randomised and in the sim look, --paired)

With ``ema_decay`` > 0 the exported G (and every snapshot) is an exponential moving average of
G's weights from ``ema_start_step`` on (Yazici et al., ICLR 2019: averaged GAN generators often
beat any single iterate); training itself is unchanged. Here it drove no better than the raw G
of the same run (docs/results/translator_weight_averaging.json).

During the first ``warmup_steps`` steps G and F learn only ``warmup_selfreg`` * self-
regularisation (SimGAN refiner pre-training) while the discriminators already train.
Discriminators: LSGAN with one-sided label smoothing (real target ``adv_real_label``), fakes
drawn half from a 50-image history pool, one D step per ``g_steps_per_d`` generator steps.

Run ``python -m sim_training.train_translator --preset vr_goggles --sim data/sim
--real data/real --segmenter segmenter --out runs/vr_goggles --export PATH``; multi-process
with ``torchrun --nproc_per_node N -m sim_training.train_translator ...`` (DDP, gloo on CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
from dataclasses import asdict, dataclass, field, fields
import io
import json
import os
from pathlib import Path
import random
import shlex
import sys
import time
from typing import Any

import numpy as np
import torch
from torch import nn
import torch.distributed as dist

from sim_training import losses as L
from sim_training.data import (
    FrameSampler,
    FrameSet,
    load_source,
    synthetic_frames,
    synthetic_pairs,
)
from sim_training.image_pool import ImagePool
from vr_goggles.goggles.quality import translate
from vr_goggles.image import semantics
from vr_goggles.image.semantics import CLASS_NAMES, NUM_CLASSES
from vr_goggles.models.discriminator import PatchDiscriminator
from vr_goggles.models.generator import ResnetGenerator

PRESETS: dict[str, dict[str, Any]] = {
    # Zhu et al. 2017 (LSGAN, cycle 10, identity 0.5 * 10) with the SimGAN tricks.
    'cyclegan': dict(lambda_sem_sim=0.0, lambda_sem_real=0.0, lambda_shift=0.0),
    # Hoffman et al. 2018: + semantic consistency through a frozen sim-trained segmenter.
    # Real-side pseudo-labels come from a *second* frozen segmenter, trained on the sim and the
    # simulator's domain-randomised frames (shipped as segmenter_dr; still no real label): on
    # raw real frames the sim-only segmenter is confidently wrong (3 % mIoU; anchoring G to
    # its labels destroyed the semantics, 5 vs 17 mIoU for CycleGAN after 750 steps), the
    # randomised one reaches 44 % (chair 24 %). With its labels at weight 1 and the rare chair
    # weighted 5 (object 2) in every semantic CE, the VR-Goggles generator kept the chair
    # (chair IoU 19 vs 7) and drove the sim policy to 39 % vs 15 % on 100 training-split
    # layouts; best of 3 seeds per preset, on the evaluation layouts: VR-Goggles 38.5 %,
    # CyCADA 31.5 %, CycleGAN 25 % (README). The earlier recipe (pseudo-labels from a
    # periodically refreshed copy of G, weight 0.1, from step 1000) is still available through
    # the flags. Cutting the cycle weight to 2 (identity 1) to let the semantic terms carry the
    # content collapsed driving to 0-2 %.
    # The semantic cycle term brings the simulator's true labels to G itself, on fake-real input.
    # A task-consistency term in the frozen sim policy's feature space (lambda_task 5,
    # task_policy policy_sim, on G(F(x_s)) and G(x_s)) drove worse, not better: 0/0/0 % and
    # 4/6/8 % (steps 2500/3000/3500) for two seeds of the vr_goggles preset vs 21/14/8 % for
    # seed 1 without it (a guess at why: G can satisfy a 128-d feature target with patterns
    # the policy's encoder reads rather than with the scene). It is in no preset.
    # RCAN's paired term (lambda_paired: G maps the simulator's domain-randomised frames to the
    # pixel-aligned sim frames of the same states) drove worse too: weight 3 gave 10-17 % and
    # weight 10 3 % (steps 2500/3000/3500, seed 0) against 36 % for the shipped VR-Goggles
    # generator, all with the turn-memory policy on the same 100 training-split layouts
    # (docs/results/translator_paired_dr.json). It is in no preset.
    # segmenter_dr's chair pseudo-labels are half wrong (the generators paint chairs into most
    # chair-free real frames), but ignoring them (pseudo_ignore='chair') painted as many, missed
    # more visible chairs and drove 5-20 % vs 36 % (two seeds;
    # docs/results/translator_pseudo_ignore.json).
    # Nor do the labels or the width limit G: the real frames' true labels in place of the
    # pseudo-labels drove 4-7 %, a better labeller (real mIoU 51 vs 44) 6-15 %, ngf 32 0 %.
    # Per-class colour matching on the pseudo-labels (lambda_class_color 10) moved three seeds
    # by +11, +3 and -8 points (6-21 %): no consistent gain, under the shipped 36 %; in no
    # preset (docs/results/translator_labels_width_color.json).
    # A stronger real-side term drove worse (lambda_sem_real 5: 1-6 %, 10: 0 %, seed 0, vs 7-10 %
    # at 1), though at 5 the sim segmenter scores G's held-out frames higher (mIoU 40.5 vs 36.5):
    # G satisfies the frozen segmenter with washed-out floors and black blobs
    # (docs/results/translator_sem_weight.json).
    'cycada': dict(lambda_sem_sim=0.1, lambda_sem_real=1.0, pseudo_segmenter='segmenter_dr',
                   pseudo_refresh_every=0, pseudo_start_step=0, lambda_sem_cycle=1.0,
                   sem_class_weights='chair=5,object=2', antialias=True, upsample='resize',
                   lambda_shift=0.0),
    # Zhang et al. 2019: CyCADA + shift loss on both generators. The term is a *squared*
    # error. Measured at 64x64, 3500 steps (the real-proxy eval set was the only held-out real
    # data, so the weight is picked on it): plain transpose-conv generators at weight 10 halve
    # CycleGAN's shift error but lose contrast (output/input contrast 0.33-0.37, mIoU 25-27)
    # and drive worse than CycleGAN's in closed loop; 50 and 100 collapse to near-constant
    # grey (contrast 0.11), which scores a "perfect" shift error and flicker. The
    # anti-aliased generator (BlurPool downsampling, resize-conv upsampling; shared with the
    # cycada preset) at weight 3 keeps the shift error at 0.35x CycleGAN's with more contrast
    # (0.48) and mIoU (29.2); an iteration costs 1.56x CycleGAN's (CPU bf16, median of 10).
    # The cheaper blur_first variant drove the shipped policy to 5 % (1 % with bilinear
    # upsampling) vs 20 % for this one on 100 training-split layouts, so it is not the preset.
    # Shifting G alone (shift_both=False, ~10 % cheaper) drove worse too: three seeds (trained
    # on an H200) reached 1-23 % on the training layouts vs 8-39 % with both shifted.
    'vr_goggles': dict(lambda_sem_sim=0.1, lambda_sem_real=1.0, pseudo_segmenter='segmenter_dr',
                       pseudo_refresh_every=0, pseudo_start_step=0, lambda_sem_cycle=1.0,
                       sem_class_weights='chair=5,object=2', antialias=True,
                       upsample='resize', lambda_shift=3.0),
}


@dataclass
class TranslatorConfig:
    """Every switch and weight of a translator run (CLI flags override the preset)."""

    # --- data
    sim: str = ''                 #: sim source: folder, collector export, or bag[:topic]
    real: str = ''                #: real source: same kinds
    sim_topic: str = ''           #: image topic if ``sim`` is a bag without ``:topic``
    real_topic: str = ''          #: image topic if ``real`` is a bag without ``:topic``
    paired: str = ''              #: pixel-aligned (randomised look, sim look) frames for
    #:                                lambda_paired: a collect --domain randomized --targets sim
    #:                                export (images/ + targets/)
    synthetic: int = 0            #: >0: use that many procedural frames per domain (tests)
    size: int = 64                #: square training/model input size
    max_frames: int = 0           #: 0 = all frames of each source
    flip: bool = True             #: random horizontal flip (uint8 augmentation)
    crop_pad: int = 4             #: random crop from a reflect-padded frame (0 = off)
    # --- networks
    ngf: int = 16
    n_blocks: int = 6
    n_down: int = 2               #: K stride-2 layers; shifts are drawn from [0, 2^K)
    antialias: bool = False       #: BlurPool downsampling in both generators
    blur_first: bool = False      #: BlurPool before the down conv (conv at the low resolution)
    upsample: str = 'transpose'   #: 'transpose' | 'resize'
    input_skip: bool = False      #: full-resolution input into the last conv (U-Net skip);
    #:                                measured worse in closed loop, in no preset
    ndf: int = 32
    d_layers: int = 3
    segmenter: str = ''           #: frozen sim segmenter (path or shipped name)
    # --- objective
    preset: str = 'cyclegan'
    lambda_adv: float = 1.0
    adv_real_label: float = 0.9   #: one-sided label smoothing (D's target for real patches)
    adv_fake_label: float = 0.0
    adv_gen_target: float = 1.0   #: what G wants D to say about its fakes
    lambda_cycle: float = 10.0
    lambda_identity: float = 5.0  #: absolute weight (CycleGAN's 0.5 * lambda_cycle)
    lambda_selfreg: float = 0.0   #: SimGAN self-regularisation after warm-up
    selfreg_space: str = 'pixel'  #: 'pixel' | 'pooled' (fixed 4x4 average-pool features)
    lambda_sem_sim: float = 0.0   #: CE(S(F(x_sim)), true sim labels)
    lambda_sem_real: float = 0.0  #: CE(S(G(x_real)), pseudo-labels)
    pseudo_threshold: float = 0.9  #: softmax confidence below which a pseudo-label is ignored
    pseudo_refresh_every: int = 0  #: 0: pseudo-labels from S(x_real); N: from S(G'(x_real)),
    #:                                G' = copy of G refreshed every N steps (self-training)
    pseudo_start_step: int = 0    #: the real-side semantic term is active from this step on
    pseudo_segmenter: str = ''    #: labeller of the real-side pseudo-labels ('' = segmenter),
    #:                                e.g. one trained on sim + domain-randomised frames
    pseudo_ignore: str = ''       #: classes never taken as real-side pseudo-labels, 'chair'
    #:                                (a labeller whose labels of a class are mostly wrong)
    sem_class_weights: str = ''   #: per-class weights of every semantic CE, 'chair=4,object=2'
    #:                                ('' = uniform; unnamed classes weigh 1)
    lambda_sem_cycle: float = 0.0  #: CE(S(G(F(x_sim))), true sim labels)
    lambda_feat_adv: float = 0.0  #: CyCADA feature-level GAN on S.features(G(x_real))
    lambda_task: float = 0.0      #: task consistency in the frozen policy's feature space
    task_policy: str = ''         #: that policy (shipped name or path), e.g. 'policy_sim'
    lambda_class_color: float = 0.0  #: per-class mean colour of G(x_real) on its pseudo-labels
    #:                                   vs the sim frames' (needs lambda_sem_real > 0)
    lambda_shift: float = 0.0
    shift_both: bool = True       #: shift loss on F (sim->real) as well as G
    lambda_paired: float = 0.0    #: RCAN's |G(x_dr) - x_sim|_1 on --paired frames
    # --- optimisation
    steps: int = 4000             #: generator steps
    decay_steps: int = -1         #: linear LR decay over the last N steps (-1: steps // 2)
    batch_size: int = 1           #: 4 or 8 drove as 1 did (results/translator_batch_size.json)
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    warmup_steps: int = 0         #: SimGAN: G trained on self-regularisation only
    warmup_selfreg: float = 1.0   #: weight of that warm-up self-regularisation
    g_steps_per_d: int = 1        #: k generator steps per discriminator step
    ema_decay: float = 0.0        #: >0: export an EMA of G's weights, e.g. 0.999 (0 = last G);
    #:                                drove as the raw G did (4 runs), in no preset
    ema_start_step: int = 0       #: the EMA starts as a copy of G at this step
    pool_size: int = 50
    pool_history_fraction: float = 0.5
    # --- run
    out: str = 'runs/translator'
    export: str = ''              #: write the real->sim generator here (safetensors + card)
    export_sim2real: str = ''     #: also write F (sim->real) here, for fake-real frames
    resume: str = ''              #: '' | 'auto' (out/last.pt if present) | checkpoint path
    seed: int = 0
    threads: int = 1              #: torch intra-op threads per process
    device: str = 'cpu'
    precision: str = 'fp32'       #: 'fp32' | 'bf16' (autocast) | 'fp16' (CUDA + GradScaler)
    #:                                bf16 drove worse (docs/results/translator_pseudo_start.json)
    log_every: int = 25           #: scalars every N steps (0: only the last step)
    image_every: int = 500        #: image grids every N steps (0: never)
    ckpt_every: int = 250         #: checkpoint every N steps and at the end (0: never)
    snapshot_every: int = 0       #: >0: also export G to out/snapshots/step_NNNNNN every N steps
    #:                                (for picking a checkpoint by a downstream metric; with
    #:                                ema_decay the EMA, and the raw G as step_NNNNNN_raw)
    bench_iters: int = 0          #: >0: time that many steps, print ms/step, save nothing
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> TranslatorConfig:
        """Validate; fill derived defaults."""
        if self.preset not in PRESETS:
            raise ValueError(f'preset: expected one of {sorted(PRESETS)}, got {self.preset!r}')
        if self.precision not in ('fp32', 'bf16', 'fp16'):
            raise ValueError(f'precision: fp32, bf16 or fp16, got {self.precision!r}')
        if self.precision == 'fp16' and not self.device.startswith('cuda'):
            raise ValueError('precision fp16 needs a CUDA device (use bf16 on CPU)')
        if self.size % (2 ** self.n_down):
            raise ValueError(f'size {self.size} must be a multiple of 2^n_down')
        if self.g_steps_per_d < 1:
            raise ValueError('g_steps_per_d must be >= 1')
        for name in ('log_every', 'image_every', 'ckpt_every', 'snapshot_every'):
            if getattr(self, name) < 0:
                raise ValueError(f'{name} must be >= 0, got {getattr(self, name)}')
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f'ema_decay must be in [0, 1), got {self.ema_decay}')
        class_weights(self.sem_class_weights)  # validates the names and values
        class_ids(self.pseudo_ignore, 'pseudo_ignore')
        if self.lambda_class_color > 0 and self.lambda_sem_real <= 0:
            raise ValueError('lambda_class_color > 0 uses the real-side pseudo-labels: it needs '
                             'lambda_sem_real > 0')
        if self.lambda_task > 0 and not self.task_policy:
            raise ValueError('lambda_task > 0 needs --task-policy (e.g. policy_sim)')
        if self.lambda_paired > 0 and not (self.paired or self.synthetic):
            raise ValueError('lambda_paired > 0 needs --paired (collect --domain randomized '
                             '--targets sim)')
        c = copy.deepcopy(self)
        if c.decay_steps < 0:
            c.decay_steps = c.steps // 2
        return c

    def needs_segmenter(self) -> bool:
        """The semantic / feature terms need the frozen segmenter."""
        return (self.lambda_sem_sim > 0 or self.lambda_sem_real > 0
                or self.lambda_sem_cycle > 0 or self.lambda_feat_adv > 0)

    def generator_kwargs(self) -> dict[str, Any]:
        """``ResnetGenerator`` keyword sizes (recorded in the model card)."""
        return dict(ngf=self.ngf, n_blocks=self.n_blocks, n_down=self.n_down,
                    antialias=self.antialias, blur_first=self.blur_first,
                    upsample=self.upsample, input_skip=self.input_skip)


def config_from_args(argv: list[str] | None = None) -> TranslatorConfig:
    """Preset defaults, then explicitly given CLI flags on top."""
    parser = build_parser()
    args = parser.parse_args(argv)
    given = {k: v for k, v in vars(args).items() if v is not None}
    preset = given.get('preset', 'cyclegan')
    if preset not in PRESETS:
        parser.error(f'--preset: expected one of {sorted(PRESETS)}')
    values = {**PRESETS[preset], **given}
    return TranslatorConfig(**values).resolved()


def build_parser() -> argparse.ArgumentParser:
    """One flag per config field; every default is None so the preset shows through."""
    p = argparse.ArgumentParser(prog='python -m sim_training.train_translator',
                                description=__doc__.split('\n\n')[0])
    for f in fields(TranslatorConfig):
        if f.name == 'extra':
            continue
        flag = '--' + f.name.replace('_', '-')
        default = f.default
        if f.name == 'preset':
            p.add_argument(flag, choices=sorted(PRESETS), default=None,
                           help='objective preset (default cyclegan)')
        elif isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                           help=f'(default {default})')
        else:
            p.add_argument(flag, type=type(default), default=None,
                           help=f'(default {default!r})')
    return p


# ---------------------------------------------------------------------------------------------
def class_ids(spec: str, what: str) -> list[int]:
    """``'chair,object'`` -> their ids in :mod:`vr_goggles.image.semantics` (``''`` -> [])."""
    ids = []
    for name in (n.strip() for n in spec.split(',') if n.strip()):
        if name not in CLASS_NAMES:
            raise ValueError(f'{what}: expected class names from {list(CLASS_NAMES)}, '
                             f'got {name!r}')
        ids.append(CLASS_NAMES.index(name))
    return ids


def class_weights(spec: str) -> list[float] | None:
    """``'chair=4,object=2'`` -> one weight per class (see :func:`semantics.class_weights`)."""
    return semantics.class_weights(spec, flag='sem_class_weights')


def unwrap(m: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper."""
    return m.module if hasattr(m, 'module') else m


def sim_class_colors(sim: FrameSet) -> np.ndarray:
    """Mean colour ``(K, 3)`` of each class over the labelled sim frames, in the network range.

    NaN for a class with no pixel. The target of :func:`sim_training.losses.class_color_loss`.
    """
    from vr_goggles.image.preprocess import normalize

    sums = np.zeros((NUM_CLASSES, 3))
    counts = np.zeros(NUM_CLASSES)
    for k in range(0, len(sim), 256):
        x = normalize(sim.images[k:k + 256]).transpose(0, 2, 3, 1).reshape(-1, 3)  # (n*H*W, 3)
        y = sim.labels[k:k + 256].reshape(-1)
        counts += np.bincount(y, minlength=NUM_CLASSES)[:NUM_CLASSES]
        sums += np.stack([np.bincount(y, weights=x[:, ch], minlength=NUM_CLASSES)[:NUM_CLASSES]
                          for ch in range(3)], 1)
    with np.errstate(invalid='ignore', divide='ignore'):
        return (sums / counts[:, None]).astype(np.float32)


def load_segmenter(name_or_path: str) -> nn.Module:
    """The frozen sim-trained segmenter (eval mode, no grads)."""
    from vr_goggles.weights import build_module

    seg, _card = build_module(name_or_path)
    return freeze(seg)


def freeze(m: nn.Module) -> nn.Module:
    """Eval mode and ``requires_grad=False`` (BatchNorm statistics stay fixed too)."""
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


class PolicyFeatures(nn.Module):
    """A frozen policy's encoder on single frames: ``(N, 3, H, W)`` -> ``(N, features_dim)``.

    A frame-stacking actor sees the frame repeated over its stack (a robot standing still), and
    a turn-memory actor a plane of -1 (no turns yet) after it.
    """

    def __init__(self, actor: nn.Module, frame_stack: int, turn_planes: int = 0):
        super().__init__()
        self.encoder = freeze(actor.features)
        self.frame_stack = int(frame_stack)
        self.turn_planes = int(turn_planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features of ``x`` stacked ``frame_stack`` times on the channels."""
        x = x.repeat(1, self.frame_stack, 1, 1) if self.frame_stack > 1 else x
        if self.turn_planes:
            x = torch.cat([x, x.new_full((x.shape[0], self.turn_planes, *x.shape[2:]), -1.0)],
                          dim=1)
        return self.encoder(x)


def load_task_features(name_or_path: str) -> PolicyFeatures:
    """The frozen encoder of a shipped or exported policy.

    Loaded through :class:`vr_goggles.policy.Policy`, whose checks (a ``NavActor``, frame stack
    matching its input channels, the project's normalisation) apply here too.
    """
    from vr_goggles.policy import Policy
    from vr_goggles.policy.turn_memory import n_planes

    policy = Policy.load(name_or_path)
    return PolicyFeatures(policy.module, policy.frame_stack,
                          n_planes(policy.turn_memory, policy.turn_window))


def _set_grad(modules: list[nn.Module], flag: bool) -> None:
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(flag)


def _batched(fn: nn.Module, inputs: dict[str, torch.Tensor | None]
             ) -> dict[str, torch.Tensor]:
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


def _numpy_state() -> tuple:
    name, key, pos, has_gauss, cached = np.random.get_state()
    return (name, torch.from_numpy(key.astype(np.int64)), int(pos), int(has_gauss),
            float(cached))


def _set_numpy_state(s: tuple) -> None:
    name, key, pos, has_gauss, cached = s
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, cached))


class TranslatorTrainer:
    """Models, optimisers and one ``train_step``; state round-trips through ``state_dict``."""

    def __init__(self, cfg: TranslatorConfig, *, sim: FrameSet, real: FrameSet,
                 segmenter: nn.Module | None = None, rank: int = 0, world_size: int = 1,
                 paired: FrameSet | None = None):
        self.cfg = cfg = cfg.resolved()
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(cfg.device)
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        gk = cfg.generator_kwargs()
        self.G = ResnetGenerator(**gk).to(self.device)  # real -> sim (shipped)
        self.F = ResnetGenerator(**gk).to(self.device)  # sim -> real
        dk = dict(ndf=cfg.ndf, n_layers=cfg.d_layers)
        self.D_sim = PatchDiscriminator(**dk).to(self.device)
        self.D_real = PatchDiscriminator(**dk).to(self.device)
        self.seg = self.labeller = self.sem_weight = None
        self.pseudo_ignore_ids = class_ids(cfg.pseudo_ignore, 'pseudo_ignore')
        if cfg.needs_segmenter():
            if segmenter is None:
                if not cfg.segmenter:
                    raise ValueError('the semantic/feature losses need --segmenter')
                segmenter = load_segmenter(cfg.segmenter)
            self.seg = freeze(segmenter).to(self.device)
            # the real-side pseudo-labeller: the frozen segmenter unless another one is named
            # (loaded only when the real-side term is on)
            self.labeller = self.seg
            if cfg.pseudo_segmenter and cfg.lambda_sem_real > 0:
                self.labeller = freeze(load_segmenter(cfg.pseudo_segmenter)).to(self.device)
            w = class_weights(cfg.sem_class_weights)
            self.sem_weight = None if w is None else torch.tensor(w, device=self.device)
            for name in ('lambda_sem_sim', 'lambda_sem_cycle', 'lambda_class_color'):
                if getattr(cfg, name) > 0 and sim.labels is None:
                    raise ValueError(f'{name} > 0 needs sim labels; {sim.name} has none')
        self.class_colors = None
        if cfg.lambda_class_color > 0:  # needs lambda_sem_real, so the segmenter branch ran
            self.class_colors = torch.from_numpy(sim_class_colors(sim)).to(self.device)
        self.task = None
        if cfg.lambda_task > 0:
            self.task = load_task_features(cfg.task_policy).to(self.device)
        self.D_feat = None
        if cfg.lambda_feat_adv > 0:
            # features are already normalised by the segmenter's BatchNorm: no InstanceNorm
            self.D_feat = PatchDiscriminator(in_channels=self.seg.feature_channels,
                                             ndf=cfg.ndf, n_layers=1, norm='none'
                                             ).to(self.device)
        self.G_pseudo = None
        if cfg.lambda_sem_real > 0 and cfg.pseudo_refresh_every > 0:
            self.G_pseudo = freeze(copy.deepcopy(self.G))
        self.G_ema = None
        if cfg.ema_decay > 0:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.G_ema = AveragedModel(self.G, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay),
                                       use_buffers=True)
        self.discriminators = [d for d in (self.D_sim, self.D_real, self.D_feat) if d is not None]
        if world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == 'cuda' else None
            self.G, self.F = DDP(self.G, device_ids=ids), DDP(self.F, device_ids=ids)
            self.discriminators = [DDP(d, device_ids=ids) for d in self.discriminators]
            self.D_sim, self.D_real = self.discriminators[:2]
            if self.D_feat is not None:
                self.D_feat = self.discriminators[2]
        betas = (cfg.beta1, cfg.beta2)
        self.opt_G = torch.optim.Adam(
            list(self.G.parameters()) + list(self.F.parameters()), lr=cfg.lr, betas=betas)
        self.opt_D = torch.optim.Adam(
            [p for d in self.discriminators for p in d.parameters()], lr=cfg.lr, betas=betas)
        self.sched_G = torch.optim.lr_scheduler.LambdaLR(self.opt_G, self.lr_factor)
        self.sched_D = torch.optim.lr_scheduler.LambdaLR(self.opt_D, self.lr_factor)
        self.scaler = torch.amp.GradScaler('cuda', enabled=cfg.precision == 'fp16')
        base = cfg.seed * 1000 + rank * 10
        self.pool_sim = ImagePool(cfg.pool_size, history_fraction=cfg.pool_history_fraction,
                                  seed=base + 1)
        self.pool_real = ImagePool(cfg.pool_size, history_fraction=cfg.pool_history_fraction,
                                   seed=base + 2)
        self.sim_sampler = FrameSampler(sim, seed=base + 3, flip=cfg.flip, crop_pad=cfg.crop_pad)
        self.real_sampler = FrameSampler(real, seed=base + 4, flip=cfg.flip,
                                         crop_pad=cfg.crop_pad)
        self.shift_rng = torch.Generator().manual_seed(base + 5)
        self.pair_sampler = None
        if cfg.lambda_paired > 0:
            if paired is None or paired.targets is None:
                raise ValueError('lambda_paired > 0 needs paired frames with targets')
            self.pair_sampler = FrameSampler(paired, seed=base + 6, flip=cfg.flip,
                                             crop_pad=cfg.crop_pad)
        self.step = 0
        self.wall_s = 0.0  #: training wall time summed over resumed segments

    # -----------------------------------------------------------------------------------------
    def lr_factor(self, step: int) -> float:
        """Constant LR, then linear decay to 0 over the last ``decay_steps`` steps."""
        start = self.cfg.steps - self.cfg.decay_steps
        if step < start or self.cfg.decay_steps <= 0:
            return 1.0
        return max(0.0, 1.0 - (step - start) / self.cfg.decay_steps)

    def autocast(self):
        """Mixed-precision context of the configured precision (no-op for fp32)."""
        if self.cfg.precision == 'fp32':
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.cfg.precision == 'bf16' else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    @property
    def max_shift(self) -> int:
        """``2 ** K`` for the generators' K stride-2 layers."""
        return 2 ** self.cfg.n_down

    def next_batch(self):
        """Sim images + labels and real images for one step, on the device."""
        x_s, y_s = self.sim_sampler.sample(self.cfg.batch_size)
        x_r, _ = self.real_sampler.sample(self.cfg.batch_size)
        d = self.device
        return x_s.to(d), (y_s.to(d) if y_s is not None else None), x_r.to(d)

    def next_pair(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Randomised-look frames and their sim-look targets for the paired term (or None)."""
        if self.pair_sampler is None:
            return None
        x_p, t_p = self.pair_sampler.sample_pairs(self.cfg.batch_size)
        return x_p.to(self.device), t_p.to(self.device)

    def _pseudo(self, x_r: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            src = x_r if self.G_pseudo is None else self.G_pseudo(x_r)
            labels = L.pseudo_labels(self.labeller(src), threshold=self.cfg.pseudo_threshold)
            for k in self.pseudo_ignore_ids:
                labels[labels == k] = L.IGNORE_INDEX
            return labels

    def generator_losses(self, x_s, y_s, x_r, pair=None
                         ) -> tuple[torch.Tensor, dict, torch.Tensor, torch.Tensor]:
        """Total generator loss, its logged terms, and the fakes (G(x_r), F(x_s)).

        ``pair``: ``(x_dr, x_sim)`` aligned frames for the paired term (``next_pair``).

        Every generator and segmenter input that does not depend on another output goes
        through its network in one batched call: the networks normalise per sample
        (InstanceNorm; the frozen segmenter's BatchNorm uses running statistics), so this is
        the same objective as separate calls, with fewer, larger kernels.
        """
        c = self.cfg
        G, F_ = self.G, self.F
        terms: dict[str, torch.Tensor] = {}
        total = x_r.new_zeros(())
        if self.step < c.warmup_steps:
            fake_s, fake_r = G(x_r), F_(x_s)  # (N, 3, H, W) real -> sim, sim -> real
            sr = (L.self_regularization(fake_s, x_r, space=c.selfreg_space)
                  + L.self_regularization(fake_r, x_s, space=c.selfreg_space))
            terms['warmup_selfreg'] = sr
            return c.warmup_selfreg * sr, terms, fake_s, fake_r
        i = j = 0
        if c.lambda_shift:
            ij = torch.randint(self.max_shift, (2,), generator=self.shift_rng)
            i, j = int(ij[0]), int(ij[1])
        shifted = (i, j) != (0, 0)
        if c.lambda_paired and pair is None:
            raise ValueError('lambda_paired > 0: generator_losses needs pair=(x_dr, x_sim)')
        # (N, 3, H, W) each: G on [real, sim (identity), T_ij(real), x_dr (paired)],
        # F on [sim, real, T_ij(sim)]
        g_out = _batched(G, {'fake': x_r, 'idt': x_s if c.lambda_identity else None,
                             'shift': translate(x_r, i, j) if shifted else None,
                             'pair': pair[0] if c.lambda_paired else None})
        f_out = _batched(F_, {'fake': x_s, 'idt': x_r if c.lambda_identity else None,
                              'shift': (translate(x_s, i, j) if shifted and c.shift_both
                                        else None)})
        fake_s, fake_r = g_out['fake'], f_out['fake']
        d_sim, d_real = unwrap(self.D_sim), unwrap(self.D_real)  # no DDP sync in the G step
        if c.lambda_adv:
            adv = (L.lsgan_g_loss(d_sim(fake_s), target=c.adv_gen_target)
                   + L.lsgan_g_loss(d_real(fake_r), target=c.adv_gen_target))
            terms['adv'] = adv
            total = total + c.lambda_adv * adv
        # sim -> real -> sim
        rec_s = G(fake_r) if (c.lambda_cycle or c.lambda_sem_cycle or c.lambda_task) else None
        if c.lambda_cycle:
            cyc = L.cycle_loss(F_(fake_s), x_r) + L.cycle_loss(rec_s, x_s)
            terms['cycle'] = cyc
            total = total + c.lambda_cycle * cyc
        if c.lambda_identity:
            idt = L.identity_loss(g_out['idt'], x_s) + L.identity_loss(f_out['idt'], x_r)
            terms['identity'] = idt
            total = total + c.lambda_identity * idt
        if c.lambda_selfreg:
            sr = (L.self_regularization(fake_s, x_r, space=c.selfreg_space)
                  + L.self_regularization(fake_r, x_s, space=c.selfreg_space))
            terms['selfreg'] = sr
            total = total + c.lambda_selfreg * sr
        sem_real = bool(c.lambda_sem_real) and self.step >= c.pseudo_start_step
        logits = _batched(self.seg, {'sim': fake_r if c.lambda_sem_sim else None,
                                     'real': fake_s if sem_real else None,
                                     'cycle': rec_s if c.lambda_sem_cycle else None})
        if c.lambda_sem_sim:
            sem = L.semantic_loss(logits['sim'], y_s, weight=self.sem_weight)
            terms['sem_sim'] = sem
            total = total + c.lambda_sem_sim * sem
        if sem_real:
            pseudo = self._pseudo(x_r)
            sem = L.semantic_loss(logits['real'], pseudo, weight=self.sem_weight)
            terms['sem_real'] = sem
            terms['pseudo_valid'] = (pseudo != L.IGNORE_INDEX).float().mean()
            total = total + c.lambda_sem_real * sem
            if self.class_colors is not None:
                col = L.class_color_loss(fake_s.float(), pseudo, self.class_colors)
                terms['class_color'] = col
                total = total + c.lambda_class_color * col
        if c.lambda_sem_cycle:
            sem = L.semantic_loss(logits['cycle'], y_s, weight=self.sem_weight)
            terms['sem_cycle'] = sem
            total = total + c.lambda_sem_cycle * sem
        if c.lambda_feat_adv:
            feat = L.lsgan_g_loss(unwrap(self.D_feat)(self.seg.features(fake_s)),
                                  target=c.adv_gen_target)
            terms['feat_adv'] = feat
            total = total + c.lambda_feat_adv * feat
        if c.lambda_task:
            phi = _batched(self.task, {'ref': x_s, 'cycle': rec_s,
                                       'idt': g_out.get('idt')})
            task = L.task_consistency(phi['cycle'], phi['ref'])
            if 'idt' in phi:
                task = task + L.task_consistency(phi['idt'], phi['ref'])
            terms['task'] = task
            total = total + c.lambda_task * task
        if c.lambda_shift:
            if shifted:
                sh = L.shift_residual(fake_s, g_out['shift'], i, j)
                if c.shift_both:
                    sh = sh + L.shift_residual(fake_r, f_out['shift'], i, j)
            else:  # T_00 is the identity: exactly 0, still part of the graph
                sh = fake_s.sum() * 0.0
            terms['shift'] = sh
            total = total + c.lambda_shift * sh
        if c.lambda_paired:
            pl = L.paired_loss(g_out['pair'], pair[1])
            terms['paired'] = pl
            total = total + c.lambda_paired * pl
        return total, terms, fake_s, fake_r

    def discriminator_losses(self, x_s, x_r, fake_s, fake_r) -> tuple[torch.Tensor, dict]:
        """LSGAN D losses on real frames vs pooled fakes (one batched call per D)."""
        c = self.cfg
        kw = dict(real_label=c.adv_real_label, fake_label=c.adv_fake_label)
        old_s = self.pool_sim.query(fake_s.detach().float())
        old_r = self.pool_real.query(fake_r.detach().float())
        ds = _batched(self.D_sim, {'real': x_s, 'fake': old_s.to(x_s.dtype)})
        dr = _batched(self.D_real, {'real': x_r, 'fake': old_r.to(x_r.dtype)})
        terms = {'D_sim': L.lsgan_d_loss(ds['real'], ds['fake'], **kw),
                 'D_real': L.lsgan_d_loss(dr['real'], dr['fake'], **kw)}
        if self.D_feat is not None:
            with torch.no_grad():
                f_real, f_fake = self.seg.features(x_s), self.seg.features(fake_s.detach())
            terms['D_feat'] = L.lsgan_d_loss(self.D_feat(f_real), self.D_feat(f_fake), **kw)
        return sum(terms.values()), terms

    def train_step(self) -> dict[str, float]:
        """One generator step (+ a discriminator step every ``g_steps_per_d``)."""
        c = self.cfg
        start = max(c.warmup_steps, c.pseudo_start_step)
        if (self.G_pseudo is not None and self.step >= start
                and (self.step - start) % c.pseudo_refresh_every == 0):
            self.G_pseudo.load_state_dict(unwrap(self.G).state_dict())
        x_s, y_s, x_r = self.next_batch()
        pair = self.next_pair()
        self.G.train()
        self.F.train()
        _set_grad(self.discriminators, False)
        with self.autocast():
            g_total, terms, fake_s, fake_r = self.generator_losses(x_s, y_s, x_r, pair)
        self.opt_G.zero_grad(set_to_none=True)
        self.scaler.scale(g_total).backward()
        self.scaler.step(self.opt_G)
        out = {k: float(v.detach()) for k, v in terms.items()}
        out['G_total'] = float(g_total.detach())
        if self.step % c.g_steps_per_d == 0:
            _set_grad(self.discriminators, True)
            with self.autocast():
                d_total, dterms = self.discriminator_losses(x_s, x_r, fake_s, fake_r)
            self.opt_D.zero_grad(set_to_none=True)
            self.scaler.scale(d_total).backward()
            self.scaler.step(self.opt_D)
            out.update({k: float(v.detach()) for k, v in dterms.items()})
        self.scaler.update()
        self.sched_G.step()
        self.sched_D.step()
        self.step += 1
        if self.G_ema is not None and self.step > c.ema_start_step:
            self.G_ema.update_parameters(unwrap(self.G))  # the first update copies G
        out['lr'] = self.opt_G.param_groups[0]['lr']
        self._last = (x_s, x_r, fake_s.detach().float(), fake_r.detach().float())
        return out

    @torch.no_grad()
    def image_grid(self) -> torch.Tensor:
        """``(3, 2H, 3W)`` in [0, 1]: real | G(real) | F(G(real)) over sim | F(sim) | G(F(sim))."""
        x_s, x_r, fake_s, fake_r = self._last
        G, F_ = unwrap(self.G), unwrap(self.F)
        with self.autocast():
            rec_r, rec_s = F_(fake_s[:1]).float(), G(fake_r[:1]).float()
        top = torch.cat([x_r[0], fake_s[0], rec_r[0]], dim=2)
        bottom = torch.cat([x_s[0], fake_r[0], rec_s[0]], dim=2)
        return ((torch.cat([top, bottom], dim=1).float().clamp(-1, 1) + 1) / 2).cpu()

    # -----------------------------------------------------------------------------------------
    def shared_state(self) -> dict:
        """Rank-independent state: models, optimisers, schedulers, scaler, step, config."""
        models = {'G': unwrap(self.G).state_dict(), 'F': unwrap(self.F).state_dict(),
                  'D_sim': unwrap(self.D_sim).state_dict(),
                  'D_real': unwrap(self.D_real).state_dict()}
        if self.D_feat is not None:
            models['D_feat'] = unwrap(self.D_feat).state_dict()
        if self.G_pseudo is not None:
            models['G_pseudo'] = self.G_pseudo.state_dict()
        if self.G_ema is not None:
            models['G_ema'] = self.G_ema.state_dict()
        return {'step': self.step, 'wall_s': self.wall_s, 'config': asdict(self.cfg),
                'models': models,
                'opt_G': self.opt_G.state_dict(), 'opt_D': self.opt_D.state_dict(),
                'sched_G': self.sched_G.state_dict(), 'sched_D': self.sched_D.state_dict(),
                'scaler': self.scaler.state_dict()}

    def rank_state(self) -> dict:
        """RNG streams of this process: pools, samplers, shift draws, python/numpy/torch."""
        s = {'pool_sim': self.pool_sim.state_dict(), 'pool_real': self.pool_real.state_dict(),
             'sampler_sim': self.sim_sampler.state_dict(),
             'sampler_real': self.real_sampler.state_dict(),
             'shift_rng': self.shift_rng.get_state(), 'torch_rng': torch.get_rng_state(),
             'python_rng': random.getstate(), 'numpy_rng': _numpy_state(), 'step': self.step}
        if self.pair_sampler is not None:
            s['sampler_paired'] = self.pair_sampler.state_dict()
        if torch.cuda.is_available():
            s['cuda_rng'] = torch.cuda.get_rng_state_all()
        return s

    def load_shared_state(self, s: dict) -> None:
        """Restore :meth:`shared_state`."""
        m = s['models']
        unwrap(self.G).load_state_dict(m['G'])
        unwrap(self.F).load_state_dict(m['F'])
        unwrap(self.D_sim).load_state_dict(m['D_sim'])
        unwrap(self.D_real).load_state_dict(m['D_real'])
        if self.D_feat is not None:
            unwrap(self.D_feat).load_state_dict(m['D_feat'])
        if self.G_pseudo is not None:
            self.G_pseudo.load_state_dict(m['G_pseudo'])
        if self.G_ema is not None and 'G_ema' in m:  # else it starts at ema_start_step
            self.G_ema.load_state_dict(m['G_ema'])
        self.opt_G.load_state_dict(s['opt_G'])
        self.opt_D.load_state_dict(s['opt_D'])
        self.sched_G.load_state_dict(s['sched_G'])
        self.sched_D.load_state_dict(s['sched_D'])
        self.scaler.load_state_dict(s['scaler'])
        self.step = int(s['step'])
        self.wall_s = float(s.get('wall_s', 0.0))

    def load_rank_state(self, s: dict) -> None:
        """Restore :meth:`rank_state`."""
        self.pool_sim.load_state_dict(s['pool_sim'])
        self.pool_real.load_state_dict(s['pool_real'])
        self.sim_sampler.load_state_dict(s['sampler_sim'])
        self.real_sampler.load_state_dict(s['sampler_real'])
        if self.pair_sampler is not None and 'sampler_paired' in s:
            self.pair_sampler.load_state_dict(s['sampler_paired'])
        self.shift_rng.set_state(s['shift_rng'])
        torch.set_rng_state(s['torch_rng'])
        random.setstate(s['python_rng'])
        _set_numpy_state(s['numpy_rng'])
        if 'cuda_rng' in s and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(s['cuda_rng'])

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Atomic checkpoint; ranks > 0 write only their RNG state beside it."""
        from vr_goggles.weights import atomic_write_bytes

        path = Path(path)
        if self.rank == 0:
            state = {**self.shared_state(), 'rank_state': self.rank_state()}
            target = path
        else:
            state, target = {'rank_state': self.rank_state()}, _rank_path(path, self.rank)
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(target, buf.getvalue())

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore a :meth:`save_checkpoint` file exactly (``weights_only`` unpickling)."""
        path = Path(path)
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.load_shared_state(state)
        if self.rank == 0:
            self.load_rank_state(state['rank_state'])
        else:
            rs = torch.load(_rank_path(path, self.rank), map_location='cpu', weights_only=True)
            self.load_rank_state(rs['rank_state'])

    @property
    def ema_started(self) -> bool:
        """Whether the EMA of G holds at least one update (it starts after ema_start_step)."""
        return self.G_ema is not None and int(self.G_ema.n_averaged) > 0

    def shipped_generator(self) -> nn.Module:
        """The real->sim generator to export: the EMA of G once it has started, else G."""
        return self.G_ema.module if self.ema_started else unwrap(self.G)

    def export(self, path: str | os.PathLike, *, command: str = '',
               metrics: dict | None = None, extra: dict | None = None,
               raw: bool = False, sim2real: bool = False) -> Path:
        """Write the shipped real->sim generator (G itself if ``raw``, F if ``sim2real``)."""
        from vr_goggles.image.preprocess import Preprocessor
        from vr_goggles.weights import ModelCard, save

        c = self.cfg
        pre = Preprocessor(size=(c.size, c.size), keep_aspect=True)
        card = ModelCard(
            name=Path(path).name, architecture='ResnetGenerator', kwargs=c.generator_kwargs(),
            input_size=[c.size, c.size], task='real->sim image translation (VR-Goggles)',
            normalization=pre.card()['normalization'], training_command=command,
            metrics=dict(metrics or {}),
            extra={'preset': c.preset, 'steps': self.step, 'preprocess': pre.card(),
                   'config': asdict(c), **(extra or {})})
        if sim2real:  # fake-real frames for sim-side tools (sim_training.distill_policy)
            card.task = 'sim->real image translation (the cycle partner F; not goggles)'
            card.extra.update(ema=False, direction='sim->real')
            return save(path, unwrap(self.F).state_dict(), card)
        card.extra['ema'] = self.ema_started and not raw
        g = self.shipped_generator() if card.extra['ema'] else unwrap(self.G)
        return save(path, g.state_dict(), card)


def _rank_path(path: Path, rank: int) -> Path:
    return path.with_name(f'{path.stem}.rank{rank}{path.suffix}')


# ---------------------------------------------------------------------------------------------
def load_domains(cfg: TranslatorConfig) -> tuple[FrameSet, FrameSet]:
    """Sim and real frame sets from the config (or procedural ones when ``synthetic``)."""
    size = (cfg.size, cfg.size)
    if cfg.synthetic:
        return (synthetic_frames(cfg.synthetic, size, domain='sim', seed=cfg.seed),
                synthetic_frames(cfg.synthetic, size, domain='real', seed=cfg.seed + 1))
    if not cfg.sim or not cfg.real:
        raise ValueError('--sim and --real are required (or --synthetic N)')
    mf = cfg.max_frames or None
    sim = load_source(cfg.sim, size, topic=cfg.sim_topic or None, labels='train',
                      max_frames=mf)
    real = load_source(cfg.real, size, topic=cfg.real_topic or None, labels='none',
                       max_frames=mf)
    return sim, real


def load_paired(cfg: TranslatorConfig) -> FrameSet | None:
    """The paired term's aligned frames (procedural ones when ``synthetic``), or None."""
    if not cfg.lambda_paired:
        return None
    size = (cfg.size, cfg.size)
    if cfg.synthetic:
        return synthetic_pairs(cfg.synthetic, size, seed=cfg.seed + 2)
    return load_source(cfg.paired, size, targets=True, max_frames=cfg.max_frames or None)


def describe(cfg: TranslatorConfig, sim: FrameSet, real: FrameSet,
             paired: FrameSet | None = None) -> str:
    """The start-of-run banner: every weight and switch, so no term is hidden."""
    lines = [f'preset {cfg.preset}: sim={sim.name} ({len(sim)} frames, labels='
             f'{sim.labels is not None}), real={real.name} ({len(real)} frames)'
             + (f', paired={paired.name} ({len(paired)} pairs)' if paired is not None else '')]
    lines.append(json.dumps(asdict(cfg), sort_keys=True))
    return '\n'.join(lines)


def init_distributed(cfg: TranslatorConfig) -> tuple[int, int]:
    """``torchrun`` environment -> (rank, world size); gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = 'nccl' if cfg.device.startswith('cuda') else 'gloo'
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def bf16_warning(cfg: TranslatorConfig) -> str:
    """Why ``--precision bf16`` will be slow here ('' if it will not).

    bf16 autocast pays off only on CPUs with native bf16 kernels (AVX512-BF16 / AMX): on an
    AVX2-only AMD EPYC one vr_goggles step took ~5 s in bf16 against 0.49 s in fp32.
    """
    if cfg.precision != 'bf16' or not cfg.device.startswith('cpu'):
        return ''
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return ''
    cap = torch.backends.cpu.get_cpu_capability()
    return (f'--precision bf16 on a CPU without native bf16 kernels ({cap}): autocast emulates '
            'it and runs many times slower than fp32; use --precision fp32')


def train(cfg: TranslatorConfig, *, sim: FrameSet | None = None, real: FrameSet | None = None,
          segmenter: nn.Module | None = None, command: str = '',
          paired: FrameSet | None = None) -> TranslatorTrainer:
    """Run (or resume) a whole training job as configured; returns the trainer."""
    cfg = cfg.resolved()
    torch.set_num_threads(cfg.threads)
    rank, world = init_distributed(cfg)
    if cfg.device.startswith('cuda') and world > 1:
        cfg.device = f'cuda:{int(os.environ.get("LOCAL_RANK", rank))}'
    random.seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    warning = bf16_warning(cfg)
    if warning and rank == 0:
        print(f'warning: {warning}', file=sys.stderr, flush=True)
    if sim is None or real is None:
        sim, real = load_domains(cfg)
    if paired is None:
        paired = load_paired(cfg)
    trainer = TranslatorTrainer(cfg, sim=sim, real=real, segmenter=segmenter, rank=rank,
                                world_size=world, paired=paired)
    out = Path(cfg.out)
    if cfg.bench_iters:
        return _bench(trainer, cfg.bench_iters)
    ckpt = out / 'last.pt'
    resume = cfg.resume
    if resume == 'auto':
        resume = str(ckpt) if ckpt.exists() else ''
    if resume:
        trainer.load_checkpoint(resume)
    writer = None
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        print(describe(cfg, sim, real, paired), flush=True)
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / 'tb'), purge_step=trainer.step or None)
        writer.add_text('config', '```\n' + json.dumps(asdict(cfg), indent=1) + '\n```',
                        trainer.step)
        (out / 'config.json').write_text(json.dumps(asdict(cfg), indent=1) + '\n')
    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, initial=trainer.step, disable=rank != 0 or not cfg.progress,
               mininterval=5.0, dynamic_ncols=True)
    t0 = t_mark = time.perf_counter()
    start_step = trainer.step
    while trainer.step < cfg.steps:
        logs = trainer.train_step()
        bar.update(1)
        s = trainer.step
        if writer is not None and ((cfg.log_every and s % cfg.log_every == 0) or s == cfg.steps):
            for k, v in logs.items():
                writer.add_scalar(f'loss/{k}' if k != 'lr' else 'lr', v, s)
            elapsed = time.perf_counter() - t0
            writer.add_scalar('time/ms_per_step', 1000 * elapsed / (s - start_step), s)
            bar.set_postfix({k: f'{logs[k]:.3f}' for k in ('G_total', 'cycle', 'shift')
                             if k in logs}, refresh=False)
        if writer is not None and cfg.image_every and s % cfg.image_every == 0:
            writer.add_image('real|G(real)|cycle / sim|F(sim)|cycle', trainer.image_grid(), s)
        if cfg.ckpt_every and (s % cfg.ckpt_every == 0 or s == cfg.steps):
            now = time.perf_counter()
            trainer.wall_s += now - t_mark
            t_mark = now
            trainer.save_checkpoint(ckpt)
            if world > 1:
                dist.barrier()
        if rank == 0 and cfg.snapshot_every and s % cfg.snapshot_every == 0:
            trainer.export(out / 'snapshots' / f'step_{s:06d}', command=command)
            if trainer.ema_started:  # the raw G beside the EMA, to pick either by what it drives
                trainer.export(out / 'snapshots' / f'step_{s:06d}_raw', command=command,
                               raw=True)
    bar.close()
    wall = time.perf_counter() - t0
    trainer.wall_s += time.perf_counter() - t_mark
    if rank == 0:
        summary = {'train_wall_s': round(trainer.wall_s, 1),
                   'wall_s_this_run': round(wall, 1), 'steps_this_run': trainer.step - start_step,
                   'ms_per_step_this_run': round(1000 * wall / max(1, trainer.step - start_step),
                                                 2)}
        (out / 'train_summary.json').write_text(json.dumps(summary, indent=1) + '\n')
        print(json.dumps(summary), flush=True)
        if writer is not None:
            writer.close()
        if cfg.export:
            path = trainer.export(cfg.export, command=command, extra=summary)
            print(f'exported {path}', flush=True)
        if cfg.export_sim2real:
            path = trainer.export(cfg.export_sim2real, command=command, extra=summary,
                                  sim2real=True)
            print(f'exported {path}', flush=True)
    return trainer


def _bench(trainer: TranslatorTrainer, iters: int, warm: int = 3) -> TranslatorTrainer:
    for _ in range(warm):
        trainer.train_step()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - t)
    trainer.bench_ms = 1000 * float(np.median(times))
    if trainer.rank == 0:
        print(json.dumps({'preset': trainer.cfg.preset, 'median_ms_per_step':
                          round(trainer.bench_ms, 2), 'iters': iters}), flush=True)
    return trainer


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    cfg = config_from_args(argv)
    command = 'python -m sim_training.train_translator ' + ' '.join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    train(cfg, command=command)
    if dist.is_initialized():
        dist.barrier()  # leave together: gloo aborts a peer still connected at teardown
        dist.destroy_process_group()
    return 0


if __name__ == '__main__':
    sys.exit(main())
