"""Known answers for the action set and its velocity map (what the ROS nodes publish)."""

import math

import pytest

from vr_goggles.policy import actions


def test_velocity_map_known_answers():
    assert actions.ACTION_NAMES == ('forward', 'turn_left', 'turn_right')
    # 0.15 m per 0.5 s step = 0.3 m/s; 15 degrees per 0.5 s = 30 deg/s.
    assert actions.action_to_velocity(actions.FORWARD) == pytest.approx((0.3, 0.0))
    assert actions.action_to_velocity(actions.TURN_LEFT) == pytest.approx(
        (0.0, math.radians(30.0)))
    assert actions.action_to_velocity(actions.TURN_RIGHT) == pytest.approx(
        (0.0, -math.radians(30.0)))


def test_velocity_integrates_to_one_sim_step():
    v, _ = actions.action_to_velocity(actions.FORWARD)
    _, w = actions.action_to_velocity(actions.TURN_LEFT)
    assert v * actions.CONTROL_PERIOD == pytest.approx(actions.FORWARD_STEP)
    assert w * actions.CONTROL_PERIOD == pytest.approx(actions.TURN_STEP)


@pytest.mark.parametrize('action', [0, 1, 2])
def test_velocity_to_action_inverts_the_map(action):
    assert actions.velocity_to_action(*actions.action_to_velocity(action)) == action


def test_velocity_to_action_nearest_and_stop():
    assert actions.velocity_to_action(0.0, 0.0) is None
    assert actions.velocity_to_action(0.01, 0.0) is None
    assert actions.velocity_to_action(0.25, 0.05) == actions.FORWARD
    assert actions.velocity_to_action(0.05, -0.4) == actions.TURN_RIGHT


@pytest.mark.parametrize('bad', [-1, 3, 'left'])
def test_unknown_action_is_value_error(bad):
    with pytest.raises(ValueError, match='action'):
        actions.action_to_velocity(bad)
