"""The ROS nodes over real DDS (rclpy from the PyPI wheels), on loopback in a private domain.

Nodes run in-process (a MultiThreadedExecutor thread) so a test can inject a deliberately slow
engine and read counters; one test runs them as real processes (``python -m ...``) to cover
``main()``, parameters from the command line, the log output and the shutdown behaviour.
Every node lives in its own namespace so tests never see each other's traffic.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')

from geometry_msgs.msg import Twist, TwistStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header, String  # noqa: E402

from vr_goggles.image.codec import numpy_to_compressed, numpy_to_image  # noqa: E402
from vr_goggles.nodes.ros_common import autostart  # noqa: E402
from vr_goggles.policy.actions import CONTROL_PERIOD  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.timeout(120)]

DOMAIN = random.Random(os.getpid() ^ time.time_ns()).randint(100, 200)
_ns = itertools.count()


@pytest.fixture(scope='module')
def ros_env():
    """A private DDS domain on loopback, set before rclpy.init (and for subprocesses)."""
    new = {'ROS_DOMAIN_ID': str(DOMAIN), 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}
    if os.environ.get('ROS_DISTRO') == 'humble':  # Humble predates the discovery range
        new['ROS_LOCALHOST_ONLY'] = '1'
    saved = {k: os.environ.get(k) for k in new}
    os.environ.update(new)
    yield dict(os.environ)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope='module')
def ctx(ros_env):
    """An rclpy context of its own (other test modules may use the default one)."""
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN)
    yield context
    context.try_shutdown()


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """Tiny generator and policy weights saved with the real ``vr_goggles.weights.save``."""
    import torch

    from vr_goggles import models, weights

    torch.set_num_threads(1)
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp('weights')
    gen_kw = {'ngf': 4, 'n_blocks': 1, 'n_down': 2}
    gen = models.build('ResnetGenerator', **gen_kw)
    weights.save(d / 'gen', gen.state_dict(), weights.ModelCard(
        name='gen', architecture='ResnetGenerator', kwargs=gen_kw, input_size=[64, 64]))
    pol_kw = {'input_size': [64, 64], 'channels': [4, 8, 8], 'features_dim': 16}
    pol = models.build('NavActor', **pol_kw)
    weights.save(d / 'pol', pol.state_dict(), weights.ModelCard(
        name='pol', architecture='NavActor', kwargs=pol_kw, input_size=[64, 64]))
    pol2_kw = {**pol_kw, 'in_channels': 6}  # two stacked frames
    pol2 = models.build('NavActor', **pol2_kw)
    weights.save(d / 'pol2', pol2.state_dict(), weights.ModelCard(
        name='pol2', architecture='NavActor', kwargs=pol2_kw, input_size=[64, 64],
        extra={'frame_stack': 2, 'control_period_s': 0.5}))
    return {'gen': str(d / 'gen'), 'pol': str(d / 'pol'), 'pol2': str(d / 'pol2'), 'dir': d}


class Harness:
    """Nodes under test plus a tester node, spun by one executor thread."""

    def __init__(self, context):
        self.ctx = context
        self.ns = f'/t{next(_ns)}'
        # One executor thread, as ``main()`` uses: lifecycle transitions (``call``) then run in
        # the thread that waits on the entities they create and destroy.
        self.executor = SingleThreadedExecutor(context=context)
        self.tester = rclpy.create_node(f'tester{self.ns[2:]}', context=context)
        self.nodes = []
        self.executor.add_node(self.tester)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def topic(self, name: str) -> str:
        """Absolute name of a topic in this test's namespace."""
        return f'{self.ns}/{name}'

    def add(self, node, start: bool = True):
        """Spin ``node``; autostart it (configure + activate) unless ``start`` is False."""
        if start:
            assert autostart(node)
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def goggles(self, tiny, start=True, cli_args=None, **params):
        """A GogglesNode on the tiny generator with the torch engine."""
        from vr_goggles.nodes.goggles_node import GogglesNode

        params = {'model': tiny['gen'], 'engine': 'torch', **params}
        return self.add(GogglesNode(
            namespace=self.ns, context=self.ctx, cli_args=cli_args,
            parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]), start)

    def policy(self, tiny, **params):
        """A PolicyNode on the tiny policy."""
        from vr_goggles.nodes.policy_node import PolicyNode

        params = {'model': tiny['pol'], **params}
        return self.add(PolicyNode(
            namespace=self.ns, context=self.ctx,
            parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]))

    def call(self, fn, timeout: float = 10.0):
        """Run ``fn()`` in the executor thread (as a lifecycle service call would) and return."""
        task = self.executor.create_task(fn)
        assert wait_for(task.done, timeout), 'executor did not run the call'
        return task.result()

    def close(self):
        """Stop the executor, then the nodes (which publish their last messages)."""
        self.executor.shutdown(timeout_sec=2)
        self.thread.join(timeout=5)
        for node in self.nodes:
            node.close()
        for node in [*self.nodes, self.tester]:
            node.destroy_node()


@pytest.fixture
def h(ctx):
    """A fresh harness in a fresh namespace."""
    harness = Harness(ctx)
    yield harness
    harness.close()


