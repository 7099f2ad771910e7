"""The translator training loop: models, one step, exact checkpoints, snapshots and export.

The SimGAN training tricks hold for every preset: a 50-image history pool of fakes for the
discriminators (half of each D batch drawn from it), LSGAN with one-sided label smoothing (real
target ``adv_real_label``), one D step per ``g_steps_per_d`` generator steps, and a warm-up of
self-regularisation only. The objective itself is :mod:`sim_training.translator.objective`.

A checkpoint holds every random stream (pools, samplers, shift draws, python / numpy / torch),
so a resumed run takes the steps an uninterrupted one takes, bit for bit; under ``torchrun``
(DDP, gloo on CPU) each rank writes its own streams beside the shared state.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict
import io
import json
import os
from pathlib import Path
import random
import sys
import time
from typing import Any

import numpy as np
import torch
from torch import nn
import torch.distributed as dist

from sim_training.data import FrameSampler, FrameSet, load_source, synthetic_frames
from sim_training.image_pool import ImagePool
from sim_training.run_control import (
    StopOnInterrupt,
    TrainingInterrupted,
    refuse_existing_run,
    small_domain_warning,
)
from sim_training.translator import objective
from sim_training.translator.config import TranslatorConfig, class_weights
from sim_training.translator.objective import Networks, unwrap
from vr_goggles.models.discriminator import PatchDiscriminator
from vr_goggles.models.generator import ResnetGenerator


def load_segmenter(name_or_path: str) -> nn.Module:
    """A frozen segmenter (eval mode, no grads) from a shipped name or weights path."""
    from vr_goggles.weights import build_module

    seg, _card = build_module(name_or_path)
    return freeze(seg)


def freeze(m: nn.Module) -> nn.Module:
    """Eval mode and ``requires_grad=False`` (BatchNorm statistics stay fixed too)."""
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def _set_grad(modules: list[nn.Module], flag: bool) -> None:
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(flag)


def _numpy_state() -> tuple:
    name, key, pos, has_gauss, cached = np.random.get_state()
    return (name, torch.from_numpy(key.astype(np.int64)), int(pos), int(has_gauss),
            float(cached))


def _set_numpy_state(s: tuple) -> None:
    name, key, pos, has_gauss, cached = s
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, cached))


def _rank_path(path: Path, rank: int) -> Path:
    return path.with_name(f'{path.stem}.rank{rank}{path.suffix}')


class TranslatorTrainer:
    """Models, optimisers and one ``train_step``; state round-trips through ``state_dict``."""

    def __init__(self, cfg: TranslatorConfig, *, sim: FrameSet, real: FrameSet,
                 segmenter: nn.Module | None = None, rank: int = 0, world_size: int = 1):
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
            for name in ('lambda_sem_sim', 'lambda_sem_cycle'):
                if getattr(cfg, name) > 0 and sim.labels is None:
                    raise ValueError(f'{name} > 0 needs sim labels; {sim.name} has none')
        self.D_feat = None
        if cfg.lambda_feat_adv > 0:
            # features are already normalised by the segmenter's BatchNorm: no InstanceNorm
            self.D_feat = PatchDiscriminator(in_channels=self.seg.feature_channels,
                                             ndf=cfg.ndf, n_layers=1, norm='none'
                                             ).to(self.device)
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
        self.step = 0
        self.wall_s = 0.0  #: training wall time summed over resumed segments
        self.mark = time.perf_counter()  #: when wall_s was last brought up to date

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

    def networks(self) -> Networks:
        """The modules the objective reads (the DDP wrappers where distributed)."""
        return Networks(G=self.G, F=self.F, D_sim=self.D_sim, D_real=self.D_real, seg=self.seg,
                        labeller=self.labeller, D_feat=self.D_feat)

    def next_batch(self):
        """Sim images + labels and real images for one step, on the device."""
        x_s, y_s = self.sim_sampler.sample(self.cfg.batch_size)
        x_r, _ = self.real_sampler.sample(self.cfg.batch_size)
        d = self.device
        return x_s.to(d), (y_s.to(d) if y_s is not None else None), x_r.to(d)

    def pseudo_labels(self, x_r: torch.Tensor) -> torch.Tensor:
        """The real-side pseudo-labels of ``x_r`` (see :func:`objective.pseudo_labels`)."""
        return objective.pseudo_labels(self.labeller, x_r, threshold=self.cfg.pseudo_threshold)

    def generator_losses(self, x_s, y_s, x_r
                         ) -> tuple[torch.Tensor, dict, torch.Tensor, torch.Tensor]:
        """Total generator loss, its logged terms and the fakes, at this step's weights."""
        return objective.generator_losses(self.cfg, self.networks(), self.step, x_s, y_s, x_r,
                                          shift_rng=self.shift_rng,
                                          class_weight=self.sem_weight)

    def discriminator_losses(self, x_s, x_r, fake_s, fake_r) -> tuple[torch.Tensor, dict]:
        """LSGAN D losses on real frames vs pooled fakes."""
        return objective.discriminator_losses(self.cfg, self.networks(), self.pool_sim,
                                              self.pool_real, x_s, x_r, fake_s, fake_r)

    def train_step(self) -> dict[str, float]:
        """One generator step (+ a discriminator step every ``g_steps_per_d``)."""
        c = self.cfg
        x_s, y_s, x_r = self.next_batch()
        self.G.train()
        self.F.train()
        _set_grad(self.discriminators, False)
        with self.autocast():
            g_total, terms, fake_s, fake_r = self.generator_losses(x_s, y_s, x_r)
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

    def export(self, path: str | os.PathLike, *, command: str = '',
               metrics: dict | None = None, extra: dict | None = None) -> Path:
        """Write the real->sim generator G as weights + model card; returns the path."""
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
        return save(path, unwrap(self.G).state_dict(), card)


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
                      max_frames=mf, strict=cfg.strict_images)
    real = load_source(cfg.real, size, topic=cfg.real_topic or None, labels='none',
                       max_frames=mf, strict=cfg.strict_images)
    return sim, real


