"""Replay defects found on robot-camera bags from other projects (issue #39, item 4).

Each test fails on the code before the fix: a run that translated nothing exiting 0, a cut ROS 1
bag salvaging nothing, reasons worded as Python tuples or UTF-8 errors, one-frame reports, HxW
sizes, ``/compressed_sim`` names, ROS 1 logs under a type ROS 2 lacks, no CameraInfo for the
``_sim`` image.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
import sys

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bagfactory as bf  # noqa: E402

torch = pytest.importorskip('torch')
pytest.importorskip('rosbags')

from test_replay import cfg, read_bag  # noqa: E402

from vr_goggles.replay import ReplayError, replay  # noqa: E402


@pytest.fixture(scope='module')
def weights(tmp_path_factory) -> dict[str, str]:
    """Tiny generator weights written with vr_goggles.weights.save (as test_replay's)."""
    from vr_goggles.models import build
    from vr_goggles.weights import ModelCard, save

    d = tmp_path_factory.mktemp('weights')
    torch.manual_seed(0)
    gk = {'ngf': 4, 'n_blocks': 1, 'n_down': 2}
    save(d / 'gen', build('ResnetGenerator', **gk).state_dict(),
         ModelCard(name='gen', architecture='ResnetGenerator', kwargs=gk, input_size=[64, 64]))
    return {'model': str(d / 'gen')}


def _write(path: Path, msgs: list[tuple[str, str, object, int]], *, ros1: bool = False) -> Path:
    """A bag of ``(topic, msgtype, message, log time)`` in the given order."""
    writer, store, ser = bf.open_writer(path, 'ros1' if ros1 else 'mcap')
    conns: dict[str, object] = {}
    with writer:
        for topic, typ, msg, t in msgs:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, typ, typestore=store)
            writer.write(conns[topic], t, ser(msg, typ))
    return path


def _types(ros1: bool = False):
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE).types


def _header(types, sec: int, ros1: bool = False):
    stamp = types['builtin_interfaces/msg/Time'](sec=sec, nanosec=0)
    if ros1:
        return types['std_msgs/msg/Header'](seq=0, stamp=stamp, frame_id='cam')
    return types['std_msgs/msg/Header'](stamp=stamp, frame_id='cam')


def _image(types, sec: int, h: int = 48, w: int = 64, ros1: bool = False):
    rgb = bf.frame_rgb(sec, h, w)
    return types['sensor_msgs/msg/Image'](header=_header(types, sec, ros1), height=h, width=w,
                                          encoding='rgb8', is_bigendian=0, step=w * 3,
                                          data=rgb.reshape(-1))


def _cli(args: list[str]) -> int:
    from vr_goggles.cli import main

    return main(args)


# -- a run that translated nothing, skipped frames ----------------------------------------------

def test_all_frames_undecodable_exit_nonzero_and_say_why(tmp_path, weights, capsys):
    """CompressedImage 'qoi; rgb8': 0 of 1 frames is an error (exit 3), with the reason."""
    t = _types()
    msg = t['sensor_msgs/msg/CompressedImage'](header=_header(t, 1), format='qoi; rgb8',
                                               data=np.arange(64, dtype=np.uint8))
    bag = _write(tmp_path / 'qoi', [('/cam/compressed', 'sensor_msgs/msg/CompressedImage',
                                     msg, 10**9)])
    mpath = tmp_path / 'm.json'
    rc = _cli(['replay', str(bag), '--out', str(tmp_path / 'out'), '--model',
               weights['model'], '--engine', 'torch', '--no-progress', '--metrics', str(mpath)])
    captured = capsys.readouterr()
    assert rc != 0
    m = json.loads(mpath.read_text())
    assert m['complete'] is False and m['frames'] == 0
    assert 'none of the 1 frames of /cam/compressed could be translated' in m['error']
    assert 'bad image' in m['error'] and 'qoi' in m['error']
    assert 'none of the 1 frames' in captured.err
    assert 'INCOMPLETE' in captured.out and 'complete,' not in captured.out