def wait_for(pred, timeout: float = 10.0, step: float = 0.01) -> bool:
    """Poll ``pred`` until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


def wait_matched(pub, n: int = 1, timeout: float = 10.0) -> None:
    """Wait for discovery: ``pub`` sees ``n`` subscriptions."""
    assert wait_for(lambda: pub.get_subscription_count() >= n, timeout), 'no subscriber'


def frame(h, rng, hw=(96, 128), stamp=None, frame_id='camera', encoding='rgb8'):
    """A random rgb8 Image stamped now (node clock) unless ``stamp`` is given."""
    header = Header(frame_id=frame_id)
    header.stamp = stamp if stamp is not None else h.tester.get_clock().now().to_msg()
    img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    return numpy_to_image(img, encoding, header=header, msg_cls=Image)


def key(stamp) -> tuple[int, int]:
    """Hashable stamp."""
    return stamp.sec, stamp.nanosec


def collector(h, msg_type, topic, qos=None):
    """Subscribe the tester to ``topic``; returns the list messages are appended to."""
    got: list = []
    h.tester.create_subscription(msg_type, topic, lambda m: got.append((time.perf_counter(), m)),
                                 qos or qos_profile_sensor_data)
    return got


# -- goggles_node -------------------------------------------------------------------------------
def test_frames_in_translated_frames_out_with_the_same_headers(h, tiny, rng):
    """N frames at 30 Hz -> N rgb8 frames at the model size, stamps and frame_id copied."""
    node = h.goggles(tiny, input_qos='reliable', output_qos='reliable')
    out = collector(h, Image, h.topic('image_sim'), QoSProfile(depth=50))
    pub = h.tester.create_publisher(Image, h.topic('image'), QoSProfile(depth=50))
    wait_matched(pub)
    assert wait_for(lambda: node._pub.get_subscription_count() >= 1)
    sent = []
    for _ in range(20):
        msg = frame(h, rng)
        sent.append(key(msg.header.stamp))
        pub.publish(msg)
        time.sleep(1 / 30)
    c = lambda: node.slot.counts()  # noqa: E731
    done = lambda: c().taken == 20 - c().dropped and len(out) == c().processed  # noqa: E731
    assert wait_for(done, 10), (c(), len(out))
    assert c().received == 20
    assert len(out) >= 15, f'{c()}'  # only a starved CPU drops a frame at 30 Hz
    got = [key(m.header.stamp) for _, m in out]
    assert got == [s for s in sent if s in set(got)], 'stamps changed or reordered'
    for _, m in out:
        assert (m.height, m.width, m.encoding, m.step) == (64, 64, 'rgb8', 64 * 3)
        assert m.header.frame_id == 'camera' and len(m.data) == 64 * 64 * 3
    s = node.stats()
    assert s['engine'] == 'torch' and s['state'] == 'active' and s['malformed'] == 0


def test_floor_prior_repaints_the_floor_from_odometry(h, tiny):
    """floor_prior repaints the segmented floor with the sim floor seen from the odom pose.

    Before any odometry the frame goes out plain (counted); after a pose on odom, the pixels
    segmenter_dr calls floor are exactly the sim floor rendered from it.
    """
    import nav_msgs.msg as nav_msgs

    from vr_goggles.goggles import Goggles
    from vr_goggles.goggles.floor_prior import FloorRenderer, SegmenterRunner

    node = h.goggles(tiny, input_qos='reliable', output_qos='reliable', floor_prior=True)
    assert node.goggles.floor_prior is not None and node.stats()['floor_prior']
    out = collector(h, Image, h.topic('image_sim'), QoSProfile(depth=10))
    pub = h.tester.create_publisher(Image, h.topic('image'), QoSProfile(depth=10))
    odom_pub = h.tester.create_publisher(nav_msgs.Odometry, h.topic('odom'), 10)
    wait_matched(pub)
    wait_matched(odom_pub)
    assert wait_for(lambda: node._pub.get_subscription_count() >= 1)
    img = np.zeros((96, 128, 3), np.uint8)
    img[:50] = (200, 195, 185)  # a pale wall over a dark brown floor
    img[50:] = (90, 60, 40)
    header = Header(frame_id='camera')
    header.stamp = h.tester.get_clock().now().to_msg()
    pub.publish(numpy_to_image(img, 'rgb8', header=header, msg_cls=Image))
    assert wait_for(lambda: len(out) == 1)
    assert node.stats()['no_odometry'] == 1
    odom = nav_msgs.Odometry()
    odom.pose.pose.position.x, odom.pose.pose.position.y = 0.3, -0.2
    yaw = 0.4
    odom.pose.pose.orientation.z, odom.pose.pose.orientation.w = np.sin(yaw / 2), np.cos(yaw / 2)
    odom_pub.publish(odom)
    assert wait_for(lambda: node._pose is not None)
    assert node._pose == pytest.approx((0.3, -0.2, yaw))
    pub.publish(numpy_to_image(img, 'rgb8', header=header, msg_cls=Image))
    assert wait_for(lambda: len(out) == 2)
    from vr_goggles.image.codec import image_to_rgb

    plain, floored = (image_to_rgb(m) for _, m in out)
    renderer = FloorRenderer(64)
    mask = (SegmenterRunner('segmenter_dr')(img[None])[0] == 1) & renderer.valid
    assert mask.sum() > 500
    assert np.array_equal(floored[mask], renderer.render((0.3, -0.2, yaw))[mask])
    assert np.array_equal(floored[~mask], plain[~mask])
    want = Goggles.from_model(tiny['gen'], engine='torch')(img)
    assert np.abs(plain.astype(int) - want).max() <= 1  # the plain frame: goggles only


def test_floor_paint_parameters_build_the_prior_or_fail_configure(ctx, tiny):
    """floor_paint names classes painted in their sim colour; an unknown one fails configure."""
    from rclpy.lifecycle import TransitionCallbackReturn as R

    from vr_goggles.goggles.semantic_paint import SIM_CLASS_RGB
    from vr_goggles.nodes.goggles_node import GogglesNode

    semantic = [Parameter('floor_segmenter', value='segmenter_real')]
    for ns, paint, extra, want in (
            ('/paint1', 'chair', [], R.SUCCESS), ('/paint2', 'sky', [], R.FAILURE),
            ('/paint3', 'chair,wall,ceiling,object', semantic, R.SUCCESS)):
        node = GogglesNode(context=ctx, namespace=ns, parameter_overrides=[
            Parameter('model', value=tiny['gen']), Parameter('engine', value='torch'),
            Parameter('floor_prior', value=True), Parameter('floor_paint', value=paint),
            *extra])
        try:
            assert node.trigger_configure() == want
            prior = node.goggles.floor_prior if want == R.SUCCESS else None
            if ns == '/paint1':  # painted where the floor segmenter finds the chair
                assert list(prior.paint) == [4]  # semantics.CHAIR
                assert tuple(prior.paint[4]) == SIM_CLASS_RGB['chair']
                assert prior.segment.name == 'segmenter_dr'
            elif ns == '/paint3':  # the semantic goggles: one segmenter for every class
                assert list(prior.paint) == [4, 2, 3, 5]
                assert tuple(prior.paint[5]) == SIM_CLASS_RGB['wall']  # hidden
                assert prior.segment.name == 'segmenter_real'
        finally:
            node.close()
            node.destroy_node()


def test_output_size_input_and_runtime_change(h, tiny, rng):
    """output_size 'input' resizes back; a valid runtime change applies, an invalid is refused."""
    node = h.goggles(tiny, output_size='input')
    out = collector(h, Image, h.topic('image_sim'))
    pub = h.tester.create_publisher(Image, h.topic('image'), qos_profile_sensor_data)
    wait_matched(pub)

    def roundtrip(hw):
        n = len(out)
        for _ in range(50):
            pub.publish(frame(h, rng, hw=hw))
            if wait_for(lambda: len(out) > n, 0.2):
                return out[-1][1]
        raise AssertionError('no output')

    m = roundtrip((48, 80))
    assert (m.height, m.width) == (48, 80)
    assert node.set_parameters([Parameter('output_size', value='40x30')])[0].successful
    m = roundtrip((48, 80))
    assert (m.height, m.width) == (30, 40)
    res = node.set_parameters([Parameter('output_size', value='huge')])[0]
    assert not res.successful and 'output_size' in res.reason
    assert not node.set_parameters([Parameter('engine', value='onnxruntime')])[0].successful
    assert node.get_parameter('output_size').value == '40x30'


def test_compressed_input_follows_the_remapped_image_topic(h, tiny, rng):
    """compressed_input subscribes <remapped image>/compressed (image_transport naming)."""
    node = h.goggles(tiny, compressed_input=True,
                     cli_args=['--ros-args', '-r', f'image:={h.topic("cam/image_raw")}'])
    assert node.input_topic == h.topic('cam/image_raw/compressed')
    out = collector(h, Image, h.topic('image_sim'))
    pub = h.tester.create_publisher(CompressedImage, h.topic('cam/image_raw/compressed'),
                                    qos_profile_sensor_data)
    wait_matched(pub)
    header = Header(frame_id='cam')
    header.stamp = h.tester.get_clock().now().to_msg()
    img = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    msg = numpy_to_compressed(img, 'jpeg', header=header, msg_cls=CompressedImage)
    assert wait_for(lambda: pub.publish(msg) or len(out) > 0, 5, step=0.1)
    m = out[0][1]
    assert (m.width, m.height, m.encoding) == (64, 64, 'rgb8')
    assert m.header.frame_id == 'cam' and key(m.header.stamp) == key(header.stamp)


def _rss_mb() -> float:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


class SlowGoggles:
    """Test-only wrapper: the real goggles plus a fixed delay, i.e. a slow engine."""

    def __init__(self, goggles, delay: float):
        self.goggles, self.delay = goggles, delay
        self.engine, self.preprocessor = goggles.engine, goggles.preprocessor
        self.needs_pose = goggles.needs_pose

    def __call__(self, image):
        """Sleep (releasing the GIL like a real engine would) and translate."""
        time.sleep(self.delay)
        return self.goggles(image)

    def frame(self, image, **kwargs):
        """The node's whole frame path, as slow as ``__call__``."""
        time.sleep(self.delay)
        return self.goggles.frame(image, **kwargs)


