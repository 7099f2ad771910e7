"""``vr-goggles replay`` on tiny synthetic bags, with the real goggles core on tiny weights."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
import sqlite3
import sys

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bagfactory as bf  # noqa: E402

torch = pytest.importorskip('torch')
pytest.importorskip('rosbags')

from vr_goggles.replay import OutputExistsError, ReplayConfig, ReplayError, replay  # noqa: E402

N = 6  # frames per test bag
SIM = '/camera/image_raw_sim'


@pytest.fixture(scope='module', autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope='module')
def weights(tmp_path_factory) -> dict[str, str]:
    """Tiny generator and policy weights written with vr_goggles.weights.save."""
    from vr_goggles.models import build
    from vr_goggles.weights import ModelCard, save

    d = tmp_path_factory.mktemp('weights')
    torch.manual_seed(0)
    gk = {'ngf': 4, 'n_blocks': 1, 'n_down': 2}
    gen = build('ResnetGenerator', **gk)
    save(d / 'gen', gen.state_dict(), ModelCard(name='gen', architecture='ResnetGenerator',
                                                kwargs=gk, input_size=[64, 64]))
    pk = {'channels': [4, 8, 8], 'features_dim': 16}
    actor = build('NavActor', **pk)
    save(d / 'pol', actor.state_dict(), ModelCard(name='pol', architecture='NavActor',
                                                  kwargs=pk, input_size=[64, 64]))
    return {'model': str(d / 'gen'), 'policy': str(d / 'pol')}


def cfg(weights, bag, out, **kw) -> ReplayConfig:
    """A ReplayConfig on the tiny weights, without a progress bar."""
    kw.setdefault('engine', 'torch')
    return ReplayConfig(bag=bag, out=out, model=weights['model'], progress=False, **kw)


def read_bag(path: Path) -> dict[str, list[tuple[int, object, bytes]]]:
    """Topic -> [(log time, message, raw)] of a bag, via rosbags."""
    from rosbags.highlevel import AnyReader

    out: dict[str, list] = {}
    with AnyReader([path]) as r:
        for c, t, raw in r.messages():
            try:
                msg = r.deserialize(raw, c.msgtype)
            except Exception:  # a corrupt message the test planted is copied as it was
                msg = None
            out.setdefault(c.topic, []).append((t, msg, bytes(raw)))
    return out


def tree_hash(path: Path) -> str:
    """Hash of every file under ``path`` (to prove the input is untouched)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob('*') if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize('fmt,encoding,zstd', [('mcap', 'rgb8', 'message'),
                                               ('db3', 'bgr8', 'file')])
def test_replay_zstd_compressed_ros2_bags(tmp_path, weights, fmt, encoding, zstd):
    """Bags recorded with ``--compression-format zstd`` replay like uncompressed ones."""
    plain = bf.write_bag(tmp_path / 'plain', fmt=fmt, n=N, encoding=encoding)
    packed = bf.write_bag(tmp_path / 'packed', fmt=fmt, n=N, encoding=encoding, zstd=zstd)
    assert tree_hash(plain) != tree_hash(packed)
    a = replay(cfg(weights, plain, tmp_path / 'out_plain'))
    b = replay(cfg(weights, packed, tmp_path / 'out_packed'))
    assert a['complete'] and b['complete'] and a['frames'] == b['frames'] == N
    assert a['source_sizes'] == b['source_sizes']


