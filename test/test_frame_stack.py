"""The policy's frame history: order, reset padding and control-period pacing."""

from __future__ import annotations

import numpy as np
import pytest

from vr_goggles.policy.frame_stack import FrameStack, StepClock, time_went_back


def frame(v: float, c: int = 3) -> np.ndarray:
    return np.full((c, 2, 2), v, np.float32)


def firsts(stack: np.ndarray, c: int = 3) -> list[float]:
    return [float(x) for x in stack[::c, 0, 0]]


def test_reset_pads_with_first_frame_and_order_is_oldest_first():
    s = FrameStack(3)
    assert firsts(s.push(frame(1))) == [1, 1, 1]
    assert firsts(s.push(frame(2))) == [1, 1, 2]
    assert firsts(s.push(frame(3))) == [1, 2, 3]
    assert firsts(s.push(frame(4))) == [2, 3, 4]
    assert s.push(frame(5)).shape == (9, 2, 2)
    s.reset()
    assert len(s) == 0
    assert firsts(s.push(frame(7))) == [7, 7, 7]


def test_single_frame_is_the_frame():
    s = FrameStack(1)
    f = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
    assert np.array_equal(s.push(f), f)


def test_frames_faster_than_the_period_replace_the_newest_slot():
    s = FrameStack(3, period=0.5)
    assert firsts(s.push(frame(0), t=10.0)) == [0, 0, 0]
    # 30 Hz camera: frames within one control period only refresh the newest slot.
    assert firsts(s.push(frame(1), t=10.1)) == [0, 0, 1]
    assert firsts(s.push(frame(2), t=10.4)) == [0, 0, 2]
    assert firsts(s.push(frame(3), t=10.5)) == [0, 2, 3]   # a new control step
    assert firsts(s.push(frame(4), t=10.7)) == [0, 2, 4]
    assert firsts(s.push(frame(5), t=11.0)) == [2, 4, 5]
    # Without times every push is a control step.
    assert firsts(s.push(frame(6))) == [4, 5, 6]
    assert firsts(s.push(frame(7), t=11.5)) == [5, 6, 7]
    # Time going backwards (a looped bag) restarts the history.
    assert firsts(s.push(frame(9), t=1.0)) == [9, 9, 9]


def test_once_per_period_frames_with_jitter_each_start_a_slot():
    """A simulator bridge stamps one frame per control period, a few ms early or late."""
    s = FrameStack(3, period=0.5)
    t0 = 1.795424296631e9  # epoch-sized float seconds
    for n, jitter in enumerate([0.0, -0.004, 0.003, -0.002]):
        out = s.push(frame(n), t=t0 + 0.5 * n + jitter)
    assert firsts(out) == [1, 2, 3]  # every step kept, none overwritten
    assert firsts(s.push(frame(9), t=t0 + 1.5 + 0.5 * 0.5)) == [1, 2, 9]  # mid-period: refresh


def test_stamped_slots_are_control_periods():
    """Stamped frames: the slots are the last control periods, whatever the camera rate."""
    s = FrameStack(3, period=0.5)
    for n, t in enumerate([0.0, 0.2, 0.5, 0.7, 1.0, 1.1]):
        out = s.push(frame(n), t=t)
    assert firsts(out) == [1, 3, 5]
    # Untimed, a k-frame stack is the last k steps, and keeps only those.
    s = FrameStack(4)
    got = [firsts(s.push(frame(n))) for n in range(6)]
    assert got[-1] == [2, 3, 4, 5] and len(s) == 4


def test_time_went_back_needs_two_times():
    assert time_went_back(1.0, 2.0)
    assert not time_went_back(2.0, 2.0) and not time_went_back(3.0, 2.0)
    assert not time_went_back(None, 2.0) and not time_went_back(1.0, None)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match='k'):
        FrameStack(0)
    with pytest.raises(ValueError, match='period'):
        FrameStack(2, period=0.0)
    s = FrameStack(2)
    with pytest.raises(ValueError, match='C, H, W'):
        s.push(np.zeros((2, 2)))
    s.push(frame(0))
    with pytest.raises(ValueError, match='reset'):
        s.push(frame(0, c=1))


def test_step_clock_known_answers():
    clock = StepClock(period=0.5)
    F, N, S = StepClock.FIRST, StepClock.NEW, StepClock.SAME
    assert [clock.tick(t) for t in (1.0, 1.2, 1.46, 1.5, 2.0)] == [F, S, N, S, N]
    assert clock.tick(0.3) == F  # time went back: a new history
    clock.reset()
    assert clock.tick(5.0) == F
    untimed = StepClock()
    assert [untimed.tick() for _ in range(3)] == [F, N, N]
    with pytest.raises(ValueError, match='period'):
        StepClock(period=0)