@pytest.mark.skipif(not Path('/proc/self/statm').exists(), reason='needs /proc for RSS')
def test_flood_drops_frames_instead_of_queueing(h, tiny, rng, monkeypatch):
    """4x the engine rate in -> about the engine rate out, bounded latency, stable memory."""
    from vr_goggles.goggles import Goggles

    real = Goggles.from_model
    made = []

    def slow_from_model(*args, **kwargs):
        made.append(SlowGoggles(real(*args, **kwargs), 0.04))
        return made[-1]

    monkeypatch.setattr(Goggles, 'from_model', slow_from_model)
    node = h.goggles(tiny)
    img = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    t0 = time.perf_counter()
    for _ in range(5):
        made[0](img)
    engine_period = (time.perf_counter() - t0) / 5
    out = collector(h, Image, h.topic('image_sim'))
    pub = h.tester.create_publisher(Image, h.topic('image'), qos_profile_sensor_data)
    wait_matched(pub)
    sent: dict = {}

    def flood(seconds):
        end = time.perf_counter() + seconds
        nxt = time.perf_counter()
        while time.perf_counter() < end:
            msg = frame(h, rng)
            sent[key(msg.header.stamp)] = time.perf_counter()
            pub.publish(msg)
            nxt += engine_period / 4
            time.sleep(max(0.0, nxt - time.perf_counter()))

    flood(1.0)  # warm-up: allocator pools, DDS history, rate windows
    time.sleep(0.3)
    rss0, n0, c0 = _rss_mb(), len(out), node.slot.counts()
    duration = 3.0
    flood(duration)
    time.sleep(0.3)
    c1 = node.slot.counts()
    outputs = len(out) - n0
    received = c1.received - c0.received
    expected = duration / engine_period
    assert received > 2.5 * expected, f'flood too slow: {received} frames in {duration} s'
    assert 0.6 * expected <= outputs <= 1.15 * expected + 2, (outputs, expected)
    assert c1.dropped - c0.dropped >= 0.5 * received
    lat = sorted(t - sent[key(m.header.stamp)] for t, m in out[n0:])
    p99 = lat[int(0.99 * (len(lat) - 1))]
    assert p99 < 3 * engine_period + 0.1, f'p99 {p99 * 1e3:.0f} ms: frames are queueing'
    assert node.latency.summary()['p99'] < 1e3 * (3 * engine_period + 0.1)
    growth = _rss_mb() - rss0
    assert growth < 25, f'RSS grew {growth:.1f} MB during the flood'