@pytest.mark.parametrize('fmt,encoding,compressed', [
    ('mcap', 'rgb8', False),
    ('db3', 'bgr8', False),
    ('ros1', 'mono8', False),
    ('mcap', 'yuv422', False),
    ('db3', 'jpeg', True),
    ('ros1', 'png', True),
])
def test_replay_formats(tmp_path, weights, fmt, encoding, compressed):
    """db3/mcap/ROS 1, raw and compressed: same frames, stamps, sizes."""
    bag = bf.write_bag(tmp_path / 'in', fmt=fmt, n=N, encoding=encoding, compressed=compressed)
    before = tree_hash(bag)
    out = tmp_path / 'out'
    m = replay(cfg(weights, bag, out, policy=weights['policy']))
    assert tree_hash(bag) == before, 'the input bag must not change'
    assert m['complete'] and m['error'] is None and m['frames'] == N
    assert m['bag_format'] == ('ros1' if fmt == 'ros1' else 'ros2')
    assert (out / 'metadata.yaml').exists() and list(out.glob('*.mcap'))

    orig, got = read_bag(bag), read_bag(out)
    cam = orig['/camera/image_raw']
    sim = got[SIM]
    assert len(sim) == N
    for (t_in, m_in, _), (t_out, m_out, _) in zip(cam, sim):
        assert t_out == t_in
        assert (m_out.header.stamp.sec, m_out.header.stamp.nanosec) == (
            m_in.header.stamp.sec, m_in.header.stamp.nanosec)
        assert m_out.header.frame_id == 'camera'
        assert (m_out.height, m_out.width, m_out.encoding, m_out.step) == (64, 64, 'rgb8', 192)
        assert len(m_out.data) == 64 * 64 * 3
    # every original message is there (ROS 2 input: byte for byte)
    for topic in orig:
        assert [t for t, _, _ in got[topic]] == [t for t, _, _ in orig[topic]]
        if fmt != 'ros1':
            assert [r for _, _, r in got[topic]] == [r for _, _, r in orig[topic]]
    assert got['/odom_text'][0][1].data == 'odom 0'
    # policy commands: one Twist per frame at the frame's log time
    cmds = got['/cmd_vel']
    assert [t for t, _, _ in cmds] == [t for t, _, _ in cam]
    assert all(np.isfinite(c.linear.x) and np.isfinite(c.angular.z) for _, c, _ in cmds)
    assert sum(m['policy']['actions'].values()) == N


def test_metrics_fields_and_static_flicker(tmp_path, weights):
    """Every metrics field is present; a static input has ~0 flicker."""
    bag = bf.write_bag(tmp_path / 'static', fmt='mcap', n=N, static=True)
    mpath = tmp_path / 'm' / 'metrics.json'
    m = replay(cfg(weights, bag, tmp_path / 'out', metrics=mpath, policy=weights['policy']))
    on_disk = json.loads(mpath.read_text())
    for key in ('frames', 'latency_ms', 'throughput_fps', 'engine_fps', 'flicker',
                'shift_error', 'policy', 'bag_duration_s', 'skipped', 'complete', 'error',
                'engine', 'model_size', 'source_sizes', 'command'):
        assert key in on_disk, key
    assert on_disk['frames'] == N and on_disk['complete'] is True
    lat = on_disk['latency_ms']
    assert 0 < lat['p50'] <= lat['p99']
    assert on_disk['throughput_fps'] > 0
    assert on_disk['flicker']['pairs'] == N - 1
    assert on_disk['flicker']['ratio'] == pytest.approx(0.0, abs=1e-6)
    assert on_disk['flicker']['input_mean_abs_diff'] == 0.0
    assert on_disk['shift_error']['value'] >= 0 and on_disk['shift_error']['frames'] > 0
    assert on_disk['bag_duration_s'] == pytest.approx((N - 1) * 0.1, abs=0.01)
    assert on_disk['source_sizes'] == {'64x48': N}  # width x height (issue #39)
    pol = on_disk['policy']
    assert 0.0 <= pol['switch_rate'] <= 1.0 and sum(pol['fractions'].values()) == 1.0
    assert pol['switch_rate'] == 0.0  # static input -> the same action every frame
    assert m['engine']['name']


def test_moving_input_has_flicker(tmp_path, weights):
    """A moving input gives a positive flicker ratio."""
    bag = bf.write_bag(tmp_path / 'moving', fmt='mcap', n=N)
    m = replay(cfg(weights, bag, tmp_path / 'out'))
    assert m['flicker']['input_mean_abs_diff'] > 1.0
    assert m['flicker']['ratio'] > 0.0


