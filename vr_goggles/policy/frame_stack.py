"""The policy's short visual memory: the last ``k`` preprocessed frames, one control period apart.

A memoryless policy cannot tell "I am pushing into a box" (the image never changes) from
"the way is free", nor where it has already looked. Stacking the last frames gives it that
context. Training (a Gymnasium wrapper), evaluation, the policy node and replay all stack through
this one class, so the history a robot sees is built exactly as in training:

- frames are ``(C, H, W)`` arrays (the output of :mod:`vr_goggles.image.preprocess`); the stack is
  their concatenation along channels, **oldest first**, ``(k * C, H, W)``;
- after :meth:`FrameStack.reset` the first frame fills every slot (Gymnasium's "reset" padding),
  so the first decision sees a static scene rather than black frames;
- in simulation every call is one control step. On a robot or in a bag frames come faster than
  the control period: with timestamps, a frame less than ``period`` after the last kept one
  *replaces* the newest slot instead of shifting the history, so the older slots stay one
  control period apart whatever the camera rate. "Less than" allows :data:`PERIOD_TOLERANCE`
  of the period: frames that arrive once per control period (a simulator bridge, a camera
  triggered by the controller) come a few ms early or late, and one that is a hair early must
  still start a new slot rather than overwrite the last one. Without the slack the ROS
  closed-loop test (sim_bridge -> goggles -> policy) failed in about half of its runs, the
  policy turning in place for whole episodes; with it, it passed every run since.
"""

from __future__ import annotations

from collections import deque

import numpy as np

__all__ = ['FrameStack', 'PERIOD_TOLERANCE', 'StepClock', 'starts_new_step', 'time_went_back']

#: Relative slack on ``period`` when deciding whether a stamped frame starts a new slot: a
#: frame at least ``(1 - PERIOD_TOLERANCE) * period`` after the last kept one does.
PERIOD_TOLERANCE = 0.1


def starts_new_step(t: float | None, t_kept: float | None, period: float | None) -> bool:
    """Whether a frame taken at ``t`` starts a new control step after the one kept at ``t_kept``.

    Without timestamps or a period every frame is a step; otherwise one at least
    ``(1 - PERIOD_TOLERANCE) * period`` after the last kept frame is.
    """
    return (t is None or period is None or t_kept is None
            or t - t_kept >= period * (1.0 - PERIOD_TOLERANCE))


def time_went_back(t: float | None, t_kept: float | None) -> bool:
    """Whether a frame at ``t`` is older than the last kept one.

    A looped bag or a restarted simulation: the history must restart rather than mix two runs.
    """
    return t is not None and t_kept is not None and t < t_kept


class StepClock:
    """Which control step a frame belongs to: the one pacing rule of every policy memory.

    :meth:`tick` says whether a frame taken at ``t`` is the ``FIRST`` of a history (after
    :meth:`reset`, or when time went back: the caller starts its memory afresh), starts a
    ``NEW`` control step, or belongs to the ``SAME`` one as the last kept frame
    (:func:`starts_new_step`). :class:`FrameStack` and
    :class:`vr_goggles.policy.turn_memory.TurnMemory` are both paced by it.
    """

    FIRST, NEW, SAME = 'first', 'new', 'same'

    def __init__(self, period: float | None = None):
        if period is not None and not period > 0:
            raise ValueError(f'period: expected > 0 seconds or None, got {period!r}')
        self.period = period
        self._t_kept: float | None = None
        self._started = False

    def reset(self) -> None:
        """The next frame starts a new history."""
        self._t_kept = None
        self._started = False

    def tick(self, t: float | None = None) -> str:
        """``FIRST``, ``NEW`` or ``SAME`` for a frame taken at ``t`` s (optional)."""
        if time_went_back(t, self._t_kept):
            self.reset()
        if not self._started:
            self._started, self._t_kept = True, t
            return self.FIRST
        if starts_new_step(t, self._t_kept, self.period):
            self._t_kept = t
            return self.NEW
        return self.SAME


class FrameStack:
    """Rolling history of ``(C, H, W)`` frames -> ``(k * C, H, W)``: the last ``k`` steps."""

    def __init__(self, k: int, period: float | None = None):
        if int(k) != k or k < 1:
            raise ValueError(f'k: expected an int >= 1, got {k!r}')
        self.clock = StepClock(period)
        self.k = int(k)
        self.period = period
        self._frames: deque[np.ndarray] = deque(maxlen=self.k)

    def reset(self) -> None:
        """Forget the history (new episode, or the camera stream was interrupted)."""
        self._frames.clear()
        self.clock.reset()

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, frame: np.ndarray, t: float | None = None) -> np.ndarray:
        """Add ``frame`` (taken at time ``t`` s, optional) and return the stacked history."""
        frame = np.asarray(frame)
        if frame.ndim != 3:
            raise ValueError(f'frame: expected (C, H, W), got shape {frame.shape}')
        if self._frames and frame.shape != self._frames[-1].shape:
            raise ValueError(f'frame: shape {frame.shape} differs from the history\'s '
                             f'{self._frames[-1].shape}; reset() first')
        step = self.clock.tick(t)
        if step == StepClock.FIRST:
            self._frames.clear()
            self._frames.extend([frame] * self.k)
        elif step == StepClock.NEW:
            self._frames.append(frame)  # a new control step
        else:
            self._frames[-1] = frame    # same control step: newest frame wins
        return np.concatenate(self._frames, axis=0)
