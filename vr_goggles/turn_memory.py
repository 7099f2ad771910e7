"""How long the policy has been turning in place, as one extra input plane.

A policy that sees only its last few frames cannot tell that it has already turned all the way
round: with the chair hidden behind an obstacle every view repeats, and a deterministic policy
turns in place until the episode ends (the main failure of the 4-frame policy_sim on detour
layouts). Its own action history is memory the robot has for free, with no extra sensor. This
module turns "control steps since the last forward step" into an input plane appended to the
frame stack, ``2 * min(n, limit) / limit - 1`` in [-1, 1], where ``limit`` turns (24 x 15
degrees = a full turn) saturate it.

Training (a Gymnasium wrapper), evaluation, replay and the policy node all count through this
one class, by the same step rule as :class:`vr_goggles.frame_stack.FrameStack`: every call is
a control step, or, with frame times, a frame less than ``period`` after the step's first one
belongs to the same step and the last action chosen in a step is the one that counts.
"""

from __future__ import annotations

import numpy as np

from vr_goggles.actions import FORWARD
from vr_goggles.frame_stack import starts_new_step, time_went_back

__all__ = ['TurnMemory']


class TurnMemory:
    """Counts consecutive turning control steps; :meth:`plane` encodes the count for the actor.

    Use per frame: ``value = m.observe(t)`` (the count of the turns before this step), choose
    an action with it, then ``m.record(action)``. The recorded action is committed when the
    next control step starts.
    """

    def __init__(self, limit: int, period: float | None = None):
        if int(limit) != limit or limit < 1:
            raise ValueError(f'limit: expected an int >= 1 (turns that saturate), got {limit!r}')
        if period is not None and not period > 0:
            raise ValueError(f'period: expected > 0 seconds or None, got {period!r}')
        self.limit = int(limit)
        self.period = period
        self.turns = 0
        self._pending: int | None = None
        self._t_kept: float | None = None
        self._started = False

    def reset(self) -> None:
        """New episode or interrupted stream: no turns so far."""
        self.turns = 0
        self._pending = None
        self._t_kept = None
        self._started = False

    def observe(self, t: float | None = None) -> float:
        """Encoded turn count for a frame taken at ``t`` s (optional), in [-1, 1].

        A frame that starts a new control step first commits the action recorded in the
        previous one.
        """
        if time_went_back(t, self._t_kept):
            self.reset()
        if not self._started:
            self._started, self._t_kept = True, t
        elif starts_new_step(t, self._t_kept, self.period):
            if self._pending is not None:
                self.turns = 0 if self._pending == FORWARD else self.turns + 1
            self._pending, self._t_kept = None, t
        return self.value()

    def record(self, action: int) -> None:
        """The action chosen (and executed) for the current control step."""
        self._pending = int(action)

    def value(self) -> float:
        """``2 * min(turns, limit) / limit - 1``: -1 after a forward step, 1 after ``limit``."""
        return 2.0 * min(self.turns, self.limit) / self.limit - 1.0

    def plane(self, size: tuple[int, int], value: float | None = None) -> np.ndarray:
        """``(1, H, W)`` float32 plane of ``value`` (default: the current one)."""
        return np.full((1, *size), self.value() if value is None else value, np.float32)
