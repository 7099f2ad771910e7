"""DACS (Tranheden et al., WACV 2021): the segmenter adapts to unlabelled camera frames.

Why: a segmenter trained on labelled sim and randomised frames meets the camera's look only at
run time, where it misses the chair and paints phantoms. DACS self-trains it on the camera's
own frames without a label: a mean teacher (an exponential moving average of the student)
pseudo-labels an unlabelled camera frame, and half of the classes of a labelled frame are
pasted onto it (cross-domain ClassMix), so every mixed frame carries true labels where pasted
and the teacher's elsewhere. The pasted objects keep the pseudo-labels from drifting towards
the classes the teacher already prefers, the paper's fix for plain self-training. On the
real-proxy frames it lifted the no-label segmenter's mIoU from 54-55 (FDA) to 56-60 and the
semantic goggles from 70.5% to 75.5% on training layouts (medians of three seeds; draws spread
about 10 points: docs/results/no_label_dacs.md).

``train_segmenter --dacs-real SOURCE`` adds :meth:`DACS.loss` to every step's cross-entropy
and :meth:`DACS.update_teacher` after every optimiser step. The pieces are pure functions
(:func:`classmix`, :func:`confident_share`, :func:`mixed_loss`, :func:`ema_update`) with
known-answer tests.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from sim_training.data import FrameSampler, FrameSet, jitter

#: the paper's teacher confidence threshold and EMA rate
DEFAULT_TAU = 0.968
DEFAULT_ALPHA = 0.99
#: brightness offset and contrast factor jitter of the mixed frames (+- half of each)
BRIGHTNESS = 0.4
CONTRAST = 0.4


def classmix(xs: torch.Tensor, ys: torch.Tensor, xt: torch.Tensor, pt: torch.Tensor,
             generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paste half of each labelled frame's classes onto the matching unlabelled frame.

    ``xs``/``xt``: float ``(N, 3, H, W)`` labelled / unlabelled frames; ``ys``: their int64
    ``(N, H, W)`` labels; ``pt``: the teacher's labels for ``xt``. For frame ``i``,
    ``ceil(c / 2)`` of the ``c`` classes present in ``ys[i]`` (at least one), drawn with
    ``generator``, are pasted. Returns the mixed frames, their labels (``ys`` where pasted,
    ``pt`` elsewhere) and the bool ``(N, H, W)`` paste mask.
    """
    masks = []
    for y in ys:
        cls = torch.unique(y)
        k = max(1, (len(cls) + 1) // 2)
        pick = cls[torch.randperm(len(cls), generator=generator)[:k]]
        masks.append(torch.isin(y, pick))
    m = torch.stack(masks)
    return torch.where(m[:, None], xs, xt), torch.where(m, ys, pt), m


def confident_share(prob: torch.Tensor, tau: float) -> torch.Tensor:
    """Per frame, the share of pixels whose top class probability exceeds ``tau``.

    ``prob``: ``(N, C, H, W)`` softmax output -> float ``(N,)``. DACS weights every
    pseudo-labelled pixel of a frame by this share: a teacher unsure of a frame teaches little.
    """
    return (prob.max(1).values > tau).float().mean((1, 2))


def mixed_loss(logits: torch.Tensor, labels: torch.Tensor, pasted: torch.Tensor,
               share: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over a mixed batch, pasted pixels weighted 1, the others ``share``.

    ``logits`` ``(N, C, H, W)``, ``labels`` and ``pasted`` ``(N, H, W)``, ``share`` ``(N,)``;
    the mean is over every pixel (weights included, not normalised by them, as in DACS).
    """
    w = torch.where(pasted, torch.ones_like(labels, dtype=logits.dtype),
                    share[:, None, None].to(logits.dtype).expand(labels.shape))
    return (F.cross_entropy(logits, labels, reduction='none') * w).mean()


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, alpha: float) -> None:
    """``teacher <- alpha * teacher + (1 - alpha) * student``; buffers (BN stats) copied."""
    for pt, ps in zip(teacher.parameters(), student.parameters()):
        pt.mul_(alpha).add_(ps.detach(), alpha=1 - alpha)
    for bt, bs in zip(teacher.buffers(), student.buffers()):
        bt.copy_(bs)


class DACS:
    """The unlabelled side of a DACS run: targets, the mean teacher and the mixing randomness.

    ``targets``: unlabelled uint8 ``(M, H, W, 3)`` camera frames of the training size (no label
    is read). The teacher starts as a copy of ``student``. ``state_dict`` holds everything a
    checkpoint needs to resume the run exactly.
    """

    def __init__(self, student: torch.nn.Module, targets: np.ndarray, *, seed: int,
                 tau: float = DEFAULT_TAU, alpha: float = DEFAULT_ALPHA, crop_pad: int = 4):
        if len(targets) == 0:
            raise ValueError('dacs: no target frames')
        if not 0.0 < tau < 1.0:
            raise ValueError(f'dacs_tau: {tau} is not in (0, 1)')
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f'dacs_alpha: {alpha} is not in [0, 1)')
        self.tau, self.alpha = float(tau), float(alpha)
        self.sampler = FrameSampler(FrameSet(np.ascontiguousarray(targets), None, 'dacs'),
                                    seed=seed + 1000, flip=True, crop_pad=crop_pad)
        self.generator = torch.Generator().manual_seed(seed + 7)
        self.teacher = copy.deepcopy(student)
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def loss(self, student: torch.nn.Module, xs: torch.Tensor,
             ys: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The mixed-frame loss for one labelled batch, and the teacher's confident share."""
        xt, _ = self.sampler.sample(len(xs))
        with torch.no_grad():
            self.teacher.eval()
            prob = torch.softmax(self.teacher(xt), 1)
            pt = prob.argmax(1)
        xm, ym, m = classmix(xs, ys, xt, pt, self.generator)
        xm = jitter(xm, contrast=CONTRAST, brightness=BRIGHTNESS, generator=self.generator)
        share = confident_share(prob, self.tau)
        return mixed_loss(student(xm), ym, m, share), float(share.mean())

    def update_teacher(self, student: torch.nn.Module) -> None:
        """After each optimiser step: the teacher follows the student."""
        ema_update(self.teacher, student, self.alpha)

    def state_dict(self) -> dict:
        """Teacher weights and both generators' states (for the run's checkpoint)."""
        return {'teacher': self.teacher.state_dict(),
                'sampler_rng': self.sampler.generator.get_state(),
                'mix_rng': self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved."""
        self.teacher.load_state_dict(state['teacher'])
        self.sampler.generator.set_state(state['sampler_rng'])
        self.generator.set_state(state['mix_rng'])