def test_truncated_mcap_keeps_frames_done(tmp_path, weights):
    """A cut MCAP: error names bag and position, frames done are kept."""
    bag = bf.write_bag(tmp_path / 'cut', fmt='mcap', n=10)
    f = next(bag.glob('*.mcap'))
    data = f.read_bytes()
    f.write_bytes(data[:int(len(data) * 0.6)])
    mpath = tmp_path / 'metrics.json'
    m = replay(cfg(weights, bag, tmp_path / 'out', metrics=mpath))
    assert m['complete'] is False
    assert str(bag) in m['error'] and 'after message' in m['error'] and 'log time' in m['error']
    assert 0 < m['frames'] < 10
    assert json.loads(mpath.read_text())['complete'] is False
    got = read_bag(tmp_path / 'out')
    assert len(got[SIM]) == m['frames']


def test_truncated_mcap_via_cli_exit_code(tmp_path, weights, capsys):
    """The CLI exits 3 (incomplete) and prints the error for a cut bag."""
    from vr_goggles.cli import main

    bag = bf.write_bag(tmp_path / 'cut', fmt='mcap', n=8)
    f = next(bag.glob('*.mcap'))
    f.write_bytes(f.read_bytes()[:-2000])
    rc = main(['replay', str(f), '--out', str(tmp_path / 'out'), '--model', weights['model'],
               '--engine', 'torch', '--no-progress'])
    assert rc == 3
    err = capsys.readouterr().err
    assert 'error:' in err and str(f) in err


def test_db3_corrupt_message_is_skipped(tmp_path, weights):
    """An undeserializable message is skipped and counted."""
    bag = bf.write_bag(tmp_path / 'bad', fmt='db3', n=N)
    db = next(bag.glob('*.db3'))
    with sqlite3.connect(db) as con:
        (topic_id,) = con.execute(
            "select id from topics where name='/camera/image_raw'").fetchone()
        ids = [r[0] for r in con.execute(
            'select id from messages where topic_id=? order by timestamp', (topic_id,))]
        con.execute('update messages set data=? where id=?', (b'\x00\x01\x00\x00junk', ids[2]))
    m = replay(cfg(weights, bag, tmp_path / 'out'))
    assert m['complete'] is True
    assert m['frames'] == N - 1
    assert m['skipped']['count'] == 1
    assert m['skipped']['reasons'] == {'undeserializable message': 1}
    assert m['skipped']['examples'][0]['index'] == 2
    assert len(read_bag(tmp_path / 'out')[SIM]) == N - 1


