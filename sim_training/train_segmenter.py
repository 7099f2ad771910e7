"""Train the sim segmenter (CyCADA's task network f_S) on the simulator's true labels.

It is trained on sim frames only, with geometric augmentation only (flip, crop) and no colour
jitter, on purpose: it is the "source-only" model whose accuracy on real frames is the baseline
that translation must beat, and it supplies the frozen semantic-consistency supervision.

``--data`` takes several comma-separated sources. Trained on the sim *and* the simulator's
domain-randomised frames (both carry the simulator's labels; no real label is ever used), it
becomes the translators' pseudo-labeller (``train_translator --pseudo-segmenter``): the
sim-only model is confidently wrong on real frames, so its pseudo-labels cannot keep the chair.

``--fda-real SOURCE`` adds Fourier Domain Adaptation (:mod:`sim_training.fda`): every sampled
training frame gets the low-frequency amplitude spectrum of a random *unlabelled* frame of
SOURCE (the robot's camera), so the segmenter learns the camera's look without a camera label;
it gives the no-label semantic goggles (``segmenter_fda``; docs/results/no_label_fda.md).

``--dacs-real SOURCE`` adds DACS (:mod:`sim_training.dacs`): a mean teacher pseudo-labels
unlabelled frames of SOURCE, half of a labelled frame's classes are pasted onto each (ClassMix)
and the student also learns from those mixed frames: the better no-label recipe of the two by
its median over seeds (docs/results/no_label_dacs.md).

``python -m sim_training.train_segmenter --data data/sim --out vr_goggles/weights/segmenter``

With ``--out``, the run checkpoints atomically every ``--ckpt-every`` steps to ``OUT.ckpt.pt``
(model, optimizer, schedule, sampler and torch random state), so ``--resume auto`` continues an
interrupted run to the same weights as an uninterrupted one; the checkpoint is removed once the
weights are saved. Like every training command it behaves as a tool: a rerun on an ``--out`` that
holds a run (its checkpoint or its weights) is refused, naming ``--resume`` and ``--overwrite``;
Ctrl-C stops after the current step, writes the checkpoint and exits 130 with one line
(:mod:`sim_training.run_control`); a bare ``--resume`` means ``--resume auto``.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
import io
import json
from pathlib import Path
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from sim_training.config_cli import add_config_flags, setting_differences
from sim_training.dacs import DACS, DEFAULT_ALPHA, DEFAULT_TAU
from sim_training.data import FrameSampler, FrameSet, load_source, synthetic_frames
from sim_training.fda import FDASampler
from sim_training.run_control import (
    StopOnInterrupt,
    TrainingInterrupted,
    command_line,
    refuse_existing_run,
    run_as_tool,
    small_domain_warning,
)
from vr_goggles.goggles.quality import confusion_matrix, iou_per_class, mean_iou
from vr_goggles.image.semantics import CLASS_NAMES, NUM_CLASSES, class_weights
from vr_goggles.models.segmenter import SegmentationNet


@dataclass
class SegmenterConfig:
    """Every setting of a segmenter run."""

    data: str = ''            #: labelled collector export(s), comma-separated (sim, randomized)
    eval_real: str = ''       #: optional real export with eval_labels/ (reported, not trained)
    synthetic: int = 0        #: >0: procedural frames instead of ``data`` (tests)
    size: int = 64            #: square training/model input size
    width: int = 16           #: network width (channels of the first stage)
    steps: int = 3000         #: optimiser steps
    batch_size: int = 16      #: frames per step
    lr: float = 1e-3          #: AdamW peak learning rate (one-cycle schedule)
    weight_decay: float = 1e-4  #: AdamW weight decay
    val_fraction: float = 0.1  #: held-out tail of each source for the validation IoU
    crop_pad: int = 4         #: random crop from a reflect-padded frame (0 = off)
    class_weights: str = ''   #: per-class CE weights, 'chair=3' (uniform by default)
    fda_real: str = ''
    """unlabelled real-domain frames (folder / collector export / bag:topic) whose
    low-frequency amplitude is given to every training frame (FDA); '' = off"""
    fda_beta: float = 0.05    #: FDA: half-side of the swapped low-frequency square / min(H, W)
    dacs_real: str = ''
    """unlabelled real-domain frames (folder / collector export / bag:topic) the student also
    learns from through ClassMix and a mean teacher's pseudo-labels (DACS); '' = off"""
    dacs_tau: float = DEFAULT_TAU  #: DACS: teacher confidence that counts a pixel as sure
    dacs_alpha: float = DEFAULT_ALPHA  #: DACS: teacher EMA rate per step
    seed: int = 0             #: seed of weights and sampling
    threads: int = 1          #: torch intra-op threads
    out: str = ''             #: weights path (safetensors + card); '' = do not save
    ckpt_every: int = 500     #: with ``out``: checkpoint every N steps to OUT.ckpt.pt (0: never)
    resume: str = ''          #: '' | 'auto' (OUT.ckpt.pt if present; also bare --resume) | a path
    overwrite: bool = False   #: start again at step 0 where OUT's checkpoint or weights exist
    strict_images: bool = False  #: refuse a source with an unreadable image (default: skip it)
    tb: str = ''              #: tensorboard log folder for the loss and final IoUs ('' = none)


