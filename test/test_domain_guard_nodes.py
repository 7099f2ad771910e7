"""The domain-score stop over real DDS: goggles_node scores, policy_node holds the robot (#37).

goggles_node publishes each camera frame's score on ``image_sim/domain_score``
(geometry_msgs/Vector3Stamped, the frame's header); policy_node stops after
``domain_stop_frames`` low scores and drives again after ``domain_resume_frames`` good ones.
The harness (private domain, loopback, one executor thread) is test_ros_nodes.py's.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')

from geometry_msgs.msg import Twist, Vector3Stamped  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
import test_ros_nodes as ros  # noqa: E402
from test_ros_nodes import collector, frame, key, wait_for, wait_matched  # noqa: E402

from vr_goggles.image.codec import numpy_to_image  # noqa: E402
from vr_goggles.nodes.ros_common import ERROR, OK, WARN  # noqa: E402

# test_ros_nodes' fixtures: its private domain, rclpy context, tiny weights and harness.
ros_env, ctx, tiny, h = ros.ros_env, ros.ctx, ros.tiny, ros.h

pytestmark = [pytest.mark.ros, pytest.mark.timeout(120)]

#: The shipped score's calibrated threshold (vr_goggles/weights/domain_score.json).
THRESHOLD = -6.306696996688843


@pytest.fixture(scope='module')
def scorer():
    """The shipped score as goggles_node loads it by default."""
    from vr_goggles.goggles.domain_score import DomainScore

    return DomainScore.load()


def camera(h, img: np.ndarray, frame_id: str) -> Image:
    """An rgb8 camera frame stamped now."""
    header = Header(frame_id=frame_id)
    header.stamp = h.tester.get_clock().now().to_msg()
    return numpy_to_image(img, 'rgb8', header=header, msg_cls=Image)


def room(seed: int, size: int = 96) -> np.ndarray:
    """An in-domain-looking camera frame (the reaction bench's drawn room)."""
    from vr_goggles.bench.reaction import room_frame

    return room_frame(np.random.default_rng(seed), size)


# -- goggles_node -------------------------------------------------------------------------------
def test_goggles_node_publishes_each_frames_score_with_its_header(h, tiny, scorer):
    """Score, threshold and below flag per frame, on the input's header; diagnostics follow."""
    node = h.goggles(tiny, input_qos='reliable', output_qos='reliable', domain_error_frames=2)
    assert node.domain_score.threshold == pytest.approx(THRESHOLD)
    scores = collector(h, Vector3Stamped, h.topic('image_sim/domain_score'), QoSProfile(depth=20))
    images = collector(h, Image, h.topic('image_sim'), QoSProfile(depth=20))
    pub = h.tester.create_publisher(Image, h.topic('image'), QoSProfile(depth=20))
    wait_matched(pub)
    assert wait_for(lambda: node._score_pub.get_subscription_count() >= 1)
    assert wait_for(lambda: node._pub.get_subscription_count() >= 1)
    black = np.zeros((96, 128, 3), np.uint8)
    sent = []
    for i, (img, fid) in enumerate([(room(1), 'cam_room'), (black, 'cam_black'),
                                    (black, 'cam_black2'), (room(2), 'cam_room2')]):
        msg = camera(h, img, fid)
        sent.append((img, msg.header))
        pub.publish(msg)
        assert wait_for(lambda i=i: len(scores) == i + 1 == len(images), 10), i
        level, text, values = node._report()
        if i == 0:
            assert values['domain_frames_below'] == 0
        elif i == 1:  # one low frame: a warning
            assert level == WARN and 'below the domain score threshold' in text
        elif i == 2:  # domain_error_frames in a row: the guard's reason as an error
            assert level == ERROR and 'below threshold -6.31 for 2 frames' in text
            assert values['domain_low_events'] == 1 and values['domain_below_run'] == 2
        else:  # a good frame clears it; the counts stay
            assert level != ERROR and 'below the domain score' not in text
            assert values['domain_frames_below'] == 2 and values['domain_low_events'] == 1
    for (img, header), (_, m) in zip(sent, scores):
        assert m.header.frame_id == header.frame_id
        assert key(m.header.stamp) == key(header.stamp)  # copied, never restamped
        want = scorer(img)
        assert m.vector.x == pytest.approx(want, abs=1e-4)
        assert m.vector.y == pytest.approx(THRESHOLD)
        assert m.vector.z == (1.0 if want < THRESHOLD else 0.0)
    assert [m.vector.z for _, m in scores] == [0.0, 1.0, 1.0, 0.0]
    assert scores[1][1].vector.x < -10  # a black frame: far below
    # each score is published before the image of the same frame
    assert [key(m.header.stamp) for _, m in images] == [key(m.header.stamp) for _, m in scores]


def test_goggles_node_scores_before_translating_and_off_switch(ctx, tiny, capfd):
    """The score goes out before the image; '' publishes none; a bad file fails configure."""
    from rclpy.lifecycle import TransitionCallbackReturn as R

    from vr_goggles.nodes.goggles_node import GogglesNode

    class Capture:
        def __init__(self, log):
            self.log = log

        def publish(self, msg):
            self.log.append(msg)

    def make(ns, **params):
        params = {'model': tiny['gen'], 'engine': 'torch', 'autostart': False, **params}
        return GogglesNode(context=ctx, namespace=ns, parameter_overrides=[
            Parameter(k, value=v) for k, v in params.items()])

    nodes = [make('/ds_on'), make('/ds_off', domain_score=''),
             make('/ds_bad', domain_score=str(tiny['dir'] / 'nothing_here'))]
    try:
        on, off, bad = nodes
        for node in (on, off):
            assert node.trigger_configure() == R.SUCCESS
        order: list = []
        on._pub, on._score_pub, on.active = Capture(order), Capture(order), True
        img = np.zeros((48, 64, 3), np.uint8)
        header = Header(frame_id='camera')
        header.stamp = on.get_clock().now().to_msg()
        camera_msg = numpy_to_image(img, 'rgb8', header=header, msg_cls=Image)
        on._process(camera_msg, 0.0)
        assert [type(m).__name__ for m in order] == ['Vector3Stamped', 'Image']
        assert order[0].header == camera_msg.header and order[0].vector.z == 1.0
        # off: no scorer, no publisher on the topic, nothing in the diagnostics but 'off'
        assert off.domain_score is None and off._score_pub is None
        assert off.stats()['domain_score'] == 'off'
        off._pub, off.active = Capture(order), True
        n = len(order)
        off._process(camera_msg, 0.0)
        assert [type(m).__name__ for m in order[n:]] == ['Image']
        # a missing score file: configure fails, naming the parameter and the file
        assert bad.trigger_configure() == R.FAILURE
        assert bad.domain_score is None and bad.goggles is None
        err = capfd.readouterr().err
        assert 'cannot load domain_score' in err and 'nothing_here' in err
    finally:
        for node in nodes:
            node.destroy_node()


# -- policy_node --------------------------------------------------------------------------------
class Scores:
    """Publishes score messages to policy_node one at a time, each confirmed by its counter."""

    def __init__(self, h, node):
        self.h, self.node = h, node
        self.pub = h.tester.create_publisher(Vector3Stamped, h.topic('image_sim/domain_score'),
                                             QoSProfile(depth=50))
        wait_matched(self.pub)

    def send(self, score: float, n: int = 1) -> None:
        """``n`` messages with ``score`` and the shipped threshold."""
        for _ in range(n):
            want = self.node.scores + 1
            msg = Vector3Stamped()
            msg.header.stamp = self.h.tester.get_clock().now().to_msg()
            msg.vector.x, msg.vector.y = float(score), THRESHOLD
            msg.vector.z = float(score < THRESHOLD)
            self.pub.publish(msg)
            assert wait_for(lambda want=want: self.node.scores >= want, 5), 'score lost'


class Camera:
    """image_sim frames at about 20 Hz from a thread, so the policy keeps deciding."""

    def __init__(self, h, rng):
        import threading

        self.pub = h.tester.create_publisher(Image, h.topic('image_sim'), QoSProfile(depth=5))
        wait_matched(self.pub)
        self.running = True
        msgs = [frame(h, rng, hw=(64, 64)) for _ in range(4)]

        def loop():
            i = 0
            while self.running:
                msg = msgs[i % len(msgs)]
                msg.header.stamp = h.tester.get_clock().now().to_msg()
                self.pub.publish(msg)
                i += 1
                time.sleep(0.05)

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()

    def stop(self):
        """End the stream."""
        self.running = False
        self.thread.join(timeout=2)


def moving(m: Twist) -> bool:
    """Whether a command moves the robot (the tiny policy's every action does)."""
    return m.linear.x != 0.0 or m.angular.z != 0.0


def commands_after(got, t0: float) -> list[Twist]:
    """Commands received after ``t0``."""
    return [m for t, m in got if t > t0]


def test_policy_node_holds_the_robot_on_low_scores_and_drives_again(h, tiny, rng, capfd):
    """domain_stop_frames low scores: zero Twist, ERROR; domain_resume_frames good: driving."""
    pytest.importorskip('diagnostic_msgs')
    from diagnostic_msgs.msg import DiagnosticArray

    node = h.policy(tiny, rate=20.0, stale_timeout=1.0, input_qos='reliable')
    got = collector(h, Twist, h.topic('cmd_vel'), QoSProfile(depth=1000))
    diags = collector(h, DiagnosticArray, '/diagnostics', QoSProfile(depth=50))
    cam = Camera(h, rng)
    try:
        scores = Scores(h, node)
        resets = []
        reset = node.policy.reset
        node.policy.reset = lambda: (resets.append(time.perf_counter()), reset())[1]
        # No score yet: drives as without the stop, and says the score is absent.
        assert wait_for(lambda: any(moving(m) for _, m in got), 10), 'never drove'
        level, text, values = node._report()
        assert level == OK and 'no domain score' in text and values['domain_score'] == 'absent'
        # One short of the stop: still driving.
        scores.send(0.5, 2)
        scores.send(-12.0, 4)
        time.sleep(0.3)
        t = time.perf_counter()
        assert wait_for(lambda: any(moving(m) for m in commands_after(got, t)), 2)
        assert not node.held
        # The 5th low score in a row: held still, zero velocity at once and on every tick.
        scores.send(-12.0)
        assert wait_for(lambda: node.held, 2)
        t_held = time.perf_counter()
        time.sleep(0.6)
        after = commands_after(got, t_held + 0.05)
        assert len(after) >= 5 and not any(moving(m) for m in after), 'drove while held'
        level, text, values = node._report()
        assert level == ERROR and 'below threshold -6.31 for 5 frames' in text
        assert values['domain_held'] and values['domain_stops'] == 1
        assert wait_for(lambda: any(
            st.name.startswith('policy_node') and st.level == bytes([ERROR])
            and 'below threshold' in st.message for _, a in diags for st in a.status), 5)
        # Seven good scores: still held; the eighth releases it, the history restarts.
        n_resets = len(resets)
        scores.send(0.5, 7)
        time.sleep(0.2)
        recent = commands_after(got, time.perf_counter() - 0.1)
        assert node.held and not any(moving(m) for m in recent)
        scores.send(0.5)
        t_free = time.perf_counter()
        assert wait_for(lambda: any(moving(m) for m in commands_after(got, t_free)), 3)
        assert not node.held and len(resets) == n_resets + 1
        assert node._report()[0] == OK
    finally:
        cam.stop()
    err = capfd.readouterr().err
    assert err.count('holding the robot still: domain score') == 1
    assert err.count('driving again') == 1


def test_policy_node_switch_shift_and_counts_are_dynamic(h, tiny, rng):
    """stop_on_domain_score false never stops; the shift and the counts apply at run time."""
    node = h.policy(tiny, rate=20.0, stale_timeout=1.0, input_qos='reliable',
                    stop_on_domain_score=False)
    got = collector(h, Twist, h.topic('cmd_vel'), QoSProfile(depth=1000))
    cam = Camera(h, rng)
    try:
        scores = Scores(h, node)
        assert wait_for(lambda: any(moving(m) for _, m in got), 10), 'never drove'
        scores.send(-12.0, 10)  # the guard would stop; the switch is off
        time.sleep(0.3)
        t = time.perf_counter()
        assert wait_for(lambda: any(moving(m) for m in commands_after(got, t)), 2)
        assert node._guard.stopped and not node.held
        level, text, _ = node._report()
        assert level == OK and 'not gating' in text
        # Switched on at run time: the guard already says stop, the next tick holds.
        assert node.set_parameters([Parameter('stop_on_domain_score', value=True)])[0].successful
        assert wait_for(lambda: node.held, 2)
        t_held = time.perf_counter()
        time.sleep(0.3)
        assert not any(moving(m) for m in commands_after(got, t_held + 0.05))
        # A run-time change of the counts never releases by itself; fewer frames then do.
        assert node.set_parameters([Parameter('domain_resume_frames', value=2)])[0].successful
        assert node.held
        scores.send(0.5, 2)
        assert wait_for(lambda: not node.held, 2)
        # A threshold shift of -10: -12 is now above the threshold (-16.3), no stop.
        assert node.set_parameters([Parameter('domain_threshold_shift', value=-10.0)])[
            0].successful
        assert not node.set_parameters([Parameter('domain_stop_frames', value=0)])[0].successful
        scores.send(-12.0, 6)
        assert node._guard.threshold == pytest.approx(THRESHOLD - 10.0)
        assert not node.held and node._guard.below == 0
        scores.send(-17.0, 5)
        assert wait_for(lambda: node.held, 2)
    finally:
        cam.stop()
