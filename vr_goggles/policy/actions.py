"""The discrete action set shared by simulator, policy and ROS nodes, and its velocity map.

The VR-Goggles paper's navigation action set: forward, turn left, turn right. The simulator
advances one control period ``CONTROL_PERIOD`` seconds per step, so a ROS node that publishes
``ACTION_VELOCITIES[a]`` on ``cmd_vel`` for that long moves the robot as the simulator did.
"""

from __future__ import annotations

import math

ACTION_NAMES: tuple[str, ...] = ('forward', 'turn_left', 'turn_right')
FORWARD, TURN_LEFT, TURN_RIGHT = 0, 1, 2

#: Seconds of robot motion represented by one simulator step.
CONTROL_PERIOD = 0.5
#: Metres travelled by one forward step and radians turned by one turn step.
FORWARD_STEP = 0.15
TURN_STEP = math.radians(15.0)

#: action -> (linear m/s, angular rad/s, counter-clockwise positive as in REP 103).
ACTION_VELOCITIES: dict[int, tuple[float, float]] = {
    FORWARD: (FORWARD_STEP / CONTROL_PERIOD, 0.0),
    TURN_LEFT: (0.0, TURN_STEP / CONTROL_PERIOD),
    TURN_RIGHT: (0.0, -TURN_STEP / CONTROL_PERIOD),
}


def action_to_velocity(action: int) -> tuple[float, float]:
    """Action index -> (linear, angular) velocity for ``geometry_msgs/Twist``."""
    try:
        return ACTION_VELOCITIES[int(action)]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f'action: expected one of {sorted(ACTION_VELOCITIES)} '
                         f'({", ".join(ACTION_NAMES)}), got {action!r}') from None


def velocity_to_action(linear: float, angular: float) -> int | None:
    """(linear, angular) -> the nearest discrete action, or None for a stop command.

    Used by the simulator bridge to drive the simulator from ``cmd_vel``. Velocities are
    compared after scaling each axis by its action's magnitude, so units do not bias the match.
    """
    v_max = ACTION_VELOCITIES[FORWARD][0]
    w_max = ACTION_VELOCITIES[TURN_LEFT][1]
    lin, ang = linear / v_max, angular / w_max
    if math.hypot(lin, ang) < 0.25:
        return None
    best, best_d = None, math.inf
    for a, (v, w) in ACTION_VELOCITIES.items():
        d = (lin - v / v_max) ** 2 + (ang - w / w_max) ** 2
        if d < best_d:
            best, best_d = a, d
    return best