#: Fields that may differ between a checkpoint and the run resuming it (they do not change what
#: is learned); any other difference is refused.
_RESUMABLE_CHANGES = ('threads', 'ckpt_every', 'resume', 'eval_real', 'out', 'tb', 'overwrite',
                      'strict_images')


def checkpoint_path(out: str | Path) -> Path:
    """Where a run with weights path ``out`` keeps its checkpoint."""
    out = Path(out)
    return out.with_name(out.name + '.ckpt.pt')


def _save_checkpoint(path: Path, state: dict) -> None:
    from vr_goggles.weights import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load_checkpoint(path: Path, cfg: SegmenterConfig) -> dict:
    """A checkpoint of the same run, or a ValueError naming the path and the reason."""
    if not path.is_file():
        raise ValueError(f'{path}: no such checkpoint')
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
        saved = dict(state['config'])
        int(state['step'])
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is refused by name
        raise ValueError(f'{path}: unreadable checkpoint ({type(e).__name__}: {e})') from None
    wanted = asdict(cfg)
    diff = setting_differences(saved, wanted, sorted(set(wanted) - set(_RESUMABLE_CHANGES)))
    if diff:
        raise ValueError(f'{path}: checkpoint of a different run ({diff})')
    return state


def refuse_rerun(out: str, ckpt: Path, *, resuming: bool) -> None:
    """Refuse an ``--out`` that holds a run this command would silently restart or replace.

    An interrupted run (``OUT.ckpt.pt``) continues with ``--resume``; a finished one (its
    weights, the checkpoint removed) has nothing to resume, so only ``--overwrite`` trains it
    again. Raises ``ValueError`` naming the file and the flags.
    """
    if not resuming:
        refuse_existing_run(ckpt.parent, ckpt.name, resume_flag='--resume')
    from vr_goggles.weights import paths_for

    weights = paths_for(out)[0]
    if not resuming and weights.exists():
        raise ValueError(f'{weights} already exists (a finished run); --overwrite trains it '
                         'again from step 0 and replaces it')


def _split(sources: list[FrameSet], val_fraction: float) -> tuple[FrameSet, FrameSet]:
    """Train / validation sets: the last ``val_fraction`` of *each* source is held out."""
    tr_x, tr_y, va_x, va_y = [], [], [], []
    for f in sources:
        n_val = max(1, int(len(f) * val_fraction))
        tr_x.append(f.images[:-n_val])
        tr_y.append(f.labels[:-n_val])
        va_x.append(f.images[-n_val:])
        va_y.append(f.labels[-n_val:])
    name = '+'.join(f.name for f in sources)
    return (FrameSet(np.concatenate(tr_x), np.concatenate(tr_y), name),
            FrameSet(np.concatenate(va_x), np.concatenate(va_y), name + ':val'))


def _unlabelled(flag: str, spec: str, size: tuple[int, int],
                strict: bool) -> np.ndarray | None:
    """The images of ``spec`` (None when ''), never its labels; errors name ``flag``."""
    if not spec:
        return None
    try:  # labels='none': no label of these frames is ever read
        images = load_source(spec, size, labels='none', strict=strict).images
    except FileNotFoundError as e:
        raise FileNotFoundError(f'{flag}: {e}') from None
    if len(images) == 0:
        raise ValueError(f'{flag}: {spec}: no frames')
    return images