def test_bad_image_is_skipped(tmp_path, weights):
    """A well-formed message whose image is not decodable (unknown encoding)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    Image = store.types['sensor_msgs/msg/Image']
    Header = store.types['std_msgs/msg/Header']
    Time = store.types['builtin_interfaces/msg/Time']
    bag2 = tmp_path / 'enc2'
    with Writer(bag2, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        c = w.add_connection('/cam', 'sensor_msgs/msg/Image', typestore=store)
        for i, enc in enumerate(['rgb8', '32FC1', 'rgb8']):
            msg = Image(header=Header(stamp=Time(sec=i, nanosec=0), frame_id='c'), height=2,
                        width=2, encoding=enc, is_bigendian=0, step=6 if enc == 'rgb8' else 8,
                        data=np.zeros(12 if enc == 'rgb8' else 16, np.uint8))
            w.write(c, i * 10**9, store.serialize_cdr(msg, 'sensor_msgs/msg/Image'))
    m = replay(cfg(weights, bag2, tmp_path / 'out'))
    assert m['frames'] == 2 and m['complete']
    assert m['skipped']['reasons'] == {'bad image': 1}
    assert '32FC1' in m['skipped']['examples'][0]['reason']


def test_overwrite_protection(tmp_path, weights):
    """Refuse existing outputs, the input bag and non-bag folders."""
    bag = bf.write_bag(tmp_path / 'in', fmt='mcap', n=2)
    out = tmp_path / 'out'
    replay(cfg(weights, bag, out))
    stamp = tree_hash(out)
    with pytest.raises(OutputExistsError, match='--overwrite'):
        replay(cfg(weights, bag, out))
    assert tree_hash(out) == stamp
    m = replay(cfg(weights, bag, out, overwrite=True, max_frames=1))
    assert m['frames'] == 1 and len(read_bag(out)[SIM]) == 1
    assert not list(tmp_path.glob('.out.partial-*'))
    # never into or over the input, even with --overwrite
    for target in (bag, bag / 'inner', tmp_path):
        with pytest.raises(ValueError, match='input bag'):
            replay(cfg(weights, bag, target, overwrite=True))
    mcap = next(bag.glob('*.mcap'))  # the storage file named directly: still its bag's folder
    with pytest.raises(ValueError, match='input bag'):
        replay(cfg(weights, mcap, bag / 'x'))
    # nor the report/metrics files
    with pytest.raises(ValueError, match='--metrics .* input bag'):
        replay(cfg(weights, bag, tmp_path / 'o2', metrics=bag / 'm.json'))
    with pytest.raises(ValueError, match='--report .* inside the output'):
        replay(cfg(weights, bag, tmp_path / 'o2', report=tmp_path / 'o2' / 'r.html'))
    # never delete something that is not a bag
    precious = tmp_path / 'precious'
    precious.mkdir()
    (precious / 'notes.txt').write_text('keep me')
    with pytest.raises(ValueError, match='does not look like a bag'):
        replay(cfg(weights, bag, precious, overwrite=True))
    assert (precious / 'notes.txt').read_text() == 'keep me'


def test_topic_autodetect_and_listing(tmp_path, weights):
    """The only image topic is picked; otherwise the error lists them."""
    two = bf.write_bag(tmp_path / 'two', fmt='mcap', n=2, extra_image_topic='/camera2/image')
    with pytest.raises(ValueError) as e:
        replay(cfg(weights, two, tmp_path / 'o1'))
    assert '/camera/image_raw' in str(e.value) and '/camera2/image' in str(e.value)
    assert '--topic' in str(e.value)
    assert not (tmp_path / 'o1').exists()
    m = replay(cfg(weights, two, tmp_path / 'o2', topic='/camera2/image'))
    assert m['topic'] == '/camera2/image' and m['sim_topic'] == '/camera2/image_sim'
    with pytest.raises(ValueError, match='not an image'):
        replay(cfg(weights, two, tmp_path / 'o3', topic='/odom_text'))
    with pytest.raises(ValueError, match='no topic /nope'):
        replay(cfg(weights, two, tmp_path / 'o3', topic='/nope'))
    none = tmp_path / 'none'
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    with Writer(none, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        c = w.add_connection('/chatter', 'std_msgs/msg/String', typestore=store)
        w.write(c, 1, store.serialize_cdr(store.types['std_msgs/msg/String'](data='x'),
                                          'std_msgs/msg/String'))
    with pytest.raises(ValueError, match=r'no sensor_msgs/Image.*/chatter'):
        replay(cfg(weights, none, tmp_path / 'o4'))


def test_missing_and_garbage_bags(tmp_path, weights):
    """Unreadable inputs fail before anything is written."""
    with pytest.raises(FileNotFoundError):
        replay(cfg(weights, tmp_path / 'nope.mcap', tmp_path / 'o'))
    junk = tmp_path / 'junk.mcap'
    junk.write_bytes(b'not a bag at all')
    with pytest.raises(ReplayError, match='junk.mcap'):
        replay(cfg(weights, junk, tmp_path / 'o'))
    assert not (tmp_path / 'o').exists()


def test_report_html_embeds_images(tmp_path, weights):
    """The HTML report is self-contained and embeds plots and frames."""
    bag = bf.write_bag(tmp_path / 'in', fmt='mcap', n=N)
    report = tmp_path / 'r' / 'report.html'
    m = replay(cfg(weights, bag, tmp_path / 'out', report=report, policy=weights['policy'],
                   command='vr-goggles replay in --out out'))
    html = report.read_text()
    assert html.startswith('<!DOCTYPE html>')
    assert html.count('src="data:image/png;base64,') >= 3  # latency, flicker, >= 1 strip
    assert 'vr-goggles replay in --out out' in html
    assert 'http://' not in html and 'https://' not in html  # self-contained
    assert m['frames'] == N


def test_cli_verb(tmp_path, weights, capsys):
    """The ``replay`` verb: metrics file, bench ratio, refusal to overwrite."""
    from vr_goggles.cli import main

    bag = bf.write_bag(tmp_path / 'in', fmt='db3', n=3)
    mpath = tmp_path / 'm.json'
    rc = main(['replay', str(bag), '--out', str(tmp_path / 'out'), '--model', weights['model'],
               '--engine', 'torch', '--metrics', str(mpath), '--no-progress', '--batch-size',
               '2', '--bench'])
    assert rc == 0
    out = capsys.readouterr().out
    assert '3 frames' in out and 'ratio' in out
    m = json.loads(mpath.read_text())
    assert m['bench']['engine_only_fps'] > 0 and m['bench']['ratio'] > 0
    assert m['batch_size'] == 2
    assert 'replay' in m['command']
    rc = main(['replay', str(bag), '--out', str(tmp_path / 'out'), '--model', weights['model'],
               '--engine', 'torch', '--no-progress'])
    assert rc == 1 and 'exists' in capsys.readouterr().err


def test_report_helpers():
    """vr_goggles.replay.html helpers produce data URIs, strips and pages."""
    from vr_goggles.replay import html as rp

    fig, ax = rp.new_figure()
    ax.plot([0, 1], [1, 0])
    uri = rp.figure_to_data_uri(fig)
    assert uri.startswith('data:image/png;base64,')
    imgs = [np.zeros((8, 8, 3), np.uint8), np.full((16, 8), 200, np.uint8)]
    strip = rp.image_strip(imgs, height=16, gap=2)
    assert strip.shape == (16, 16 + 8 + 2, 3)
    assert rp.image_strip_data_uri(imgs).startswith('data:image/png;base64,')
    page = rp.html_page('T <x>', [('A & B', rp.table({'k': 1.23456789})), ('img', rp.img_tag(
        uri, 'alt', 'cap'))])
    assert '<h1>T &lt;x&gt;</h1>' in page and 'A &amp; B' in page and '1.235' in page
    with pytest.raises(ValueError):
        rp.image_strip([])


def test_empty_camera_topic(tmp_path, weights):
    """A camera topic without messages gives a complete run with 0 frames, not a crash."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    bag = tmp_path / 'empty'
    with Writer(bag, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        w.add_connection('/cam', 'sensor_msgs/msg/Image', typestore=store)
        c = w.add_connection('/chatter', 'std_msgs/msg/String', typestore=store)
        w.write(c, 5, store.serialize_cdr(store.types['std_msgs/msg/String'](data='x'),
                                          'std_msgs/msg/String'))
    report = tmp_path / 'r.html'
    m = replay(cfg(weights, bag, tmp_path / 'out', report=report))
    assert m['complete'] and m['frames'] == 0 and m['latency_ms']['p50'] is None
    assert m['shift_error']['value'] is None and report.exists()
    assert len(read_bag(tmp_path / 'out')['/chatter']) == 1


def test_bench_replay_module(tmp_path, capsys):
    """``python -m vr_goggles.bench.replay`` prints both throughputs and the ratio."""
    from vr_goggles.bench.replay import main

    rc = main(['--random-init', '--ngf', '4', '--n-blocks', '1', '--engine', 'torch',
               '--frames', '4', '--size', '48x64', '--repeats', '1', '--json',
               str(tmp_path / 'b.json')])
    assert rc == 0
    out = capsys.readouterr().out
    assert 'engine only' in out and 'median ratio' in out
    bench = json.loads((tmp_path / 'b.json').read_text())['bench']
    assert bench['replay_fps'] > 0 and bench['engine_only_fps'] > 0 and bench['ratio'] > 0


@pytest.mark.parametrize('fmt', ['ros1', 'db3'])
def test_output_cdr_is_what_ros2_reads(tmp_path, weights, fmt):
    """Real rclpy deserialises the written images, converted originals and Twists."""
    serialization = pytest.importorskip('rclpy.serialization')
    geometry_msgs = pytest.importorskip('geometry_msgs.msg')
    sensor_msgs = pytest.importorskip('sensor_msgs.msg')

    bag = bf.write_bag(tmp_path / 'in', fmt=fmt, n=3, encoding='bgr8')
    replay(cfg(weights, bag, tmp_path / 'out', policy=weights['policy']))
    got = read_bag(tmp_path / 'out')
    sim = serialization.deserialize_message(got[SIM][1][2], sensor_msgs.Image)
    assert (sim.encoding, sim.width, sim.height, len(sim.data)) == ('rgb8', 64, 64, 64 * 64 * 3)
    assert (sim.header.stamp.sec, sim.header.stamp.nanosec) == (bf.T0 // 10**9, 100_000_000)
    orig = serialization.deserialize_message(got['/camera/image_raw'][1][2], sensor_msgs.Image)
    assert (orig.encoding, orig.width, orig.height, orig.header.frame_id) == (
        'bgr8', 64, 48, 'camera')
    twist = serialization.deserialize_message(got['/cmd_vel'][0][2], geometry_msgs.Twist)
    assert np.isfinite(twist.linear.x)


def test_lean_mcap_writer_is_byte_identical(tmp_path):
    """The replay's lean MCAP writer produces exactly rosbags' bytes (guards rosbags upgrades)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from vr_goggles.replay import mcap_writer_class

    lean = mcap_writer_class()
    assert lean is not Writer, 'rosbags internals changed: replay fell back to the slow writer'
    store = get_typestore(Stores.ROS2_HUMBLE)
    rng = np.random.default_rng(0)
    sizes = [10, 700_000, 50_000, 0, 3, 1 << 20, 400_000] * 3
    payloads = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in sizes]
    files = []
    for name, cls in (('stock', Writer), ('lean', lean)):
        (tmp_path / name).mkdir()
        with cls(tmp_path / name / 'bag', version=8, storage_plugin=StoragePlugin.MCAP) as w:
            a = w.add_connection('/a', 'sensor_msgs/msg/Image', typestore=store)
            b = w.add_connection('/b', 'std_msgs/msg/String', typestore=store)
            for i, data in enumerate(payloads):  # out-of-order log times on purpose
                w.write(a if i % 3 else b, 1000 + (i * 7919) % 500, memoryview(data))
        files.append((tmp_path / name / 'bag' / 'bag.mcap').read_bytes())
    assert files[0] == files[1]


def test_truncated_multi_chunk_mcap(tmp_path, weights):
    """Salvage across several MCAP chunks: whole chunks and the cut one's complete records."""
    bag = bf.write_bag(tmp_path / 'big', fmt='mcap', n=12, height=240, width=320)  # ~3 chunks
    f = next(bag.glob('*.mcap'))
    data = f.read_bytes()
    f.write_bytes(data[:int(len(data) * 0.7)])
    m = replay(cfg(weights, bag, tmp_path / 'out'))
    assert m['complete'] is False and m['salvaged'] is True
    assert 'cut off at byte' in m['error']
    assert 5 <= m['frames'] < 12
    sim = read_bag(tmp_path / 'out')[SIM]
    assert [t for t, _, _ in sim] == [bf.T0 + i * 100_000_000 for i in range(m['frames'])]


@pytest.mark.parametrize('encoding,compressed', [('bgr8', False), ('yuv422', False),
                                                 ('jpeg', True)])
def test_same_pixels_as_the_node_path(tmp_path, weights, encoding, compressed):
    """Each ``_sim`` image equals ``Goggles(image_to_rgb(msg))``, what the ROS node computes."""
    from vr_goggles.goggles import Goggles
    from vr_goggles.image import codec

    bag = bf.write_bag(tmp_path / 'in', fmt='mcap', n=3, encoding=encoding,
                       compressed=compressed)
    replay(cfg(weights, bag, tmp_path / 'out', batch_size=1))
    goggles = Goggles.from_model(weights['model'], engine='torch')
    orig, got = read_bag(bag), read_bag(tmp_path / 'out')
    for (_, m_in, _), (_, m_out, _) in zip(orig['/camera/image_raw'], got[SIM]):
        rgb = (codec.compressed_to_numpy(m_in) if compressed
               else codec.image_to_rgb(m_in))
        expect = goggles(rgb)
        actual = np.asarray(m_out.data, np.uint8).reshape(64, 64, 3)
        assert np.array_equal(actual, expect)
