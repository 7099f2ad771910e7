"""``sim_bridge``: the ChairNav simulator as a fake robot, so the ROS pipeline runs end to end.

Publishes ``camera/image_raw`` (sensor_msgs/Image rgb8) at ``rate`` Hz and right after every
step, stamped with the *simulated* time: the node clock at start plus ``CONTROL_PERIOD`` per
control period (interpolated between periods), so stamps equal the node clock when
``step_period`` is ``CONTROL_PERIOD`` and stay one control period apart per step when the
simulator runs faster than real time (a frame-stacking policy paces its history by them).
It consumes ``cmd_vel`` (Twist, or TwistStamped with ``stamped``) and advances the simulator
one step per control period (``step_period``): the newest command no older than
``cmd_timeout`` is mapped to a discrete action by ``vr_goggles.policy.actions.velocity_to_action``
(a zero command means "stand still", no step).
At the end of each episode (chair reached, simulator time limit, or ``max_periods`` control
periods) it publishes a JSON summary on ``episode`` (std_msgs/String) and resets to the next
layout of the split. With nav_msgs installed it also publishes ``odom`` (nav_msgs/Odometry,
the simulator's true pose as ideal wheel odometry, REP 103) right before each frame, for
``goggles_node``'s ``floor_prior``. A plain node, not a lifecycle node: it is a test fixture,
not a driver.

Needs the ``train`` extra (gymnasium, miniworld) and a headless GL (``PYGLET_HEADLESS=1`` is set
here if unset). The simulator's GL context is bound to the thread that made it current, and a
frame rendered from any other thread is silently wrong (EGL refuses the context, GL draws
nothing, the read-back returns a stale buffer): every simulator call (construction, reset,
step, close) therefore runs on one thread the node owns, whichever thread constructed the node
and whichever executor thread runs its timers.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
import json
import math
import os
import sys
import threading
from typing import Any

from geometry_msgs.msg import Twist, TwistStamped
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String

from vr_goggles.nodes.params import SIM_BRIDGE_PARAMS
from vr_goggles.nodes.ros_common import declare_parameters, main_loop, qos_profile
from vr_goggles.policy.actions import ACTION_NAMES, CONTROL_PERIOD, velocity_to_action


def make_env(domain: str, obs_size: int, split: str, max_episode_steps: int):
    """Build the ChairNav environment and return ``(env, the split's layout seeds)``."""
    os.environ.setdefault('PYGLET_HEADLESS', '1')
    from sim_training.envs import chair_nav

    kwargs: dict[str, Any] = {'domain': domain, 'obs_size': obs_size, 'split': split}
    if max_episode_steps:
        kwargs['max_episode_steps'] = max_episode_steps
    seeds = chair_nav.EVAL_SEEDS if split == 'eval' else chair_nav.TRAIN_SEEDS
    return chair_nav.ChairNavEnv(**kwargs), seeds


class SimBridge(Node):
    """Step the simulator from ``cmd_vel`` and publish its camera and episode results."""

    def __init__(self, node_name: str = 'sim_bridge', **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = p = declare_parameters(self, SIM_BRIDGE_PARAMS,
                                             on_change=self._on_change)
        self._cmd_timeout = float(p['cmd_timeout'])
        # The one thread that owns the simulator and its GL context (see the module docstring).
        self._sim = ThreadPoolExecutor(max_workers=1, thread_name_prefix='sim_bridge_gl')
        self.env, self.seeds = self._in_sim(make_env, p['domain'], p['obs_size'], p['split'],
                                            p['max_episode_steps'])
        from vr_goggles.image.codec import numpy_to_image
        self._encode = numpy_to_image
        self._lock = threading.Lock()
        self._cmd: tuple[float, float, int] | None = None  # (linear, angular, receive ns)
        self.results: list[dict[str, Any]] = []
        self.episode = 0
        self.done = False
        self.finished = False
        limit = p['max_episode_steps'] or getattr(self.env, 'max_episode_steps', None) or 500
        self._max_periods = p['max_periods'] or 4 * int(limit)
        # Simulated clock (see the module docstring): control periods so far, and when the
        # last one started on the node clock.
        self._t0_ns = self._tick_ns = self.get_clock().now().nanoseconds
        self._ticks = 0
        self._cam = self.create_publisher(Image, 'camera/image_raw', qos_profile('sensor_data'))
        self._odom = self._odom_msg = None
        try:  # the true pose as ideal wheel odometry (goggles_node's floor_prior reads it)
            from nav_msgs.msg import Odometry
        except ImportError:
            self.get_logger().info('nav_msgs not installed: not publishing odom')
        else:
            self._odom_msg = Odometry
            self._odom = self.create_publisher(Odometry, 'odom', 10)
        self._episode_pub = self.create_publisher(String, 'episode', 10)
        cmd_type = TwistStamped if p['stamped'] else Twist
        self.create_subscription(cmd_type, 'cmd_vel', self._on_cmd, qos_profile('sensor_data'))
        self._reset()
        self.create_timer(p['step_period'], self._on_step)
        self.create_timer(1.0 / p['rate'], self._publish_frame)
        self.get_logger().info(
            f'ChairNav domain={p["domain"]} split={p["split"]}: {len(self.seeds)} layouts, '
            f'one step per {p["step_period"]} s, camera {p["rate"]} Hz')

    def _in_sim(self, fn, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the simulator thread and return its result (or raise its error)."""
        return self._sim.submit(fn, *args, **kwargs).result()

    def _on_change(self, values: dict[str, Any]) -> None:
        self._cmd_timeout = float(values.get('cmd_timeout', self._cmd_timeout))

    def _on_cmd(self, msg) -> None:
        twist = msg.twist if isinstance(msg, TwistStamped) else msg
        with self._lock:
            self._cmd = (twist.linear.x, twist.angular.z, self.get_clock().now().nanoseconds)

    # -- episodes ---------------------------------------------------------------------------
    def _reset(self) -> None:
        k = self.params['seed'] + self.episode
        self.layout_seed = int(self.seeds[k % len(self.seeds)])
        self.obs, info = self._in_sim(self.env.reset, seed=self.layout_seed)
        self._start = info
        self._pos = info.get('agent_pos')
        self._dir = info.get('agent_dir')
        self.path_length = 0.0
        self.steps = self.periods = 0
        self.action_counts = [0] * len(ACTION_NAMES)
        with self._lock:
            self._cmd = None  # a command computed for the previous episode's view
        self._publish_frame()

    def _finish(self, info: dict[str, Any], reason: str) -> None:
        success = bool(info.get('success', False))
        start = float(info.get('start_distance', self._start.get('start_distance', math.nan)))
        # Prefer the simulator's own SPL reference and odometry, as sim_training's evaluation.
        shortest = float(info.get('shortest_path', start))
        path = float(info.get('path_length', self.path_length))
        spl = (shortest / max(shortest, path, 1e-9) if success and math.isfinite(shortest)
               else 0.0)
        result = {
            'episode': self.episode, 'layout_seed': self.layout_seed, 'success': success,
            'reason': reason, 'steps': self.steps, 'periods': self.periods,
            'distance': _num(info.get('distance')), 'start_distance': _num(start),
            'shortest_path': _num(shortest), 'path_length': round(path, 4),
            'spl': round(spl, 4),
            'collisions': int(info.get('collisions', 0) or 0),
            'actions': dict(zip(ACTION_NAMES, self.action_counts)),
        }
        self.results.append(result)
        self._episode_pub.publish(String(data=json.dumps(result)))
        self.get_logger().info(f'episode {self.episode}: {reason}, {self.steps} steps')
        self.episode += 1
        if self.params['episodes'] and self.episode >= self.params['episodes']:
            self.done = True
            self.finished = True  # main_loop ends the process (sim.launch.py: the whole launch)
            self.get_logger().info(
                f'{self.episode} episodes done: success rate '
                f'{sum(r["success"] for r in self.results) / len(self.results):.2f}')
            return
        self._reset()

    def _on_step(self) -> None:
        if self.done or self._sim is None:
            return
        now = self.get_clock().now().nanoseconds
        self._ticks, self._tick_ns = self._ticks + 1, now
        with self._lock:
            cmd = self._cmd
        action = None
        if cmd is not None and (now - cmd[2]) * 1e-9 <= self._cmd_timeout:
            action = velocity_to_action(cmd[0], cmd[1])
        self.periods += 1
        if action is not None:
            self.obs, _, terminated, truncated, info = self._in_sim(self.env.step, action)
            self.steps += 1
            self.action_counts[action] += 1
            pos = info.get('agent_pos')
            if pos is not None and self._pos is not None:
                self.path_length += math.dist(_xz(pos), _xz(self._pos))
            self._pos, self._dir = pos, info.get('agent_dir')
            self._publish_frame()
            if terminated or truncated:
                self._finish(info, 'success' if info.get('success') else
                             ('terminated' if terminated else 'timeout'))
                return
        if self.periods >= self._max_periods:
            self._finish({'success': False, **self._last_info()}, 'timeout')

    def _last_info(self) -> dict[str, Any]:
        return {'start_distance': self._start.get('start_distance', math.nan)}

    def sim_time_ns(self, now_ns: int) -> int:
        """Simulated time at node-clock time ``now_ns`` (monotonic, CONTROL_PERIOD per tick)."""
        period_ns = int(CONTROL_PERIOD * 1e9)
        frac = (now_ns - self._tick_ns) * CONTROL_PERIOD / self.params['step_period']
        return (self._t0_ns + self._ticks * period_ns
                + int(min(max(frac, 0.0), 0.999 * CONTROL_PERIOD * 1e9)))

    def _publish_frame(self) -> None:
        t = self.sim_time_ns(self.get_clock().now().nanoseconds)
        header = Header(frame_id=self.params['frame_id'])
        header.stamp.sec, header.stamp.nanosec = divmod(t, 10**9)
        if self._odom is not None and self._pos is not None and self._dir is not None:
            odom = self._odom_msg()
            odom.header.stamp = header.stamp
            odom.header.frame_id, odom.child_frame_id = 'odom', 'base_link'
            x, y = (float(v) for v in _xz(self._pos))  # REP 103: x forward, y left
            odom.pose.pose.position.x, odom.pose.pose.position.y = x, y
            yaw = float(self._dir)
            odom.pose.pose.orientation.z = math.sin(yaw / 2.0)
            odom.pose.pose.orientation.w = math.cos(yaw / 2.0)
            self._odom.publish(odom)  # before the frame it belongs to
        self._cam.publish(self._encode(self.obs, 'rgb8', header=header, msg_cls=Image))

    def close(self) -> None:
        """Close the simulator window/context (called by ``main``)."""
        sim, self._sim = self._sim, None
        if sim is None:  # already closed
            return
        close = getattr(self.env, 'close', None)
        try:
            if close is not None:
                sim.submit(close).result()
        finally:
            sim.shutdown(wait=True)


def _num(x: Any) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return round(x, 4) if math.isfinite(x) else None


def _xz(pos: Any) -> tuple[float, ...]:
    """Ground-plane coordinates of a miniworld position (x, y, z) or a 2-D position."""
    seq = [float(v) for v in pos]
    return (seq[0], seq[2]) if len(seq) == 3 else tuple(seq)


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run vr_goggles sim_bridge``."""
    return main_loop(SimBridge, args)


if __name__ == '__main__':
    sys.exit(main())
