"""How long the policy has been turning in place, as extra input planes.

A policy that sees only its last few frames cannot tell that it has already turned all the way
round: with the chair hidden behind an obstacle every view repeats, and a deterministic policy
turns in place until the episode ends (the main failure of the 4-frame policy_sim on detour
layouts). Its own action history is memory the robot has for free, with no extra sensor. This
module turns "control steps since the last forward step" into an input plane appended to the
frame stack, ``2 * min(n, limit) / limit - 1`` in [-1, 1], where ``limit`` turns (24 x 15
degrees = a full turn) saturate it. A single forward step resets that count, and a policy
trained with it learnt to spin a full turn, step forward once and spin again (measured). With
``window`` > 0 a second plane, ``2 * turns / window - 1`` over the last ``window`` steps, keeps
that recent spinning visible after the forward step.

Training (a Gymnasium wrapper), evaluation, replay and the policy node all count through this
one class, by the same step rule as :class:`vr_goggles.policy.frame_stack.FrameStack`: every call
is
a control step, or, with frame times, a frame less than ``period`` after the step's first one
belongs to the same step and the last action chosen in a step is the one that counts.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from vr_goggles.policy.actions import FORWARD
from vr_goggles.policy.frame_stack import StepClock

__all__ = ['TurnMemory', 'n_planes']


def n_planes(limit: int, window: int = 0) -> int:
    """Input planes a turn memory of ``limit`` (0: none) and ``window`` adds to the frames."""
    return (2 if window else 1) if limit else 0


class TurnMemory:
    """Counts turning control steps; :meth:`planes` encodes the counts for the actor.

    Use per frame: ``values = m.observe(t)`` (the counts of the turns before this step),
    choose an action with them, then ``m.record(action)``. The recorded action is committed
    when the next control step starts.
    """

    def __init__(self, limit: int, period: float | None = None, window: int = 0):
        if int(limit) != limit or limit < 1:
            raise ValueError(f'limit: expected an int >= 1 (turns that saturate), got {limit!r}')
        self.clock = StepClock(period)
        if int(window) != window or window < 0:
            raise ValueError(f'window: expected an int >= 0 (steps; 0 = no window plane), '
                             f'got {window!r}')
        self.limit = int(limit)
        self.window = int(window)
        self.turns = 0
        self._recent: deque[bool] = deque(maxlen=max(self.window, 1))
        self._pending: int | None = None

    def _forget(self) -> None:
        self.turns = 0
        self._recent.clear()
        self._pending = None

    def reset(self) -> None:
        """New episode or interrupted stream: no turns so far."""
        self._forget()
        self.clock.reset()

    @property
    def n_planes(self) -> int:
        """Input planes this memory adds: 1, or 2 with a window."""
        return n_planes(self.limit, self.window)

    def observe(self, t: float | None = None) -> tuple[float, ...]:
        """Encoded turn counts for a frame taken at ``t`` s (optional), each in [-1, 1].

        A frame that starts a new control step first commits the action recorded in the
        previous one.
        """
        step = self.clock.tick(t)
        if step == StepClock.FIRST:
            self._forget()
        elif step == StepClock.NEW and self._pending is not None:
            turned = self._pending != FORWARD
            self.turns = self.turns + 1 if turned else 0
            self._recent.append(turned)
            self._pending = None
        return self.values()

    def record(self, action: int) -> None:
        """The action chosen (and executed) for the current control step."""
        self._pending = int(action)

    def values(self) -> tuple[float, ...]:
        """The planes' values: the count, then (with a window) the recent share of turns.

        ``2 * min(turns, limit) / limit - 1`` is -1 after a forward step and 1 after ``limit``
        turns; the window's is ``2 * turns in the last window steps / window - 1``.
        """
        out = (2.0 * min(self.turns, self.limit) / self.limit - 1.0,)
        if self.window:
            out += (2.0 * sum(self._recent) / self.window - 1.0,)
        return out

    def planes(self, size: tuple[int, int],
               values: tuple[float, ...] | None = None) -> np.ndarray:
        """``(n_planes, H, W)`` float32 planes of ``values`` (default: the current ones)."""
        values = self.values() if values is None else values
        return np.stack([np.full(size, v, np.float32) for v in values])