def test_malformed_messages_are_logged_counted_and_skipped(h, tiny, rng, capfd):
    """Bad encoding, wrong step, truncated data: logged with the reason, node keeps going."""
    node = h.goggles(tiny)
    out = collector(h, Image, h.topic('image_sim'))
    pub = h.tester.create_publisher(Image, h.topic('image'), QoSProfile(depth=10))
    wait_matched(pub)
    bad = []
    for enc, step, n in (('bogus', 24, 192), ('rgb8', 10, 192), ('rgb8', 24, 100)):
        m = Image(height=8, width=8, encoding=enc, step=step)
        m.data = bytes(n)
        m.header.frame_id = 'camera'
        bad.append(m)
    for m in bad:
        pub.publish(m)
        time.sleep(0.05)  # one at a time, so the latest-only slot keeps each of them
    assert wait_for(lambda: node.malformed == 3, 5), node.stats()
    assert wait_for(lambda: pub.publish(frame(h, rng)) or len(out) > 0, 5, step=0.1)
    assert node.errors == 0 and node.stats()['malformed'] == 3
    err = capfd.readouterr().err
    assert 'malformed' in err and 'encoding' in err


def test_max_age_skips_old_frames(h, tiny, rng):
    """Frames older than max_age (node clock) are skipped and counted; 0 disables."""
    node = h.goggles(tiny, max_age=0.5)
    out = collector(h, Image, h.topic('image_sim'))
    pub = h.tester.create_publisher(Image, h.topic('image'), QoSProfile(depth=10))
    wait_matched(pub)
    old = h.tester.get_clock().now() - rclpy.duration.Duration(seconds=5)
    pub.publish(frame(h, rng, stamp=old.to_msg()))
    assert wait_for(lambda: node.too_old == 1, 5)
    assert wait_for(lambda: pub.publish(frame(h, rng)) or len(out) > 0, 5, step=0.1)
    assert node.set_parameters([Parameter('max_age', value=0.0)])[0].successful
    n = len(out)
    pub.publish(frame(h, rng, stamp=old.to_msg()))
    assert wait_for(lambda: len(out) > n, 5) and node.too_old == 1


def test_diagnostics_are_published(h, tiny, rng):
    """/diagnostics carries rates, latency, drops and the engine."""
    pytest.importorskip('diagnostic_msgs')
    from diagnostic_msgs.msg import DiagnosticArray

    node = h.goggles(tiny, diagnostics_period=0.2)
    assert node.diagnostics.backend in ('diagnostic_msgs', 'diagnostic_updater')
    # before any frame: the warning names the resolved input topic, not the relative 'image'
    assert node._report()[1] == f'no input on {h.topic("image")}'
    diags = collector(h, DiagnosticArray, '/diagnostics', QoSProfile(depth=50))
    pub = h.tester.create_publisher(Image, h.topic('image'), qos_profile_sensor_data)
    wait_matched(pub)
    for _ in range(10):
        pub.publish(frame(h, rng))
        time.sleep(0.03)

    def ours():
        for _, arr in reversed(diags):
            for st in arr.status:
                values = {kv.key: kv.value for kv in st.values}
                if st.name.startswith('goggles_node') and values.get('processed', '0') != '0':
                    return st, values
        return None

    assert wait_for(lambda: ours() is not None, 5)
    st, values = ours()
    for k in ('input_rate_hz', 'output_rate_hz', 'latency_p50_ms', 'latency_p99_ms', 'dropped',
              'engine', 'precision', 'device'):
        assert k in values
    assert values['engine'] == 'torch' and st.hardware_id
    assert values['input_topic'] == h.topic('image')


def test_lifecycle_transitions_gate_the_output(h, tiny, rng):
    """Autostart false: nothing until configure+activate; deactivate stops; reactivate works."""
    from rclpy.lifecycle import TransitionCallbackReturn as R

    node = h.goggles(tiny, start=False, autostart=False)
    out = collector(h, Image, h.topic('image_sim'))
    pub = h.tester.create_publisher(Image, h.topic('image'), qos_profile_sensor_data)
    time.sleep(0.3)
    assert pub.get_subscription_count() == 0 and node.stats()['state'] == 'unconfigured'
    assert h.call(node.trigger_configure) == R.SUCCESS and node.goggles is not None
    assert h.call(node.trigger_activate) == R.SUCCESS
    wait_matched(pub)
    assert wait_for(lambda: pub.publish(frame(h, rng)) or len(out) > 0, 5, step=0.1)
    assert h.call(node.trigger_deactivate) == R.SUCCESS
    time.sleep(0.2)
    n = len(out)
    for _ in range(5):
        pub.publish(frame(h, rng))
        time.sleep(0.02)
    time.sleep(0.3)
    assert len(out) == n and node.stats()['state'] == 'inactive'
    assert h.call(node.trigger_activate) == R.SUCCESS
    assert wait_for(lambda: pub.publish(frame(h, rng)) or len(out) > n, 5, step=0.1)


def test_bad_parameters_fail_fast_with_the_name(ctx, tiny):
    """An invalid start-up value raises naming the parameter; a bad model fails configure."""
    from rclpy.lifecycle import TransitionCallbackReturn as R

    from vr_goggles.nodes.goggles_node import GogglesNode

    with pytest.raises(ValueError, match='engine'):
        GogglesNode(context=ctx, namespace='/bad',
                    parameter_overrides=[Parameter('engine', value='tensorflow')])
    # outside the descriptor's range, or of the wrong type: rclpy refuses it while declaring
    for value in (-3.0, 'soon'):
        with pytest.raises(ValueError, match='invalid parameters: max_age: '):
            GogglesNode(context=ctx, namespace='/bad',
                        parameter_overrides=[Parameter('max_age', value=value)])
    missing = str(tiny['dir'] / 'missing')
    node = GogglesNode(context=ctx, namespace='/bad2', parameter_overrides=[
        Parameter('model', value=missing), Parameter('engine', value='torch')])
    try:
        assert node.trigger_configure() == R.FAILURE and node.goggles is None
    finally:
        node.close()
        node.destroy_node()


