"""``goggles_node``: camera image -> simulator-style image, as a ROS 2 lifecycle node.

Topics (relative, remap them): subscribes ``image`` (sensor_msgs/Image), or
``<image>/compressed`` (sensor_msgs/CompressedImage, image_transport naming) with
``compressed_input``; publishes ``image_sim`` (rgb8, header copied from the input, never
restamped) and ``/diagnostics``. With ``floor_prior`` it also subscribes ``odom``
(nav_msgs/Odometry) and repaints the floor of each frame with the sim floor seen from the
newest pose (:mod:`vr_goggles.goggles.floor_prior`; frames before the first pose go out without
it).

With ``domain_score`` (the shipped score by default; '' turns it off) every decoded camera frame
is also scored against the goggles' training look (:mod:`vr_goggles.goggles.domain_score`,
about 0.5 ms under ONNX Runtime) and the score goes out on ``<image_sim>/domain_score``
(geometry_msgs/Vector3Stamped, the input's header: ``x`` score, ``y`` threshold, ``z`` 1.0 when
below) just before the image, for ``policy_node``'s stop; ``/diagnostics`` warns on a frame below
the threshold and reports an error after ``domain_error_frames`` of them in a row.

Design: the subscription callback only drops the message into a one-slot buffer
(``vr_goggles.nodes.latest.LatestSlot``); a worker thread decodes (codec), runs
:meth:`vr_goggles.goggles.Goggles.frame` (translation, floor prior, output size) and encodes
and publishes the newest frame. A slow engine therefore drops frames (counted) instead of
queueing them, and latency stays at about one inference. The node is a ``LifecycleNode``
(configure loads or compiles the engine, activate subscribes and starts publishing,
deactivate stops both) that configures and activates itself at start-up when ``autostart``
is true (the default), so ``ros2 run`` works without a lifecycle manager.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from geometry_msgs.msg import Vector3Stamped
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image

from vr_goggles.goggles.domain_score import is_below
from vr_goggles.goggles.floor_prior import yaw_from_quaternion
from vr_goggles.nodes.latest import LatestSlot
from vr_goggles.nodes.params import (
    DOMAIN_SCORE_TOPIC,
    GOGGLES_PARAMS,
    beside,
    parse_output_size,
    stamp_ns,
    too_old,
)
from vr_goggles.nodes.rate_stats import LatencyStats, RateMeter
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


class GogglesNode(StopReleaseLifecycleNode):
    """Translate the newest camera frame with ``vr_goggles.goggles.Goggles``."""

    def __init__(self, node_name: str = 'goggles_node', **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = declare_parameters(self, GOGGLES_PARAMS, on_change=self._on_change)
        self._output_size = parse_output_size(self.params['output_size'])
        self._max_age = float(self.params['max_age'])
        self._error_frames = int(self.params['domain_error_frames'])
        self.slot: LatestSlot = LatestSlot()
        self.input_rate = RateMeter()
        self.output_rate = RateMeter()
        self.latency = LatencyStats()  # receive -> publish
        self.engine_latency = LatencyStats()  # the Goggles call alone
        self.malformed = 0
        self.too_old = 0
        self.errors = 0
        self._reported_problems = 0
        self._warned_unstamped = False
        self.goggles = None
        self._pose: tuple[float, float, float] | None = None
        self._odom_sub = None
        self.no_odometry = 0
        self._decode = None
        self._encode = None
        self._pub = None
        self._sub = None
        self.domain_score = None  # vr_goggles.goggles.domain_score.DomainScore, when on
        self._score_pub = None
        self._score_guard = None  # diagnostics only: policy_node holds the robot
        self.score_latency = LatencyStats()
        self.frames_below = 0  # frames below the domain score threshold, in total
        self._worker: threading.Thread | None = None
        self.active = False
        self.input_topic = ''
        self.diagnostics = Diagnostics(self, 'translation', 'vr_goggles', self._report,
                                       self.params['diagnostics_period'])

    # -- parameters -------------------------------------------------------------------------
    def _on_change(self, values: dict[str, Any]) -> None:
        if 'output_size' in values:
            self._output_size = parse_output_size(values['output_size'])
        if 'max_age' in values:
            self._max_age = float(values['max_age'])
        if 'domain_error_frames' in values:
            self._error_frames = int(values['domain_error_frames'])  # the worker retunes

    # -- lifecycle --------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load (or compile) the engine and create the publisher."""
        from vr_goggles.goggles import Goggles
        from vr_goggles.image import codec

        p = self.params
        t0 = time.perf_counter()
        try:
            self.goggles = Goggles.from_model(
                model=p['model'], engine=p['engine'], device=p['device'],
                precision=p['precision'], engine_file_path=p['engine_file_path'] or None,
                force_engine_update=p['force_engine_update'])
        except Exception as exc:  # noqa: BLE001 (any load failure is a failed transition)
            self.get_logger().error(f'configure: cannot load model {p["model"]!r} with engine '
                                    f'{p["engine"]!r} on {p["device"]!r}: {exc}')
            return TransitionCallbackReturn.FAILURE
        if p['floor_prior']:
            try:
                self.goggles = self.goggles.with_floor_prior(self._make_prior())
            except Exception as exc:  # noqa: BLE001 (a failed transition, with the reason)
                self.get_logger().error(f'configure: cannot set up floor_prior: {exc}')
                return TransitionCallbackReturn.FAILURE
        scoring = ''
        if p['domain_score']:
            from vr_goggles.goggles.domain_score import DomainGuard, DomainScore

            try:
                self.domain_score = DomainScore.load(p['domain_score'],
                                                     engine=p['domain_score_engine'])
            except Exception as exc:  # noqa: BLE001 (a failed transition, with the reason)
                self.goggles = None
                self.get_logger().error(
                    f'configure: cannot load domain_score {p["domain_score"]!r} with engine '
                    f'{p["domain_score_engine"]!r}: {exc} (domain_score:="" turns the score '
                    'off)')
                return TransitionCallbackReturn.FAILURE
            # resume_after=1: the diagnostics describe the newest frames; the hysteresis of
            # the stop belongs to policy_node, which acts on it.
            self._score_guard = DomainGuard(self.domain_score.threshold,
                                            stop_after=self._error_frames, resume_after=1)
            scoring = (f', domain score {p["domain_score"]!r} on '
                       f'{self.domain_score.engine} (threshold '
                       f'{self.domain_score.threshold:.2f})')
        self._decode = (codec.compressed_to_numpy if p['compressed_input']
                        else codec.image_to_rgb)
        self._encode = codec.numpy_to_image
        qos = qos_profile(p['output_qos'])
        self._pub = self.create_lifecycle_publisher(Image, 'image_sim', qos)
        if self.domain_score is not None:
            self._score_pub = self.create_lifecycle_publisher(
                Vector3Stamped, beside(self, 'image_sim', DOMAIN_SCORE_TOPIC), qos)
        eng = self.goggles.engine
        self.get_logger().info(
            f'configured in {time.perf_counter() - t0:.2f} s: model {p["model"]!r}, engine '
            f'{eng.name} ({eng.precision}) on {eng.device}, output_size {p["output_size"]}'
            f'{scoring}')
        return TransitionCallbackReturn.SUCCESS

    def _make_prior(self):
        import nav_msgs.msg  # noqa: F401  (fail at configure, not at activate)

        from vr_goggles.goggles.floor_prior import CameraGeometry, make_floor_prior

        h, w = self.goggles.input_size
        if h != w:
            raise ValueError(f'the floor prior needs a square model input, got {h}x{w}')
        p = self.params
        camera = CameraGeometry(fov_y_deg=p['camera_fov_y'], pitch_deg=p['camera_pitch'],
                                height_m=p['camera_height'])
        paint = tuple(c.strip() for c in p['floor_paint'].split(',') if c.strip())
        return make_floor_prior(p['floor_segmenter'], int(h), camera, paint)

    def _on_odom(self, msg) -> None:
        q, pos = msg.pose.pose.orientation, msg.pose.pose.position
        yaw = yaw_from_quaternion(q.x, q.y, q.z, q.w)
        self._pose = (float(pos.x), float(pos.y), yaw)  # one reference swap: thread-safe

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe and start the inference worker."""
        p = self.params
        if p['compressed_input']:
            self.input_topic = beside(self, 'image', 'compressed')
            msg_type = CompressedImage
        else:
            self.input_topic, msg_type = 'image', Image
        if self.goggles.needs_pose:
            from nav_msgs.msg import Odometry

            self._odom_sub = self.create_subscription(Odometry, 'odom', self._on_odom, 10)
        self.slot.open()
        self._worker = threading.Thread(target=self._work, name='goggles_worker', daemon=True)
        self._worker.start()
        self._sub = self.create_subscription(msg_type, self.input_topic, self._on_image,
                                             qos_profile(p['input_qos']))
        self.input_topic = self._sub.topic_name  # resolved and remapped: what diagnostics name
        self.active = True
        self.get_logger().info(f'active: {self._sub.topic_name} -> '
                               f'{self._pub.topic_name if self._pub else "image_sim"}')
        return super().on_activate(state)

    def _stop(self) -> None:
        self.active = False
        if self._sub is not None:
            self.destroy_subscription(self._sub)
            self._sub = None
        if self._odom_sub is not None:
            self.destroy_subscription(self._odom_sub)
            self._odom_sub = None
        self.slot.close()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
            self._worker = None
        self.slot.clear()

    def _release(self) -> None:
        super()._release()
        if self._score_pub is not None:
            self.destroy_lifecycle_publisher(self._score_pub)
            self._score_pub = None
        self.goggles = None
        self.domain_score = None
        self._score_guard = None

    # -- data path --------------------------------------------------------------------------
    def _on_image(self, msg) -> None:
        # Executor thread: O(1), never blocks on the engine.
        self.input_rate.tick()
        self.slot.put((msg, time.perf_counter()))
        # Hand the GIL to the worker now: otherwise it waits for the executor's own Python
        # bookkeeping before it can start (about 0.3 ms of latency on a desktop CPU).
        time.sleep(0)

    def _work(self) -> None:
        while True:
            item = self.slot.get()
            if item is None:
                return
            try:
                self._process(*item)
            except Exception as exc:  # noqa: BLE001 (the worker must survive anything)
                self.errors += 1
                self.get_logger().error(f'translation failed: {type(exc).__name__}: {exc}',
                                        throttle_duration_sec=5.0)

    def _process(self, msg, t_received: float) -> None:
        stamp = stamp_ns(msg)
        if self._max_age <= 0:
            pass
        elif stamp == 0:
            if not self._warned_unstamped:
                self._warned_unstamped = True
                self.get_logger().warning('input frames have a zero header stamp: max_age '
                                          'cannot be applied to them')
        elif too_old(self.get_clock().now().nanoseconds, stamp, self._max_age):
            self.too_old += 1
            self.get_logger().warning(
                f'skipping frames older than max_age={self._max_age} s (is the camera clock '
                'in sync, or use_sim_time set consistently?)', throttle_duration_sec=5.0)
            return
        try:
            rgb = self._decode(msg)
        except Exception as exc:  # noqa: BLE001 (malformed input must not stop the node)
            self.malformed += 1
            self.get_logger().warning(f'skipping malformed {type(msg).__name__} '
                                      f'(frame_id {msg.header.frame_id!r}): {exc}',
                                      throttle_duration_sec=1.0)
            return
        goggles = self.goggles
        if goggles is None:
            return
        if self.domain_score is not None:
            self._score(rgb, msg.header)
        pose = self._pose
        if pose is None and goggles.needs_pose:
            self.no_odometry += 1
            self.get_logger().warning('floor_prior: no odometry on odom yet; publishing '
                                      'without it', throttle_duration_sec=5.0)
        t0 = time.perf_counter()
        out = goggles.frame(rgb, pose=pose, output_size=self._output_size)
        self.engine_latency.add(time.perf_counter() - t0)
        pub = self._pub
        if pub is None or not self.active:
            return
        pub.publish(self._encode(out, 'rgb8', header=msg.header, msg_cls=Image))
        self.slot.mark_processed()
        self.output_rate.tick()
        self.latency.add(time.perf_counter() - t_received)

    def _score(self, rgb, header) -> None:
        # Before the translation, so policy_node has the score before the image it describes.
        scorer, guard = self.domain_score, self._score_guard
        if scorer is None or guard is None:
            return
        t0 = time.perf_counter()
        score = scorer(rgb)
        self.score_latency.add(time.perf_counter() - t0)
        if guard.stop_after != self._error_frames:
            guard = self._score_guard = guard.retuned(guard.threshold, self._error_frames, 1)
        guard.update(score)
        below = is_below(score, guard.threshold)
        self.frames_below += below
        pub = self._score_pub
        if pub is None or not self.active:
            return
        out = Vector3Stamped()
        out.header = header  # the camera frame's instant: copied, never restamped
        out.vector.x, out.vector.y, out.vector.z = score, guard.threshold, float(below)
        pub.publish(out)

    # -- diagnostics ------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters and rates (also what /diagnostics carries)."""
        c = self.slot.counts()
        lat = self.latency.summary()
        eng_lat = self.engine_latency.summary()
        eng = getattr(self.goggles, 'engine', None)
        return {
            'state': 'active' if self.active else ('inactive' if self.goggles else
                                                   'unconfigured'),
            'model': self.params['model'],
            'engine': getattr(eng, 'name', ''), 'precision': getattr(eng, 'precision', ''),
            'device': getattr(eng, 'device', ''), 'input_topic': self.input_topic,
            'input_rate_hz': round(self.input_rate.rate(), 2),
            'output_rate_hz': round(self.output_rate.rate(), 2),
            'latency_p50_ms': round(lat['p50'], 2), 'latency_p99_ms': round(lat['p99'], 2),
            'engine_p50_ms': round(eng_lat['p50'], 2), 'engine_p99_ms': round(eng_lat['p99'], 2),
            'received': c.received, 'processed': c.processed, 'dropped': c.dropped,
            'too_old': self.too_old, 'malformed': self.malformed, 'errors': self.errors,
            'floor_prior': bool(self.goggles is not None and self.goggles.needs_pose),
            'no_odometry': self.no_odometry,
            **self._score_stats(),
        }

    def _score_stats(self) -> dict[str, Any]:
        guard = self._score_guard
        if guard is None:
            return {'domain_score': 'off' if not self.params['domain_score'] else 'not loaded'}
        lat = self.score_latency.summary()
        return {'domain_score': round(guard.last_score, 3),
                'domain_threshold': round(guard.threshold, 3),
                'domain_below_run': guard.below, 'domain_frames_below': self.frames_below,
                'domain_low_events': guard.stops,
                'domain_score_p50_ms': round(lat['p50'], 3)}

    def _report(self) -> tuple[int, str, dict[str, Any]]:
        s = self.stats()
        problems = s['malformed'] + s['errors'] + s['too_old']
        new_problems, self._reported_problems = problems - self._reported_problems, problems
        if not self.active:
            return OK, s['state'], s
        guard = self._score_guard
        if guard is not None and guard.stopped:
            return ERROR, guard.reason(), s
        if new_problems:
            return WARN, (f'{new_problems} frames skipped (malformed {s["malformed"]}, '
                          f'too old {s["too_old"]}, errors {s["errors"]} in total)'), s
        if s['input_rate_hz'] == 0.0:
            return WARN, f'no input on {s["input_topic"]}', s
        if guard is not None and guard.below:
            return WARN, (f'newest frame below the domain score threshold ({guard.below} in a '
                          f'row; {guard.reason()})'), s
        return OK, 'translating', s


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run vr_goggles goggles_node``."""
    return main_loop(GogglesNode, args)


if __name__ == '__main__':
    sys.exit(main())