def test_skipped_frames_counted_with_reasons_in_summary(tmp_path, weights):
    """A run that skipped a frame says how many and why in the printed summary."""
    from vr_goggles.replay import format_summary

    t = _types()
    bad = t['sensor_msgs/msg/Image'](header=_header(t, 1), height=2, width=2, encoding='32FC1',
                                     is_bigendian=0, step=8, data=np.zeros(16, np.uint8))
    bag = _write(tmp_path / 'b', [('/cam', 'sensor_msgs/msg/Image', _image(t, 0), 10**9),
                                  ('/cam', 'sensor_msgs/msg/Image', bad, 2 * 10**9),
                                  ('/cam', 'sensor_msgs/msg/Image', _image(t, 2), 3 * 10**9)])
    m = replay(cfg(weights, bag, tmp_path / 'out'))
    assert m['complete'] and m['frames'] == 2
    text = format_summary(m)
    assert '2 of 3 frames' in text
    assert '1 skipped: 1 bad image' in text and '32FC1' in text


# -- damaged ROS 1 bags ------------------------------------------------------------------------

def test_ros1_bag_cut_at_60_percent_salvages_readable_chunks(tmp_path, weights, capsys):
    """Like the MCAP salvage: frames of the readable chunks, exit 3, reasons as sentences."""
    bag = bf.write_bag(tmp_path / 'in', fmt='ros1', n=10)
    cut = tmp_path / 'cut.bag'
    data = bag.read_bytes()
    cut.write_bytes(data[:int(len(data) * 0.6)])
    m = replay(cfg(weights, cut, tmp_path / 'out'))
    assert m['salvaged'] is True and m['complete'] is False
    assert 0 < m['frames'] < 10
    assert "('" not in m['error'] and ',)' not in m['error']
    assert 'cut off at byte' in m['error'] and str(cut) in m['error']
    sim = read_bag(tmp_path / 'out')['/camera/image_raw_sim']
    assert [t for t, _, _ in sim] == [bf.T0 + i * 100_000_000 for i in range(m['frames'])]
    rc = _cli(['replay', str(cut), '--out', str(tmp_path / 'out2'), '--model', weights['model'],
               '--engine', 'torch', '--no-progress'])
    err = capsys.readouterr().err
    assert rc == 3 and "('" not in err


def test_ros1_bag_cut_in_compressed_chunks(tmp_path, weights):
    """bz2 chunks: the complete ones are read; the cut one is named as lost."""
    from rosbags.rosbag1 import Writer as W1

    t = _types(ros1=True)
    path = tmp_path / 'bz.bag'
    writer = W1(path)
    writer.set_compression(W1.CompressionFormat.BZ2)
    writer.chunk_threshold = 4000  # several chunks
    with writer:
        c = writer.add_connection('/cam', 'sensor_msgs/msg/Image', typestore=_store(True))
        for i in range(10):
            writer.write(c, bf.T0 + i, _store(True).serialize_ros1(
                _image(t, i, h=24, w=32, ros1=True), 'sensor_msgs/msg/Image'))
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * 0.6)])
    m = replay(cfg(weights, path, tmp_path / 'out'))
    assert m['salvaged'] and not m['complete'] and 0 < m['frames'] < 10
    assert 'bz2 chunk' in m['error'] and 'lost' in m['error']


def _store(ros1: bool):
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)


# -- unclear reasons -------------------------------------------------------------------------