@torch.no_grad()
def evaluate(model: torch.nn.Module, frames: FrameSet, batch: int = 64) -> dict:
    """Mean IoU and per-class IoU of ``model`` on labelled ``frames``."""
    from vr_goggles.image.preprocess import normalize

    model.eval()
    conf = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for k in range(0, len(frames), batch):
        x = torch.from_numpy(normalize(frames.images[k:k + batch]))
        pred = model(x).argmax(1).numpy()
        conf += confusion_matrix(pred, frames.labels[k:k + batch], NUM_CLASSES)
    iou = iou_per_class(conf)
    return {'miou': round(100 * mean_iou(conf), 2),
            'iou': {n: (None if np.isnan(v) else round(100 * float(v), 2))
                    for n, v in zip(CLASS_NAMES, iou)}}


def train(cfg: SegmenterConfig, command: str = '') -> tuple[SegmentationNet, dict]:
    """Train, evaluate on the held-out sim split (and real eval labels), optionally save."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    size = (cfg.size, cfg.size)
    weights = class_weights(cfg.class_weights, flag='class_weights')  # fail before loading
    weight = None if weights is None else torch.tensor(weights)
    ckpt = checkpoint_path(cfg.out) if cfg.out else None
    resume = cfg.resume
    if resume == 'auto':
        resume = str(ckpt) if ckpt is not None and ckpt.is_file() else ''
    if ckpt is not None and not cfg.overwrite:
        refuse_rerun(cfg.out, ckpt, resuming=bool(resume))
    if cfg.fda_real and cfg.dacs_real:
        raise ValueError('--fda-real and --dacs-real: pick one (their combination is not '
                         'measured; docs/results/no_label_dacs.md)')
    if cfg.fda_real and not 0.0 <= cfg.fda_beta <= 0.5:
        raise ValueError(f'--fda-beta: {cfg.fda_beta} is not in [0, 0.5]')
    # first: a wrong path fails before the labelled data is read
    fda_targets = _unlabelled('--fda-real', cfg.fda_real, size, cfg.strict_images)
    dacs_targets = _unlabelled('--dacs-real', cfg.dacs_real, size, cfg.strict_images)
    if cfg.synthetic:
        frames = synthetic_frames(cfg.synthetic, size, domain='sim', seed=cfg.seed)
        sources = [frames]
    else:
        sources = [load_source(spec, size, labels='train', strict=cfg.strict_images)
                   for spec in cfg.data.split(',') if spec.strip()]
    for frames in sources:
        if frames.labels is None:
            raise ValueError(f'{frames.name}: no labels/ folder (collect with the sim or '
                             'randomized domain)')
    if not cfg.synthetic:
        warning = small_domain_warning('+'.join(f.name for f in sources), '--data',
                                       sum(len(f) for f in sources))
        if warning:
            print(f'warning: {warning}', file=sys.stderr, flush=True)
    train_set, val_set = _split(sources, cfg.val_fraction)
    model = SegmentationNet(width=cfg.width)
    dacs = None if dacs_targets is None else DACS(
        model, dacs_targets, seed=cfg.seed, tau=cfg.dacs_tau, alpha=cfg.dacs_alpha,
        crop_pad=cfg.crop_pad)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps)
    if fda_targets is None:
        sampler = FrameSampler(train_set, seed=cfg.seed, flip=True, crop_pad=cfg.crop_pad)
    else:
        sampler = FDASampler(train_set, targets=fda_targets, beta=cfg.fda_beta, seed=cfg.seed,
                             flip=True, crop_pad=cfg.crop_pad)
    start, wall_before = 0, 0.0
    if resume:
        state = _load_checkpoint(Path(resume), cfg)
        model.load_state_dict(state['model'])
        opt.load_state_dict(state['optimizer'])
        sched.load_state_dict(state['scheduler'])
        sampler.generator.set_state(state['sampler_rng'])
        torch.set_rng_state(state['torch_rng'])
        start, wall_before = int(state['step']), float(state['wall_s'])
        if dacs is not None:
            dacs.load_state_dict(state['dacs'])
        print(f'resumed {resume} at step {start}', flush=True)
    writer = None
    if cfg.tb:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(cfg.tb, purge_step=start or None)
    t0 = time.perf_counter()
    from tqdm import tqdm

    def save_checkpoint(done: int) -> None:
        assert ckpt is not None
        _save_checkpoint(ckpt, {
            'config': asdict(cfg), 'step': done, 'model': model.state_dict(),
            'optimizer': opt.state_dict(), 'scheduler': sched.state_dict(),
            'sampler_rng': sampler.generator.get_state(), 'torch_rng': torch.get_rng_state(),
            'wall_s': wall_before + time.perf_counter() - t0,
            **({} if dacs is None else {'dacs': dacs.state_dict()})})

    done = start
    with StopOnInterrupt(enabled=ckpt is not None, what='the segmenter') as stop:
        for step in tqdm(range(start, cfg.steps), mininterval=5.0, initial=start,
                         total=cfg.steps):
            if stop.requested:
                break
            model.train()
            x, y = sampler.sample(cfg.batch_size)
            loss = F.cross_entropy(model(x), y, weight=weight)
            if dacs is not None:
                loss_mix, share = dacs.loss(model, x, y)
                loss = loss + loss_mix
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if dacs is not None:
                dacs.update_teacher(model)
            if step % 200 == 0:
                print(f'step {step} loss {loss.item():.4f}' + (
                    '' if dacs is None else f' confident {share:.3f}'), flush=True)
                if writer is not None:
                    writer.add_scalar('train/loss', loss.item(), step)
                    if dacs is not None:
                        writer.add_scalar('train/dacs_confident_share', share, step)
            done = step + 1
            if ckpt is not None and cfg.ckpt_every > 0 and done % cfg.ckpt_every == 0 \
                    and done < cfg.steps:
                save_checkpoint(done)
    if stop.requested and done < cfg.steps:
        assert ckpt is not None  # only a run with --out listens for Ctrl-C
        save_checkpoint(done)
        if writer is not None:
            writer.close()
        raise TrainingInterrupted(f'interrupted at step {done} of {cfg.steps}: checkpoint '
                                  f'{ckpt} saved; rerun with --resume to continue')
    metrics = {'sim_val': evaluate(model, val_set), 'train_wall_s': round(
        wall_before + time.perf_counter() - t0, 1), 'steps': cfg.steps}
    if cfg.eval_real:
        real = load_source(cfg.eval_real, size, labels='eval')
        if real.labels is not None:
            metrics['real_eval'] = evaluate(model, real)
    print(json.dumps(metrics), flush=True)
    if writer is not None:
        for split in ('sim_val', 'real_eval'):
            for name, v in metrics.get(split, {}).get('iou', {}).items():
                if v is not None:
                    writer.add_scalar(f'{split}/iou_{name}', v, cfg.steps)
            if split in metrics:
                writer.add_scalar(f'{split}/miou', metrics[split]['miou'], cfg.steps)
        writer.close()
    model.eval()
    if cfg.out:
        from vr_goggles.image.preprocess import Preprocessor
        from vr_goggles.weights import ModelCard, save

        pre = Preprocessor(size=size, keep_aspect=True)
        card = ModelCard(
            name=Path(cfg.out).name, architecture='SegmentationNet',
            kwargs={'in_channels': 3, 'num_classes': NUM_CLASSES, 'width': cfg.width},
            input_size=list(size), task='semantic segmentation of simulator frames '
            f'({train_set.name}; classes {list(CLASS_NAMES)})' + (
                f', each with the low-frequency amplitude of an unlabelled frame of '
                f'{cfg.fda_real} (FDA, beta {cfg.fda_beta})' if cfg.fda_real else '') + (
                f', and ClassMix frames of unlabelled {cfg.dacs_real} with its mean teacher\'s '
                f'pseudo-labels (DACS, tau {cfg.dacs_tau}, alpha {cfg.dacs_alpha})'
                if cfg.dacs_real else ''),
            training_command=command,
            metrics=metrics, extra={'config': asdict(cfg), 'preprocess': pre.card(),
                                    'classes': list(CLASS_NAMES)})
        print(f'saved {save(cfg.out, model.state_dict(), card)}', flush=True)
        if ckpt is not None:
            ckpt.unlink(missing_ok=True)  # finished: nothing left to resume
    return model, metrics


def build_parser() -> argparse.ArgumentParser:
    """One flag per :class:`SegmenterConfig` field, its ``#:`` comment as help."""
    p = argparse.ArgumentParser(prog='python -m sim_training.train_segmenter',
                                description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    # a bare --resume continues the run in --out, as everywhere
    add_config_flags(p, SegmenterConfig, bare={'resume': 'auto'})
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: one flag per :class:`SegmenterConfig` field."""
    p = build_parser()
    args = p.parse_args(argv)
    cfg = SegmenterConfig(**vars(args))
    if not cfg.data and not cfg.synthetic:
        p.error('--data is required')
    command = command_line('sim_training.train_segmenter', argv)
    return run_as_tool('train_segmenter', lambda: train(cfg, command))


if __name__ == '__main__':
    sys.exit(main())