# -- policy_node --------------------------------------------------------------------------------
def _cmds(got):
    return [(t, (m.twist if isinstance(m, TwistStamped) else m)) for t, m in got]


def test_policy_clamps_goes_zero_when_stale_and_on_deactivate(h, tiny, rng):
    """Clamped commands from fresh images, zero after stale_timeout and on deactivate."""
    from rclpy.lifecycle import TransitionCallbackReturn as R

    node = h.policy(tiny, rate=20.0, max_linear=0.1, max_angular=0.2, stale_timeout=0.3)
    got = collector(h, Twist, h.topic('cmd_vel'), QoSProfile(depth=100))
    pub = h.tester.create_publisher(Image, h.topic('image_sim'), qos_profile_sensor_data)
    wait_matched(pub)
    end = time.perf_counter() + 1.0
    while time.perf_counter() < end:
        pub.publish(frame(h, rng, hw=(64, 64)))
        time.sleep(0.05)
    t_last = time.perf_counter()
    time.sleep(0.8)
    cmds = _cmds(got)
    moving = [(t, c) for t, c in cmds if c.linear.x or c.angular.z]
    assert moving, 'no command from fresh images'
    for _, c in cmds:
        assert abs(c.linear.x) <= 0.1 + 1e-9 and abs(c.angular.z) <= 0.2 + 1e-9
    assert max(t for t, _ in moving) < t_last + 0.3 + 0.15, 'kept driving on a stale image'
    late = [c for t, c in cmds if t > t_last + 0.5]
    assert late and all(c.linear.x == 0 and c.angular.z == 0 for c in late)
    assert node.stats()['stale'] and node.stale_periods > 0
    # Deactivate while driving: the last command is a stop, then silence.
    for _ in range(5):
        pub.publish(frame(h, rng, hw=(64, 64)))
        time.sleep(0.05)
    assert h.call(node.trigger_deactivate) == R.SUCCESS
    time.sleep(0.3)
    n = len(got)
    last = _cmds(got)[-1][1]
    assert last.linear.x == 0 and last.angular.z == 0
    time.sleep(0.3)
    assert len(got) == n


def test_stacked_policy_history_follows_header_stamps(h, tiny, rng):
    """A frame-stacking policy is paced by image stamps (not arrival) and restarts when stale."""
    from builtin_interfaces.msg import Time

    node = h.policy({'pol': tiny['pol2']}, rate=50.0, stale_timeout=0.3)
    assert node.policy.frame_stack == 2 and node.policy.history.k == 2
    pushed = []
    push = node.policy.history.push

    def spy(f, t=None):
        pushed.append(t)
        return push(f, t)

    node.policy.history.push = spy
    pub = h.tester.create_publisher(Image, h.topic('image_sim'), qos_profile_sensor_data)
    wait_matched(pub)
    # Stamps 0.1 s apart in camera time, published every 0.03 s of wall time.
    sent = []
    for i in range(12):
        t = 1000.0 + 0.1 * i
        sent.append(t)
        pub.publish(frame(h, rng, hw=(64, 64), stamp=Time(sec=int(t), nanosec=round(
            (t - int(t)) * 1e9))))
        time.sleep(0.03)
    assert wait_for(lambda: pushed and pushed[-1] == pytest.approx(sent[-1]), 5)
    assert all(any(t == pytest.approx(s) for s in sent) for t in pushed)  # stamps, not clock
    assert len(node.policy.history) == 2
    # No image for longer than stale_timeout: the history starts over.
    assert wait_for(lambda: node.stale and len(node.policy.history) == 0, 5)


def test_policy_stamped_output(h, tiny, rng):
    """stamped: TwistStamped with the configured frame_id, same values as the Twist path."""
    from vr_goggles.image.codec import image_to_rgb
    from vr_goggles.policy import Policy
    from vr_goggles.policy.actions import action_to_velocity

    h.policy(tiny, rate=20.0, stamped=True, frame_id='base_footprint')
    got = collector(h, TwistStamped, h.topic('cmd_vel'), QoSProfile(depth=100))
    pub = h.tester.create_publisher(Image, h.topic('image_sim'), qos_profile_sensor_data)
    wait_matched(pub)
    msg = frame(h, rng, hw=(64, 64))
    action = Policy.load(tiny['pol']).act(image_to_rgb(msg))
    want = action_to_velocity(action)

    def driving():
        pub.publish(msg)
        return any(m.twist.linear.x or m.twist.angular.z for _, m in got)

    assert wait_for(driving, 5, step=0.05)
    m = next(m for _, m in got if m.twist.linear.x or m.twist.angular.z)
    assert m.header.frame_id == 'base_footprint'
    assert (m.twist.linear.x, m.twist.angular.z) == pytest.approx(want)


# -- real processes -----------------------------------------------------------------------------
@pytest.mark.parametrize('executor,stop', [('auto', signal.SIGINT),
                                           ('single_threaded', signal.SIGTERM)])