def test_unreadable_inputs_say_what_they_are(tmp_path, weights, caplog):
    """Random .bag / .mcap / .db3, an empty folder, a folder without metadata.yaml."""
    rng = np.random.default_rng(0)
    junk = rng.integers(128, 256, 4000, dtype=np.uint8).tobytes()
    for name, expect in (('r.bag', 'not a ROS 1 bag'), ('r.mcap', 'not an MCAP file'),
                         ('r.db3', 'not a SQLite database')):
        (tmp_path / name).write_bytes(junk)
        with caplog.at_level(logging.WARNING), pytest.raises(ReplayError) as e:
            replay(cfg(weights, tmp_path / name, tmp_path / 'o'))
        assert expect in str(e.value) and name in str(e.value)
        assert 'utf-8' not in str(e.value)
    assert 'salvag' not in caplog.text  # a file that is not MCAP is not "salvaged"
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(ReplayError, match=r'empty: not a ROS 2 bag folder: it is empty'):
        replay(cfg(weights, empty, tmp_path / 'o'))
    nometa = tmp_path / 'nometa'
    nometa.mkdir()
    src = bf.write_bag(tmp_path / 'src', fmt='mcap', n=2)
    mcap = next(src.glob('*.mcap'))
    (nometa / mcap.name).write_bytes(mcap.read_bytes())
    with pytest.raises(ReplayError) as e:
        replay(cfg(weights, nometa, tmp_path / 'o'))
    assert 'has no metadata.yaml' in str(e.value) and mcap.name in str(e.value)
    assert 'Expected metadata file' not in str(e.value)
    assert not (tmp_path / 'o').exists()


def test_missing_weights_are_named(tmp_path, weights, capsys):
    """A missing --model names the weights, not a '.json model card'."""
    bag = bf.write_bag(tmp_path / 'in', fmt='mcap', n=1)
    rc = _cli(['replay', str(bag), '--out', str(tmp_path / 'o'), '--model',
               str(tmp_path / 'missing.json'), '--engine', 'torch', '--no-progress'])
    err = capsys.readouterr().err
    assert rc == 1
    assert 'missing.safetensors' in err and 'weights not found' in err
    assert 'model card not found' not in err


# -- report ------------------------------------------------------------------------------------

def test_one_frame_bag_report(tmp_path, weights):
    """No 'None' flicker, no 1e-09 s duration, no one-point latency plot; sizes are WxH."""
    bag = bf.write_bag(tmp_path / 'one', fmt='mcap', n=1, height=48, width=64,
                       other_topics=False)
    report = tmp_path / 'r.html'
    m = replay(cfg(weights, bag, tmp_path / 'out', report=report))
    assert m['frames'] == 1 and m['complete']
    assert m['bag_duration_s'] == 0.0
    assert m['source_sizes'] == {'64x48': 1}  # width x height, as docs/replay.md writes
    html = report.read_text()
    assert 'latency plot' not in html and 'flicker plot' not in html
    summary = html.split('<h2>', 2)[1]
    assert 'None' not in summary and '1e-09' not in summary
    assert 'n/a (needs two consecutive frames)' in summary


# -- names and types in the output -------------------------------------------------------------

def test_raw_image_on_a_compressed_name(tmp_path, weights):
    """A raw Image topic named .../compressed gives .../<base>_sim, not compressed_sim."""
    t = _types()
    bag = _write(tmp_path / 'b', [('/cam/image/compressed', 'sensor_msgs/msg/Image',
                                   _image(t, 0), 10**9)])
    m = replay(cfg(weights, bag, tmp_path / 'out'))
    assert m['sim_topic'] == '/cam/image_sim'
    assert '/cam/image_sim' in read_bag(tmp_path / 'out')