def describe(cfg: TranslatorConfig, sim: FrameSet, real: FrameSet) -> str:
    """The start-of-run banner: every weight and switch, so no term is hidden."""
    return '\n'.join([f'preset {cfg.preset}: sim={sim.name} ({len(sim)} frames, labels='
                      f'{sim.labels is not None}), real={real.name} ({len(real)} frames)',
                      json.dumps(asdict(cfg), sort_keys=True)])


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
          segmenter: nn.Module | None = None, command: str = '') -> TranslatorTrainer:
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
    ckpt = Path(cfg.out) / 'last.pt'
    if not cfg.bench_iters and not cfg.resume and not cfg.overwrite and rank == 0:
        refuse_existing_run(cfg.out, ckpt.name, resume_flag='--resume')
    if sim is None or real is None:
        sim, real = load_domains(cfg)
    for domain, flag in ((sim, '--sim'), (real, '--real')):
        warning = small_domain_warning(domain.name, flag, len(domain))
        if warning and rank == 0 and not cfg.synthetic:
            print(f'warning: {warning}', file=sys.stderr, flush=True)
    trainer = TranslatorTrainer(cfg, sim=sim, real=real, segmenter=segmenter, rank=rank,
                                world_size=world)
    out = Path(cfg.out)
    if cfg.bench_iters:
        return _bench(trainer, cfg.bench_iters)
    resume = cfg.resume
    if resume == 'auto':
        resume = str(ckpt) if ckpt.exists() else ''
    if resume:
        trainer.load_checkpoint(resume)
    writer = None
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        print(describe(cfg, sim, real), flush=True)
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / 'tb'), purge_step=trainer.step or None)
        writer.add_text('config', '```\n' + json.dumps(asdict(cfg), indent=1) + '\n```',
                        trainer.step)
        (out / 'config.json').write_text(json.dumps(asdict(cfg), indent=1) + '\n')
    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, initial=trainer.step, disable=rank != 0 or not cfg.progress,
               mininterval=5.0, dynamic_ncols=True)
    t0 = time.perf_counter()
    start_step = trainer.step
    stop = StopOnInterrupt(enabled=world == 1, what='the translator')
    with stop:
        _loop(trainer, cfg, writer, bar, ckpt, command, stop, world, t0, start_step)
    bar.close()
    if stop.requested and trainer.step < cfg.steps:
        trainer.wall_s += time.perf_counter() - trainer.mark
        trainer.save_checkpoint(ckpt)
        if writer is not None:
            writer.close()
        raise TrainingInterrupted(f'interrupted at step {trainer.step} of {cfg.steps}: '
                                  f'checkpoint {ckpt} saved; rerun with --resume to continue')
    wall = time.perf_counter() - t0
    trainer.wall_s += time.perf_counter() - trainer.mark
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
    return trainer


def _loop(trainer: TranslatorTrainer, cfg: TranslatorConfig, writer: Any, bar: Any, ckpt: Path,
          command: str, stop: StopOnInterrupt, world: int, t0: float, start_step: int) -> None:
    """Steps until ``cfg.steps`` or a Ctrl-C (checked between whole steps)."""
    out, rank = Path(cfg.out), trainer.rank
    trainer.mark = t0
    while trainer.step < cfg.steps and not stop.requested:
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
            trainer.wall_s += now - trainer.mark
            trainer.mark = now
            trainer.save_checkpoint(ckpt)
            if world > 1:
                dist.barrier()
        if rank == 0 and cfg.snapshot_every and s % cfg.snapshot_every == 0:
            trainer.export(out / 'snapshots' / f'step_{s:06d}', command=command)


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