def test_processes_pipeline_logs_and_shutdown(h, tiny, rng, tmp_path, ros_env, executor, stop):
    """goggles_node + policy_node as processes: pipeline works, errors logged, stop on signal.

    ``auto`` is the EventsExecutor with these (Jazzy) wheels.
    """
    env = {**ros_env, 'VR_GOGGLES_CACHE_DIR': str(tmp_path / 'cache'), 'PYTHONUNBUFFERED': '1',
           'RCUTILS_LOGGING_BUFFERED_STREAM': '0', 'OMP_NUM_THREADS': '1'}
    ns = h.ns + 'p'
    logs = {n: tmp_path / f'{n}.log' for n in ('goggles', 'policy')}
    cmds = {
        'goggles': ['vr_goggles.nodes.goggles_node', '-p', f'model:={tiny["gen"]}',
                    '-p', f'executor:={executor}'],
        # Noise frames are out of the goggles' domain by design: the domain guard would hold
        # the robot still after 5 of them (test_domain_guard_nodes tests that), so it is off.
        'policy': ['vr_goggles.nodes.policy_node', '-p', f'model:={tiny["pol"]}',
                   '-p', 'rate:=20.0', '-p', f'executor:={executor}',
                   '-p', 'stop_on_domain_score:=false'],
    }
    procs = {}
    for name, (mod, *params) in cmds.items():
        with open(logs[name], 'w') as log:
            procs[name] = subprocess.Popen(
                [sys.executable, '-m', mod, '--ros-args', '-r', f'__ns:={ns}', *params],
                env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        sim = collector(h, Image, f'{ns}/image_sim')
        cmd = collector(h, Twist, f'{ns}/cmd_vel', QoSProfile(depth=100))
        pub = h.tester.create_publisher(Image, f'{ns}/image', qos_profile_sensor_data)
        wait_matched(pub, timeout=60)

        def flowing():
            pub.publish(frame(h, rng))
            return len(sim) > 0 and any(m.linear.x or m.angular.z for _, m in cmd)

        assert wait_for(flowing, 30, step=0.05), [p.read_text() for p in logs.values()]
        # Malformed frames once the pipeline is known to be connected: a best-effort message
        # published right after discovery may be lost before the subscriber has matched.
        bad = Image(height=4, width=4, encoding='rgb8', step=12)
        bad.data = bytes(5)
        for _ in range(3):
            pub.publish(bad)
            time.sleep(0.2)
        procs['policy'].send_signal(stop)
        assert procs['policy'].wait(timeout=20) == 0, logs['policy'].read_text()
        time.sleep(0.3)
        last = cmd[-1][1]
        assert (last.linear.x, last.angular.z) == (0.0, 0.0), 'no zero command on shutdown'
        procs['goggles'].send_signal(stop)
        assert procs['goggles'].wait(timeout=20) == 0, logs['goggles'].read_text()
        text = logs['goggles'].read_text()
        assert 'configured' in text and 'malformed' in text and 'data' in text, text
        assert 'Exception in' not in text + logs['policy'].read_text()  # no swallowed signal
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def test_make_executor_choices(h):
    """Executor names map to rclpy executors; events falls back only under 'auto'."""
    from rclpy.executors import SingleThreadedExecutor

    from vr_goggles.nodes.ros_common import make_executor

    def kind(name):
        ex = make_executor(name, context=h.ctx)
        try:
            return type(ex).__name__
        finally:
            ex.shutdown()

    assert kind('single_threaded') == SingleThreadedExecutor.__name__
    try:
        from rclpy.experimental import EventsExecutor  # noqa: F401 (Jazzy and later)
    except ImportError:  # Humble: auto falls back, events is refused with the reason
        assert kind('auto') == SingleThreadedExecutor.__name__
        with pytest.raises(ValueError, match='Jazzy'):
            make_executor('events', context=h.ctx)
    else:
        assert kind('auto') == kind('events') == 'EventsExecutor'
    with pytest.raises(ValueError, match='executor'):
        make_executor('multi', context=h.ctx)


# -- sim_bridge (fake environment; the real one is in the integration test) -------------------
class FakeEnv:
    """A corridor: ``forward`` gets one step closer to the chair, 3 steps away."""

    max_episode_steps = 10

    def reset(self, seed=None):
        """Start 3 steps away."""
        self.d, self.seed, self.n = 3, seed, 0
        return self._obs(), {'start_distance': 0.45, 'distance': 0.45, 'agent_pos': (0, 0, 0),
                             'agent_dir': 0.0}

    def step(self, action):
        """Forward approaches; turns waste a step."""
        self.n += 1
        if action == 0:
            self.d -= 1
        info = {'success': self.d == 0, 'distance': 0.15 * self.d, 'collisions': 0,
                'agent_pos': (0.15 * (3 - self.d), 0, 0), 'agent_dir': 0.0}
        return self._obs(), 0.0, self.d == 0, self.n >= self.max_episode_steps, info

    def _obs(self):
        return np.full((64, 64, 3), 40 * self.d, np.uint8)


def test_sim_bridge_steps_from_cmd_vel_and_reports_episodes(h, monkeypatch):
    """Forward commands reach the (fake) chair; episodes are reported as JSON and reset."""
    import json

    from vr_goggles.nodes import sim_bridge

    seeds = range(1000, 1010)
    monkeypatch.setattr(sim_bridge, 'make_env', lambda *a: (FakeEnv(), seeds))
    cam = collector(h, Image, h.topic('camera/image_raw'))
    eps = collector(h, String, h.topic('episode'), QoSProfile(depth=10))
    import nav_msgs.msg as nav_msgs
    odom = collector(h, nav_msgs.Odometry, h.topic('odom'), QoSProfile(depth=100))
    node = h.add(sim_bridge.SimBridge(
        namespace=h.ns, context=h.ctx, parameter_overrides=[
            Parameter('step_period', value=0.05), Parameter('episodes', value=2),
            Parameter('seed', value=3), Parameter('rate', value=20.0)]), start=False)
    pub = h.tester.create_publisher(Twist, h.topic('cmd_vel'), QoSProfile(depth=10))
    wait_matched(pub)
    stop = Twist()
    for _ in range(10):  # zero command: the robot stands still
        pub.publish(stop)
        time.sleep(0.02)
    assert node.steps == 0 and node.periods > 0
    fwd = Twist()
    fwd.linear.x = 0.3
    assert wait_for(lambda: pub.publish(fwd) or len(eps) >= 2, 10, step=0.02)
    results = [json.loads(m.data) for _, m in eps]
    assert [r['success'] for r in results] == [True, True]
    assert [r['layout_seed'] for r in results] == [1003, 1004]
    assert results[0]['steps'] == 3 and results[0]['spl'] == pytest.approx(1.0)
    assert node.done and cam and cam[-1][1].encoding == 'rgb8'
    assert cam[-1][1].header.frame_id == 'camera'
    # Stamps are simulated time: monotonic, CONTROL_PERIOD per control period although the
    # node steps every 0.05 s (10x faster than real time).
    stamps = [m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for _, m in cam]
    assert all(b >= a for a, b in zip(stamps, stamps[1:]))
    assert stamps[-1] - stamps[0] == pytest.approx(node._ticks * CONTROL_PERIOD,
                                                   abs=2 * CONTROL_PERIOD)
    # The true pose goes out on odom (REP 103) with each frame's stamp.
    cam_stamps = {key(m.header.stamp) for _, m in cam}
    assert odom and {key(m.header.stamp) for _, m in odom} <= cam_stamps
    xs = {round(m.pose.pose.position.x, 6) for _, m in odom}
    assert {0.0, 0.15, 0.3} <= xs and all(m.pose.pose.orientation.w == 1.0 for _, m in odom)


class ThreadRecordingEnv(FakeEnv):
    """FakeEnv that records the thread of every call, as a GL context would care about."""

    def __init__(self):
        self.threads = [('init', threading.get_ident())]

    def reset(self, seed=None):
        """Record, then reset."""
        self.threads.append(('reset', threading.get_ident()))
        return super().reset(seed)

    def step(self, action):
        """Record, then step."""
        self.threads.append(('step', threading.get_ident()))
        return super().step(action)

    def close(self):
        """Record."""
        self.threads.append(('close', threading.get_ident()))


def test_sim_bridge_runs_the_simulator_on_one_thread(h, monkeypatch):
    """Construction, reset, step and close all run on one thread, whoever calls the node.

    The simulator's GL (EGL) context stays current in the thread that created it: a step
    rendered from an executor thread other than the constructing one returned stale frames
    silently, so the policy in the end-to-end test saw only the first frame and always drove
    forward into walls.
    """
    from vr_goggles.nodes import sim_bridge

    envs = []
    monkeypatch.setattr(sim_bridge, 'make_env',
                        lambda *a: (envs.append(ThreadRecordingEnv()) or envs[-1], range(9)))
    # Constructed here (the test thread), spun by the harness's executor thread.
    node = h.add(sim_bridge.SimBridge(
        namespace=h.ns, context=h.ctx, parameter_overrides=[
            Parameter('step_period', value=0.05), Parameter('episodes', value=1),
            Parameter('rate', value=20.0)]), start=False)
    pub = h.tester.create_publisher(Twist, h.topic('cmd_vel'), QoSProfile(depth=10))
    wait_matched(pub)
    fwd = Twist()
    fwd.linear.x = 0.3
    assert wait_for(lambda: pub.publish(fwd) or node.done, 10, step=0.02)
    h.executor.shutdown(timeout_sec=2)
    node.close()
    node.close()  # idempotent
    calls = envs[0].threads
    assert [c for c, _ in calls].count('step') == 3 and calls[-1][0] == 'close'
    assert len({t for _, t in calls}) == 1, calls
    assert calls[0][1] not in (threading.get_ident(), h.thread.ident)


# -- end to end: simulator -> goggles_node -> policy_node -> simulator --------------------------
def _shipped(name: str) -> bool:
    from vr_goggles import weights

    try:
        return weights.resolve(name).exists()
    except Exception:  # noqa: BLE001
        return False


def _ros_pipeline_matches_offline(h, transform, goggles_params: dict, pol: str) -> None:
    """Drive eval layouts through sim_bridge -> goggles_node -> policy_node and offline.

    ``transform`` is what goggles_node computes, without ROS (``observe(info)``, if it has one,
    takes the simulator's pose first, as goggles_node takes ``odom``). The goggles do not solve
    every layout, and which ones they solve is a property of the weights, not of the ROS
    pipeline: run the first SCAN eval layouts offline and put the ROS pipeline on the window
    of consecutive layouts where offline succeeds most. The ROS pipeline may lose at most one
    episode to timing (a command computed from the previous frame when the machine is busy).
    """
    import json

    chair_nav = pytest.importorskip('sim_training.envs.chair_nav',
                                    reason='needs the simulator (pip install .[train])')
    from vr_goggles.nodes.sim_bridge import SimBridge
    from vr_goggles.policy import Policy

    episodes, scan = 3, 18
    policy = Policy.load(pol)
    observe = getattr(transform, 'observe', None)
    env = chair_nav.ChairNavEnv(domain='real', split='eval')
    solved = []
    try:
        for k in range(scan):
            obs, info = env.reset(seed=chair_nav.EVAL_SEEDS[k])
            policy.reset()
            done = False
            while not done:
                if observe is not None:
                    observe(info)
                obs, _, term, trunc, info = env.step(policy.act(transform(obs)))
                done = term or trunc
            solved.append(bool(info['success']))
    finally:
        env.close()
    start = max(range(scan - episodes + 1), key=lambda k: sum(solved[k:k + episodes]))
    offline = solved[start:start + episodes]
    seeds = [chair_nav.EVAL_SEEDS[k] for k in range(start, start + episodes)]
    if not any(offline):
        pytest.fail(f'offline the shipped goggles + policy reach the chair in 0/{scan} '
                    'eval layouts: nothing for the ROS pipeline to reproduce')

    eps = collector(h, String, h.topic('episode'), QoSProfile(depth=10))
    h.add(SimBridge(namespace=h.ns, context=h.ctx, parameter_overrides=[
        Parameter('domain', value='real'), Parameter('split', value='eval'),
        Parameter('episodes', value=episodes), Parameter('seed', value=start),
        Parameter('step_period', value=0.15),
        Parameter('rate', value=5.0)]), start=False)
    h.goggles({'gen': goggles_params.pop('model')},
              cli_args=['--ros-args', '-r', 'image:=camera/image_raw'], **goggles_params)
    h.policy({'pol': pol}, rate=50.0)
    limit = episodes * (chair_nav.DEFAULT_MAX_EPISODE_STEPS + 5) * 0.15 + 30
    assert wait_for(lambda: len(eps) >= episodes, limit, step=0.2), [m.data for _, m in eps]
    results = [json.loads(m.data) for _, m in eps]
    ros = [r['success'] for r in results]
    assert [r['layout_seed'] for r in results] == seeds
    assert sum(ros) >= 1 and sum(ros) >= sum(offline) - 1, (
        f'ROS pipeline {sum(ros)}/{episodes} vs offline {sum(offline)}/{episodes}: {results}')


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_navigation_pipeline_reaches_the_chair(h):
    """A few eval episodes through the real nodes over DDS reach the chair as offline does.

    sim_bridge renders the 'real' domain, goggles_node translates, policy_node drives.
    """
    gen = os.environ.get('VR_GOGGLES_TEST_GOGGLES', 'goggles_vr_goggles')
    pol = os.environ.get('VR_GOGGLES_TEST_POLICY', 'policy_sim')
    for name in (gen, pol):
        if not _shipped(name):
            pytest.skip(f'weights {name!r} are not in vr_goggles/weights yet (they arrive with '
                        'the trained models; VR_GOGGLES_TEST_GOGGLES/_POLICY pick others)')
    os.environ.setdefault('PYGLET_HEADLESS', '1')
    from vr_goggles.goggles import Goggles

    _ros_pipeline_matches_offline(h, Goggles.from_model(gen, engine='torch'),
                                  {'model': gen}, pol)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_semantic_goggles_pipeline_reaches_the_chair(h):
    """The semantic goggles through the real nodes: goggles_node's floor prior + full paint.

    goggles_node reads sim_bridge's odom, finds every class with segmenter_real and paints
    over all of its generator's frame; offline, the demo's real_semantic_goggles transform.
    """
    for name in ('goggles_vr_goggles', 'policy_sim', 'segmenter_real'):
        if not _shipped(name):
            pytest.skip(f'weights {name!r} are not in vr_goggles/weights')
    pytest.importorskip('nav_msgs.msg', reason='floor_prior needs nav_msgs/Odometry')
    os.environ.setdefault('PYGLET_HEADLESS', '1')
    closed_loop = pytest.importorskip('sim_training.closed_loop')

    transform, _ = closed_loop.semantic_goggles('segmenter_real')
    _ros_pipeline_matches_offline(h, transform, {
        'model': 'goggles_vr_goggles', 'floor_prior': True,
        'floor_segmenter': 'segmenter_real', 'floor_paint': 'chair,wall,ceiling,object'},
        'policy_sim')


def test_a_camera_frame_crosses_five_runtime_packages_to_cmd_vel(ctx, tiny, rng):
    """The layout's promise, traced rather than read.

    Camera Image -> goggles_node -> policy_node -> Twist runs code in the shell (nodes), the
    codec and preprocessing (image), the goggles, the engine (engines) and the policy, plus the
    network definitions (models) the engine and the policy execute; nothing else of the package.
    """
    import sys

    from geometry_msgs.msg import Twist
    from rclpy.lifecycle import TransitionCallbackReturn

    from vr_goggles.image.codec import numpy_to_image
    from vr_goggles.nodes.goggles_node import GogglesNode
    from vr_goggles.nodes.policy_node import PolicyNode

    class Capture:
        def __init__(self):
            self.msgs = []

        def publish(self, msg):
            self.msgs.append(msg)

        def get_subscription_count(self):
            return 1

    gog = GogglesNode(context=ctx, namespace='/path', parameter_overrides=[
        Parameter('model', value=tiny['gen']), Parameter('engine', value='torch'),
        Parameter('autostart', value=False)])
    pol = PolicyNode(context=ctx, namespace='/path', parameter_overrides=[
        Parameter('model', value=tiny['pol']), Parameter('autostart', value=False)])
    try:
        assert gog.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert pol.trigger_configure() == TransitionCallbackReturn.SUCCESS
        gog._pub, gog.active, pol._pub = Capture(), True, Capture()
        header = Header(frame_id='camera')
        header.stamp = gog.get_clock().now().to_msg()
        camera = numpy_to_image(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), 'rgb8',
                                header=header, msg_cls=Image)
        entered: set[str] = set()

        def trace(frame, event, arg):
            name = frame.f_globals.get('__name__', '')
            if event == 'call' and name.startswith('vr_goggles.'):
                entered.add(name)

        sys.setprofile(trace)
        try:
            gog._process(camera, 0.0)
            image_sim = gog._pub.msgs[-1]
            pol._infer(image_sim, 1)
            pol._publish(*pol.command)
        finally:
            sys.setprofile(None)
        assert isinstance(pol._pub.msgs[-1], Twist)
        assert image_sim.header == camera.header  # copied, never restamped
        packages = {name.split('.')[1] for name in entered}
        print(f'{len(entered)} modules in {len(packages)} packages: {sorted(entered)}')
        assert packages == {'nodes', 'image', 'goggles', 'engines', 'models', 'policy'}
        assert len(packages - {'models'}) <= 5
    finally:
        for node in (gog, pol):
            node.destroy_node()