def test_ros1_rosout_becomes_rcl_interfaces_log(tmp_path, weights):
    """ROS 1 rosgraph_msgs/Log is written as rcl_interfaces/msg/Log with ROS 2 levels."""
    from rosbags.highlevel import AnyReader

    t = _types(ros1=True)
    log = t['rosgraph_msgs/msg/Log'](header=_header(t, 5, ros1=True), level=4, name='/driver',
                                     msg='exposure clipped', file='d.cpp', function='f',
                                     line=12, topics=['/cam'])
    bag = _write(tmp_path / 'in.bag', [
        ('/cam', 'sensor_msgs/msg/Image', _image(t, 0, ros1=True), 10**9),
        ('/rosout', 'rosgraph_msgs/msg/Log', log, 10**9 + 1)], ros1=True)
    replay(cfg(weights, bag, tmp_path / 'out'))
    with AnyReader([tmp_path / 'out']) as r:
        assert r.topics['/rosout'].msgtype == 'rcl_interfaces/msg/Log'
        assert 'rosgraph_msgs/msg/Log' not in {i.msgtype for i in r.topics.values()}
        (c, _, raw), = list(r.messages([x for x in r.connections if x.topic == '/rosout']))
        out = r.deserialize(raw, c.msgtype)
    assert (out.level, out.name, out.msg, out.line, out.stamp.sec) == (
        30, '/driver', 'exposure clipped', 12, 5)


def test_crop_box_is_the_preprocessing_crop():
    """crop_box (for CameraInfo) agrees with preprocess.center_crop_to_aspect."""
    from vr_goggles.image.preprocess import center_crop_to_aspect
    from vr_goggles.replay.writer import crop_box

    for h, w in ((720, 1280), (960, 1280), (480, 752), (260, 346), (64, 48), (7, 7)):
        idx = np.arange(h * w).reshape(h, w)
        crop = center_crop_to_aspect(idx, (64, 64))
        x0, y0, cw, ch = crop_box(h, w, (64, 64))
        assert crop.shape == (ch, cw) and crop[0, 0] == y0 * w + x0


def test_sim_camera_info_describes_crop_and_scale(tmp_path, weights):
    """/camera/camera_info -> /camera/camera_info_sim: K and P cropped and scaled to 64x64."""
    t = _types()
    h, w = 64, 128  # centre crop 64x64 at x0 = 32, scale 1
    k = [100.0, 0, 70.0, 0, 110.0, 30.0, 0, 0, 1]
    p = [100.0, 0, 70.0, -5.0, 0, 110.0, 30.0, 0, 0, 0, 1, 0]
    roi = t['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0,
                                                do_rectify=False)
    info = t['sensor_msgs/msg/CameraInfo'](
        header=_header(t, 0), height=h, width=w, distortion_model='plumb_bob',
        d=np.array([0.1, 0, 0, 0, 0]), k=np.array(k), r=np.eye(3).reshape(-1),
        p=np.array(p), binning_x=0, binning_y=0, roi=roi)
    msgs = []
    for i in range(2):
        msgs.append(('/camera/camera_info', 'sensor_msgs/msg/CameraInfo', info, i * 10**9))
        msgs.append(('/camera/image_raw', 'sensor_msgs/msg/Image', _image(t, i, h, w),
                     i * 10**9 + 1))
    bag = _write(tmp_path / 'b', msgs)
    replay(cfg(weights, bag, tmp_path / 'out'))
    got = read_bag(tmp_path / 'out')['/camera/camera_info_sim']
    assert len(got) == 2
    out = got[0][1]
    assert (out.height, out.width, out.distortion_model) == (64, 64, 'plumb_bob')
    assert np.allclose(out.k, [100, 0, 38, 0, 110, 30, 0, 0, 1])
    assert np.allclose(out.p, [100, 0, 38, -5, 0, 110, 30, 0, 0, 0, 1, 0])
    assert np.allclose(out.d, [0.1, 0, 0, 0, 0])
    assert out.header.frame_id == 'cam'
    # 128x128 -> 64x64: scale 0.5 about pixel centres
    from vr_goggles.replay.writer import sim_camera_info
    f = sim_camera_info(info, (128, 128), (64, 64))
    assert np.allclose(f['k'][[0, 2, 4, 5]], [50, (70 + 0.5) * 0.5 - 0.5, 55,
                                              (30 + 0.5) * 0.5 - 0.5])
