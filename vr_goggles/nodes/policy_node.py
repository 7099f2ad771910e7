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

It also subscribes ``<image_sim>/domain_score`` (geometry_msgs/Vector3Stamped from
``goggles_node``: ``x`` score, ``y`` threshold) and feeds each score to a
:class:`vr_goggles.goggles.domain_score.DomainGuard`. With ``stop_on_domain_score`` (the default),
after ``domain_stop_frames`` scores in a row below the threshold (plus
``domain_threshold_shift``) it holds the robot still, with zero velocity at once and on every
tick, until ``domain_resume_frames`` scores in a row are at or above it; then the policy history
restarts, as after a stale period. Without any score message (scoring off in goggles_node) it
drives as before and says so in ``/diagnostics``.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from geometry_msgs.msg import Twist, TwistStamped, Vector3Stamped
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import Image

from vr_goggles.goggles.domain_score import DomainGuard
from vr_goggles.nodes.params import (
    DOMAIN_SCORE_TOPIC,
    POLICY_PARAMS,
    beside,
    clamp_velocity,
    stamp_ns,
)
from vr_goggles.nodes.rate_stats import RateMeter
from vr_goggles.nodes.ros_common import (
    ERROR,
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
        self._stop_on = bool(self.params['stop_on_domain_score'])
        self._stop_frames = int(self.params['domain_stop_frames'])
        self._resume_frames = int(self.params['domain_resume_frames'])
        self._shift = float(self.params['domain_threshold_shift'])
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
        # The domain-score stop (all under self._lock): guard None until the first score.
        self._score_sub = None
        self.score_topic = ''
        self._guard = None
        self._msg_threshold = 0.0  # the threshold the last score message carried
        self._score_ns = 0  # node clock at the last score message
        self.scores = 0
        self.held = False  # holding the robot still on the domain score (as last logged)
        self.held_periods = 0
        self._restart_policy = False
        self.diagnostics = Diagnostics(self, 'policy', 'vr_goggles', self._report, 1.0)

    def _on_change(self, values: dict[str, Any]) -> None:
        self._max_linear = float(values.get('max_linear', self._max_linear))
        self._max_angular = float(values.get('max_angular', self._max_angular))
        self._stale_timeout = float(values.get('stale_timeout', self._stale_timeout))
        with self._lock:  # the next tick applies the switch, the next score the counts
            self._stop_on = bool(values.get('stop_on_domain_score', self._stop_on))
            self._stop_frames = int(values.get('domain_stop_frames', self._stop_frames))
            self._resume_frames = int(values.get('domain_resume_frames', self._resume_frames))
            self._shift = float(values.get('domain_threshold_shift', self._shift))
            if self._guard is not None:
                self._retune()

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
            self._guard, self.held, self._restart_policy = None, False, False
        if self.policy is not None:
            self.policy.reset()
        qos = qos_profile(self.params['input_qos'])
        self._sub = self.create_subscription(Image, 'image_sim', self._on_image, qos)
        self._score_sub = self.create_subscription(
            Vector3Stamped, beside(self, 'image_sim', DOMAIN_SCORE_TOPIC), self._on_score, qos)
        self.score_topic = self._score_sub.topic_name
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
        if self._score_sub is not None:
            self.destroy_subscription(self._score_sub)
            self._score_sub = None
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

    def _on_score(self, msg: Vector3Stamped) -> None:
        now = self.get_clock().now().nanoseconds
        with self._lock:
            self._msg_threshold = float(msg.vector.y)
            self._retune()
            self._guard.update(float(msg.vector.x))
            self.scores += 1
            self._score_ns = now
            stopped_now = self._update_hold() and self.held
        if stopped_now and self.active:
            self._publish(0.0, 0.0)  # now, not at the next tick

    def _retune(self) -> None:
        # Under self._lock: the guard for the carried threshold and the current parameters.
        threshold = self._msg_threshold + self._shift
        self._guard = (DomainGuard(threshold, self._stop_frames, self._resume_frames)
                       if self._guard is None else
                       self._guard.retuned(threshold, self._stop_frames, self._resume_frames))

    def _update_hold(self) -> bool:
        """Under self._lock: apply the guard and the switch; True when the hold flipped.

        Logs the one line of each flip; a release restarts the policy history (at the next
        tick, in the thread that runs the policy) and forgets the command from before the stop.
        """
        guard = self._guard
        held = self._stop_on and guard is not None and guard.stopped
        if held == self.held:
            return False
        self.held = held
        self.command = (0.0, 0.0)
        if held:
            self.get_logger().warning(f'holding the robot still: {guard.reason()}')
        else:
            self._restart_policy = True
            why = (guard.reason() if guard is not None and not guard.stopped
                   else 'stop_on_domain_score is false')
            self.get_logger().info(f'driving again: {why}')
        return True

    def _on_timer(self) -> None:
        now = self.get_clock().now().nanoseconds
        with self._lock:
            latest, fresh = self._latest, self._fresh
            self._fresh = False
            self._update_hold()
            held, restart = self.held, self._restart_policy
            self._restart_policy = False
        if restart and self.policy is not None:
            self.policy.reset()  # frames from before the stop no longer describe the present
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
            self.get_logger().info('receiving image_sim' + (
                ' (held still on the domain score)' if held else ': driving'))
        self.stale = False
        if held:
            self.held_periods += 1
            self._publish(0.0, 0.0)
            return
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
            'errors': self.errors, **self._score_stats(),
        }

    def _score_stats(self) -> dict[str, Any]:
        guard = self._guard
        out: dict[str, Any] = {'stop_on_domain_score': self._stop_on,
                               'domain_score_topic': self.score_topic,
                               'domain_held': self.held, 'held_periods': self.held_periods,
                               'domain_scores': self.scores}
        if guard is None:
            return {**out, 'domain_score': 'absent'}
        age = (self.get_clock().now().nanoseconds - self._score_ns) * 1e-9
        return {**out, 'domain_score': round(guard.last_score, 3),
                'domain_threshold': round(guard.threshold, 3),
                'domain_below_run': guard.below, 'domain_stops': guard.stops,
                'domain_score_age_s': round(age, 3)}

    def _report(self) -> tuple[int, str, dict[str, Any]]:
        s = self.stats()
        if not self.active:
            return OK, s['state'], s
        guard = self._guard
        if self.held and guard is not None:
            return ERROR, f'holding the robot still: {guard.reason()}', s
        if self.stale:
            return WARN, 'no fresh image_sim: holding the robot still', s
        if guard is None:
            return OK, f'driving (no domain score on {self.score_topic}: not gating)', s
        if s['domain_score_age_s'] > self._stale_timeout:
            return WARN, (f'no domain score for {s["domain_score_age_s"]:.1f} s while '
                          f'image_sim is fresh: not gating on it'), s
        if not self._stop_on:
            return OK, 'driving (stop_on_domain_score false: not gating)', s
        return OK, 'driving', s


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run vr_goggles policy_node``."""
    return main_loop(PolicyNode, args)


if __name__ == '__main__':
    sys.exit(main())
