"""Every setting of a translator run, and the three presets of the paper comparison.

Each field's ``#:`` comment is its ``--help`` (:func:`sim_training.config_cli.add_config_flags`).
What each preset and switch did in closed loop, and the experiments that were measured and
removed, are in docs/results/translator_history.md.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from vr_goggles.image import semantics

#: Objective presets; CLI flags override them. The shipped goggles_* cards name theirs.
PRESETS: dict[str, dict[str, Any]] = {
    # CycleGAN (Zhu et al. 2017): LSGAN, cycle 10, identity 0.5 * 10, with the SimGAN tricks.
    'cyclegan': dict(lambda_sem_sim=0.0, lambda_sem_real=0.0, lambda_shift=0.0),
    # CyCADA (Hoffman et al. 2018): + semantic consistency through frozen segmenters.
    'cycada': dict(lambda_sem_sim=0.1, lambda_sem_real=1.0, pseudo_segmenter='segmenter_dr',
                   pseudo_start_step=0, lambda_sem_cycle=1.0,
                   sem_class_weights='chair=5,object=2', antialias=True, upsample='resize',
                   lambda_shift=0.0),
    # VR-Goggles (Zhang et al. 2019): CyCADA + the shift loss on both generators.
    'vr_goggles': dict(lambda_sem_sim=0.1, lambda_sem_real=1.0, pseudo_segmenter='segmenter_dr',
                       pseudo_start_step=0, lambda_sem_cycle=1.0,
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
    synthetic: int = 0            #: >0: use that many procedural frames per domain (tests)
    size: int = 64                #: square training/model input size
    max_frames: int = 0           #: 0 = all frames of each source
    flip: bool = True             #: random horizontal flip (uint8 augmentation)
    crop_pad: int = 4             #: random crop from a reflect-padded frame (0 = off)
    # --- networks
    ngf: int = 16                 #: generator width (channels of its first conv)
    n_blocks: int = 6             #: generator residual blocks at the bottleneck
    n_down: int = 2               #: K stride-2 layers; shifts are drawn from [0, 2^K)
    antialias: bool = False       #: BlurPool downsampling in both generators
    upsample: str = 'transpose'   #: 'transpose' | 'resize' (nearest resize + conv)
    ndf: int = 32                 #: discriminator width
    d_layers: int = 3             #: PatchGAN discriminator stride-2 layers
    segmenter: str = ''           #: frozen sim segmenter S (path or shipped name)
    # --- objective
    preset: str = 'cyclegan'      #: objective preset: cyclegan | cycada | vr_goggles
    lambda_adv: float = 1.0       #: weight of the LSGAN term of both generators
    adv_real_label: float = 0.9   #: one-sided label smoothing (D's target for real patches)
    adv_fake_label: float = 0.0   #: D's target for fake patches
    adv_gen_target: float = 1.0   #: what G wants D to say about its fakes
    lambda_cycle: float = 10.0    #: weight of |F(G(x_real)) - x_real| + |G(F(x_sim)) - x_sim|
    lambda_identity: float = 5.0  #: absolute weight (CycleGAN's 0.5 * lambda_cycle)
    lambda_selfreg: float = 0.0   #: SimGAN self-regularisation after warm-up
    selfreg_space: str = 'pixel'  #: 'pixel' | 'pooled' (fixed 4x4 average-pool features)
    lambda_sem_sim: float = 0.0   #: CE(S(F(x_sim)), true sim labels)
    lambda_sem_real: float = 0.0  #: CE(S(G(x_real)), pseudo-labels)
    pseudo_threshold: float = 0.9  #: softmax confidence below which a pseudo-label is ignored
    pseudo_refresh_every: int = 0  #: only 0 (pseudo-labels of the raw real frame); kept so the
    #:                                shipped goggles_vr_goggles card command runs unchanged
    pseudo_start_step: int = 0    #: the real-side semantic term is active from this step on
    pseudo_segmenter: str = ''    #: labeller of the real-side pseudo-labels ('' = segmenter),
    #:                                e.g. one trained on sim + domain-randomised frames
    sem_class_weights: str = ''   #: per-class weights of every semantic CE, 'chair=4,object=2'
    #:                                ('' = uniform; unnamed classes weigh 1)
    lambda_sem_cycle: float = 0.0  #: CE(S(G(F(x_sim))), true sim labels)
    lambda_feat_adv: float = 0.0  #: CyCADA feature-level GAN on S.features(G(x_real))
    lambda_shift: float = 0.0     #: VR-Goggles shift loss of both generators (squared error)
    # --- optimisation
    steps: int = 4000             #: generator steps
    decay_steps: int = -1         #: linear LR decay over the last N steps (-1: steps // 2)
    batch_size: int = 1           #: frames per domain per step
    lr: float = 2e-4              #: Adam learning rate of generators and discriminators
    beta1: float = 0.5            #: Adam beta1
    beta2: float = 0.999          #: Adam beta2
    warmup_steps: int = 0         #: SimGAN: G trained on self-regularisation only
    warmup_selfreg: float = 1.0   #: weight of that warm-up self-regularisation
    g_steps_per_d: int = 1        #: k generator steps per discriminator step
    pool_size: int = 50           #: history pool of fakes shown to the discriminators
    pool_history_fraction: float = 0.5  #: share of each D batch drawn from that history
    # --- run
    out: str = 'runs/translator'  #: run folder (checkpoint, config, tensorboard, snapshots)
    export: str = ''              #: write the real->sim generator here (safetensors + card)
    resume: str = ''              #: '' | 'auto' (out/last.pt if present; also bare --resume)
    #:                                | checkpoint path
    overwrite: bool = False       #: start again at step 0 in an --out that holds a run
    strict_images: bool = False   #: refuse a source with an unreadable image (default: skip it)
    seed: int = 0                 #: seed of weights, data sampling, pools and shift draws
    threads: int = 1              #: torch intra-op threads per process
    device: str = 'cpu'           #: cpu | cuda[:N] (torchrun: one GPU per process)
    precision: str = 'fp32'       #: 'fp32' | 'bf16' (autocast) | 'fp16' (CUDA + GradScaler)
    log_every: int = 25           #: scalars every N steps (0: only the last step)
    image_every: int = 500        #: image grids every N steps (0: never)
    ckpt_every: int = 250         #: checkpoint every N steps and at the end (0: never)
    snapshot_every: int = 0       #: >0: also export G to out/snapshots/step_NNNNNN every N steps
    #:                                (for picking a checkpoint by a downstream metric)
    bench_iters: int = 0          #: >0: time that many steps, print ms/step, save nothing
    progress: bool = True         #: tqdm progress bar
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
        if self.pseudo_refresh_every != 0:
            raise ValueError('pseudo_refresh_every: only 0; pseudo-labels from a refreshed copy '
                             'of G were superseded and removed (docs/results/'
                             'translator_history.md, code at commit 083bc5e)')
        class_weights(self.sem_class_weights)  # validates the names and values
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
                    antialias=self.antialias, upsample=self.upsample)


def class_weights(spec: str) -> list[float] | None:
    """``'chair=4,object=2'`` -> one weight per class (see :func:`semantics.class_weights`)."""
    return semantics.class_weights(spec, flag='sem_class_weights')