@pytest.mark.parametrize('arg', ['max_age:=-3.0', 'engine:=bogus'])
def test_bad_parameter_on_the_command_line_is_one_fatal_line_and_exit_2(ros_env, arg):
    """``ros2 run vr_goggles goggles_node --ros-args -p max_age:=-3.0``: docs/ros.md's promise."""
    proc = subprocess.run([sys.executable, '-m', 'vr_goggles.nodes.goggles_node', '--ros-args',
                           '-p', arg], env=ros_env, capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert 'Traceback' not in out
    fatal = [line for line in out.splitlines() if '[FATAL]' in line]
    assert len(fatal) == 1 and 'invalid parameters' in fatal[0]
    assert arg.split(':=')[0] in fatal[0]


def test_sim_bridge_exits_after_its_episodes(ros_env):
    """``episodes:=N`` ends the process (and, through on_exit, sim.launch.py), not an idle node."""
    pytest.importorskip('miniworld', reason='the simulator (training extra)')
    env = {**ros_env, 'PYGLET_HEADLESS': '1'}
    proc = subprocess.run(
        [sys.executable, '-m', 'vr_goggles.nodes.sim_bridge', '--ros-args', '-p', 'episodes:=2',
         '-p', 'max_periods:=2', '-p', 'step_period:=0.05', '-p', 'rate:=20.0'],
        env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert '2 episodes done' in out
