"""``policy_node``: simulator-style image -> ``cmd_vel``, as a ROS 2 lifecycle node.

Subscribes ``image_sim`` (sensor_msgs/Image, normally from ``goggles_node``) and publishes
geometry_msgs/Twist (or TwistStamped with ``stamped``) on ``cmd_vel`` from a timer at
``rate`` Hz, so the robot's controller gets a steady command stream whatever the camera
rate. The timer runs the policy on the newest image only when a new one arrived (the policy is
deterministic), clamps the command to ``max_linear`` / ``max_angular``, and publishes zero
velocity when no image arrived for ``stale_timeout`` seconds, on deactivate and on shutdown:
a dead camera or goggles node stops the robot instead of replaying the last command.

A frame-stacking (card ``frame_stack`` > 1) or turn-counting (card ``turn_memory``) policy
keeps its history across ticks, paced by the image header stamps (receive time for unstamped
images) at the policy's control period; the history restarts after a stale period and on
activation.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from geometry_msgs.msg import Twist, TwistStamped
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import Image

from vr_goggles.nodes.params import POLICY_PARAMS, clamp_velocity, stamp_ns
from vr_goggles.nodes.rate_stats import RateMeter
from vr_goggles.nodes.ros_common import (
    OK,
    WARN,
    Diagnostics,
    StopReleaseLifecycleNode,
    declare_parameters,
    main_loop,
    qos_profile,
)
from vr_goggles.policy.actions import ACTION_NAMES


class PolicyNode(StopReleaseLifecycleNode):
    """Run ``vr_goggles.policy.Policy`` on ``image_sim`` and drive ``cmd_vel``."""

    def __init__(self, node_name: str = 'policy_node', **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = declare_parameters(self, POLICY_PARAMS, on_change=self._on_change)
        self._max_linear = float(self.params['max_linear'])
        self._max_angular = float(self.params['max_angular'])
        self._stale_timeout = float(self.params['stale_timeout'])
        self._lock = threading.Lock()
        self._latest: tuple[Any, int] | None = None  # (msg, receive time ns, node clock)
        self._fresh = False
        self.policy = None
        self._decode = None
        self._pub = None
        self._sub = None
        self._timer = None
        self.active = False
        self.stale = True
        self.last_action: int | None = None
        self.command = (0.0, 0.0)
        self.action_counts = [0] * len(ACTION_NAMES)
        self.malformed = 0
        self.errors = 0
        self.stale_periods = 0
        self.image_rate = RateMeter()
        self.cmd_rate = RateMeter()
        self.diagnostics = Diagnostics(self, 'policy', 'vr_goggles', self._report, 1.0)

    def _on_change(self, values: dict[str, Any]) -> None:
        self._max_linear = float(values.get('max_linear', self._max_linear))
        self._max_angular = float(values.get('max_angular', self._max_angular))
        self._stale_timeout = float(values.get('stale_timeout', self._stale_timeout))

    # -- lifecycle --------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the policy and create the ``cmd_vel`` publisher."""
        from vr_goggles.image import codec
        from vr_goggles.policy import Policy

        p = self.params
        try:
            self.policy = Policy.load(p['model'], engine=p['engine'])
        except Exception as exc:  # noqa: BLE001 (any load failure is a failed transition)
            self.get_logger().error(f'configure: cannot load policy {p["model"]!r} with engine '
                                    f'{p["engine"]!r}: {exc}')
            return TransitionCallbackReturn.FAILURE
        self._decode = codec.image_to_rgb
        msg_type = TwistStamped if p['stamped'] else Twist
        self._pub = self.create_lifecycle_publisher(msg_type, 'cmd_vel',
                                                    qos_profile(p['output_qos']))
        self.get_logger().info(f'configured: policy {p["model"]!r} on {self.policy.engine}, '
                               f'{p["rate"]} Hz, {msg_type.__name__} on {self._pub.topic_name}')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe and start the command timer."""
        ret = super().on_activate(state)  # enables the publisher first
        with self._lock:
            self._latest, self._fresh = None, False
        if self.policy is not None:
            self.policy.reset()
        self._sub = self.create_subscription(Image, 'image_sim', self._on_image,
                                             qos_profile(self.params['input_qos']))
        self._timer = self.create_timer(1.0 / self.params['rate'], self._on_timer)
        self.active = True
        return ret

    def _stop(self) -> None:
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        if self._sub is not None:
            self.destroy_subscription(self._sub)
            self._sub = None
        if self.active:
            self._publish(0.0, 0.0)
            self._wait_acked()
        self.active = False

    def _wait_acked(self, timeout: float = 0.5) -> None:
        # The stop command must not die with the process: wait until reliable subscribers
        # acknowledged it (returns at once for best effort).
        pub = self._pub
        if pub is not None and hasattr(pub, 'wait_for_all_acked'):
            from rclpy.duration import Duration

            try:
                pub.wait_for_all_acked(Duration(seconds=timeout))
            except Exception:  # noqa: BLE001 (best effort at shutdown)
                pass

    def _release(self) -> None:
        super()._release()
        self.policy = None

    # -- data path --------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        now = self.get_clock().now().nanoseconds
        with self._lock:
            self._latest, self._fresh = (msg, now), True
        self.image_rate.tick()

    def _on_timer(self) -> None:
        now = self.get_clock().now().nanoseconds
        with self._lock:
            latest, fresh = self._latest, self._fresh
            self._fresh = False
        if latest is None or (now - latest[1]) * 1e-9 > self._stale_timeout:
            if not self.stale:
                self.get_logger().warning(
                    f'no image_sim for {self._stale_timeout} s: publishing zero velocity')
                if self.policy is not None:
                    self.policy.reset()  # the history no longer describes the present
            self.stale = True
            self.stale_periods += 1
            self._publish(0.0, 0.0)
            return
        if self.stale:
            self.get_logger().info('receiving image_sim: driving')
        self.stale = False
        if fresh:
            self._infer(*latest)
        self._publish(*self.command)

    def _infer(self, msg: Image, received_ns: int) -> None:
        try:
            rgb = self._decode(msg)
        except Exception as exc:  # noqa: BLE001 (malformed input must not stop the node)
            self.malformed += 1
            self.command = (0.0, 0.0)
            self.get_logger().warning(f'skipping malformed image_sim: {exc}',
                                      throttle_duration_sec=1.0)
            return
        try:
            t_ns = stamp_ns(msg) or received_ns  # unstamped images: their receive time
            action, (linear, angular) = self.policy.velocity(rgb, t=1e-9 * t_ns)
        except Exception as exc:  # noqa: BLE001
            self.errors += 1
            self.command = (0.0, 0.0)
            self.get_logger().error(f'policy failed: {type(exc).__name__}: {exc}',
                                    throttle_duration_sec=5.0)
            return
        self.last_action = action
        self.action_counts[action] += 1
        self.command = clamp_velocity(linear, angular, self._max_linear, self._max_angular)

    def _publish(self, linear: float, angular: float) -> None:
        pub = self._pub
        if pub is None:
            return
        twist = Twist()
        twist.linear.x, twist.angular.z = float(linear), float(angular)
        if self.params['stamped']:
            msg = TwistStamped()
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.header.frame_id = self.params['frame_id']
            msg.twist = twist
        else:
            msg = twist
        pub.publish(msg)
        self.cmd_rate.tick()

    # -- diagnostics ------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters and rates (also what /diagnostics carries)."""
        return {
            'state': 'active' if self.active else ('inactive' if self.policy else
                                                   'unconfigured'),
            'model': self.params['model'], 'stale': self.stale,
            'engine': getattr(self.policy, 'engine', ''),
            'image_rate_hz': round(self.image_rate.rate(), 2),
            'cmd_rate_hz': round(self.cmd_rate.rate(), 2),
            'last_action': ('' if self.last_action is None
                            else ACTION_NAMES[self.last_action]),
            'linear': self.command[0], 'angular': self.command[1],
            **{f'count_{n}': c for n, c in zip(ACTION_NAMES, self.action_counts)},
            'stale_periods': self.stale_periods, 'malformed': self.malformed,
            'errors': self.errors,
        }

    def _report(self) -> tuple[int, str, dict[str, Any]]:
        s = self.stats()
        if not self.active:
            return OK, s['state'], s
        if self.stale:
            return WARN, 'no fresh image_sim: holding the robot still', s
        return OK, 'driving', s


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run vr_goggles policy_node``."""
    return main_loop(PolicyNode, args)


if __name__ == '__main__':
    sys.exit(main())
