"""The turn-memory plane: known counts, the step rule with frame times, the training wrapper."""

from __future__ import annotations

import numpy as np
import pytest

from vr_goggles.policy.actions import FORWARD, TURN_LEFT, TURN_RIGHT
from vr_goggles.policy.turn_memory import TurnMemory, n_planes


def drive(memory: TurnMemory, actions, times=None) -> list[float]:
    """Observe, then record each action; the values each decision saw."""
    seen = []
    for i, a in enumerate(actions):
        seen.append(memory.observe(None if times is None else times[i])[0])
        memory.record(a)
    return seen


def test_counts_turns_since_the_last_forward_step():
    m = TurnMemory(4)
    seen = drive(m, [TURN_LEFT, TURN_RIGHT, TURN_LEFT, FORWARD, TURN_RIGHT, TURN_RIGHT])
    # turns before each decision: 0, 1, 2, 3, 0 (after forward), 1 -> 2 n / 4 - 1
    assert seen == pytest.approx([-1.0, -0.5, 0.0, 0.5, -1.0, -0.5])
    assert m.observe() == pytest.approx((0.0,)) and m.turns == 2 and m.n_planes == 1


def test_saturates_at_the_limit_and_resets():
    m = TurnMemory(3)
    assert drive(m, [TURN_LEFT] * 6)[-1] == 1.0 and m.turns == 5
    assert m.values() == (1.0,)
    m.reset()
    assert m.observe() == (-1.0,)
    plane = m.planes((2, 3))
    assert plane.shape == (1, 2, 3) and plane.dtype == np.float32 and (plane == -1).all()


def test_frames_within_a_period_are_one_step_and_the_last_choice_counts():
    m = TurnMemory(8, period=0.5)
    # 0.0, 0.2 -> step 1 (last choice FORWARD); 0.5, 0.7 -> step 2 (last TURN); 1.0 -> step 3
    seen = drive(m, [TURN_LEFT, FORWARD, FORWARD, TURN_LEFT, TURN_LEFT],
                 times=[0.0, 0.2, 0.5, 0.7, 1.0])
    assert m.turns == 1
    assert seen == pytest.approx([-1.0, -1.0, -1.0, -1.0, -0.75])
    # A frame a hair early (inside PERIOD_TOLERANCE) still starts a step.
    m.record(TURN_LEFT)
    assert m.observe(1.46) == pytest.approx((-0.5,))
    # Time going back (a looped bag) restarts the count.
    m.record(TURN_LEFT)
    assert m.observe(0.1) == (-1.0,) and m.turns == 0


def test_window_plane_remembers_spinning_across_a_forward_step():
    m = TurnMemory(3, window=4)
    assert m.n_planes == 2 == n_planes(3, 4)
    assert n_planes(0, 48) == 0 and n_planes(24) == 1
    L, F = TURN_LEFT, FORWARD
    seen = []
    for a in (L, L, L, F, L, F, F):
        seen.append(m.observe())
        m.record(a)
    seen.append(m.observe())
    # (count plane, share of turns among the last 4 steps); steps before the episode: none.
    assert np.allclose(seen, [(-1, -1), (-1 / 3, -0.5), (1 / 3, 0.0), (1, 0.5),
                              (-1, 0.5), (-1 / 3, 0.5), (-1, 0.0), (-1, -0.5)])
    planes = m.planes((2, 2))
    assert planes.shape == (2, 2, 2) and (planes[0] == -1).all() and (planes[1] == -0.5).all()
    m.reset()
    assert m.observe() == (-1.0, -1.0)


def test_bad_arguments_are_refused():
    for bad in (0, -2, 2.5):
        with pytest.raises(ValueError, match='limit'):
            TurnMemory(bad)
    with pytest.raises(ValueError, match='period'):
        TurnMemory(4, period=0.0)
    with pytest.raises(ValueError, match='window'):
        TurnMemory(4, window=-1)


def test_training_wrapper_appends_the_plane():
    gym = pytest.importorskip('gymnasium')
    pytest.importorskip('stable_baselines3')
    from sim_training.policy_training.wrappers import TurnMemoryPlane

    class Still(gym.Env):
        observation_space = gym.spaces.Box(-1.0, 1.0, (6, 2, 2), np.float32)
        action_space = gym.spaces.Discrete(3)

        def reset(self, *, seed=None, options=None):
            return np.full((6, 2, 2), 0.5, np.float32), {}

        def step(self, action):
            return np.full((6, 2, 2), 0.5, np.float32), 0.0, False, False, {}

    env = TurnMemoryPlane(Still(), 2)
    assert env.observation_space.shape == (7, 2, 2)
    obs, _ = env.reset()
    assert obs.shape == (7, 2, 2) and (obs[:6] == 0.5).all() and (obs[6] == -1).all()
    planes = [env.step(a)[0][6, 0, 0] for a in (TURN_LEFT, TURN_RIGHT, TURN_LEFT, FORWARD)]
    assert planes == pytest.approx([0.0, 1.0, 1.0, -1.0])
    env.step(TURN_LEFT)
    assert (env.reset()[0][6] == -1).all()  # no count leaks into the next episode
    env = TurnMemoryPlane(Still(), 2, window=2)
    assert env.reset()[0].shape == (8, 2, 2)
    obs = [env.step(a)[0][6:, 0, 0] for a in (TURN_LEFT, TURN_LEFT, FORWARD)]
    assert np.allclose(obs, [[0.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
