"""The user's path as ``vr-goggles`` verbs (issue #39, item 1): frames, train, select, collect.

``frames`` on ROS 1 and MCAP bags of real indoor frames (raw and compressed), its time
subsampling, near-duplicate drop, skipped messages, refusals; the training verbs forward their
arguments and exit status to the trainers in a subprocess, and leave Ctrl-C to them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import signal
import sys
import threading
import time

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
pytest.importorskip('rosbags')

import realbags  # noqa: E402

from vr_goggles.cli import main as cli  # noqa: E402

needs_real = pytest.mark.skipif(not realbags.REAL_INDOOR.is_dir(),
                                reason='../shared/real_indoor not present')


def _json(out: Path) -> dict:
    return json.loads((out / 'frames.json').read_text())


@needs_real
@pytest.mark.parametrize('fmt,encoding,compressed', [
    ('ros1', 'rgb8', ''), ('ros1', 'mono8', ''), ('mcap', 'bgr8', ''), ('mcap', '', 'jpeg'),
    ('ros1', '', 'png')])
def test_frames_from_a_bag_at_the_cameras_size(tmp_path, fmt, encoding, compressed, capsys):
    """Every frame comes out at the camera's size, RGB, with its stamp and frame_id."""
    frames = realbags.real_frames('desk_sequence', size=(160, 120))
    bag = realbags.write_frames_bag(tmp_path / ('cam.bag' if fmt == 'ros1' else 'cam'), frames,
                                    fmt=fmt, encoding=encoding or 'rgb8', compressed=compressed)
    out = tmp_path / 'real'
    assert cli(['frames', str(bag), '--topic', '/camera/image_raw', '--out', str(out),
                '--dedup', '0']) == 0
    files = sorted((out / 'images').glob('*.png'))
    assert len(files) == len(frames) == 10
    doc = _json(out)
    assert doc['written'] == 10 and doc['topic'] == '/camera/image_raw'
    assert doc['frames'][3]['size_wh'] == [160, 120] and doc['frames'][3]['frame_id'] == 'camera'
    assert doc['frames'][3]['stamp'] == [1_700_000_000, 300_000_000]
    got = cv2.imread(str(files[3]))[:, :, ::-1].astype(int)
    want = frames[3].astype(int)
    if encoding == 'mono8':  # grey in the bag: grey out, from the same frame
        want = np.repeat(cv2.cvtColor(frames[3], cv2.COLOR_RGB2GRAY)[..., None], 3, 2)
    tol = 12 if compressed == 'jpeg' else 0
    assert np.abs(got - want).mean() <= tol
    assert '10 frame(s) of 10 message(s)' in capsys.readouterr().out


@needs_real
def test_frames_every_and_dedup(tmp_path):
    """--every keeps one frame per interval; --dedup drops a robot standing still."""
    frames = realbags.real_frames('desk_sequence', size=(80, 60))
    bag = realbags.write_frames_bag(tmp_path / 'a', frames)  # 10 frames 0.1 s apart
    assert cli(['frames', str(bag), '--out', str(tmp_path / 'e'), '--every', '0.25',
                '--dedup', '0']) == 0
    doc = _json(tmp_path / 'e')
    assert [f['index'] for f in doc['frames']] == [0, 3, 6, 9]
    assert doc['dropped'] == {'--every': 6}
    # the same view 5 times, then another view 5 times: two frames survive --dedup
    still = [frames[0]] * 5 + [frames[9]] * 5
    bag2 = realbags.write_frames_bag(tmp_path / 'b', still, compressed='jpeg')
    assert cli(['frames', str(bag2), '--out', str(tmp_path / 'd')]) == 0
    doc = _json(tmp_path / 'd')
    assert [f['index'] for f in doc['frames']] == [0, 5]
    assert doc['dropped'] == {'--dedup (near-duplicate)': 8}


def test_frames_skips_undecodable_and_exits_3_for_nothing(tmp_path, capsys):
    """Undecodable messages are counted with a reason; nothing written is exit 3."""
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    t = store.types
    from rosbags.rosbag2 import StoragePlugin, Writer

    def header(sec):
        stamp = t['builtin_interfaces/msg/Time'](sec=sec, nanosec=0)
        return t['std_msgs/msg/Header'](stamp=stamp, frame_id='cam')

    bad = t['sensor_msgs/msg/CompressedImage'](header=header(1), format='qoi; rgb8',
                                               data=np.arange(64, dtype=np.uint8))
    path = tmp_path / 'qoi'
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        c = w.add_connection('/cam/compressed', 'sensor_msgs/msg/CompressedImage',
                             typestore=store)
        w.write(c, 10**9, store.serialize_cdr(bad, 'sensor_msgs/msg/CompressedImage'))
    rc = cli(['frames', str(path), '--out', str(tmp_path / 'o')])
    err = capsys.readouterr().err
    assert rc == 3
    assert 'skipped 1 undecodable message(s)' in err and 'qoi' in err
    assert 'nothing written' in err and 'Traceback' not in err


@needs_real
def test_frames_refusals_are_one_line(tmp_path, capsys):
    """A second run on the same --out, a missing bag or topic: one line, exit 2."""
    bag = realbags.write_frames_bag(tmp_path / 'a', realbags.real_frames('pair', size=(80, 60)))
    out = tmp_path / 'o'
    assert cli(['frames', str(bag), '--out', str(out)]) == 0
    capsys.readouterr()
    for argv, says in ((['frames', str(bag), '--out', str(out)], '--overwrite'),
                       (['frames', str(tmp_path / 'nope.bag'), '--out', str(tmp_path / 'x')],
                        'no such bag'),
                       (['frames', str(bag), '--topic', '/other', '--out', str(tmp_path / 'y')],
                        'no topic /other')):
        assert cli(argv) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err
    assert cli(['frames', str(bag), '--out', str(out), '--overwrite', '--dedup', '0']) == 0
    assert _json(out)['written'] == 2


def test_train_verb_runs_the_trainer_and_returns_its_status(tmp_path, capfd):
    """``vr-goggles train segmenter`` trains in a subprocess; a refusal's status comes back."""
    out = tmp_path / 'seg'
    argv = ['train', 'segmenter', '--synthetic', '8', '--size', '16', '--width', '4',
            '--batch-size', '2', '--steps', '2', '--out', str(out)]
    assert cli(argv) == 0
    assert (tmp_path / 'seg.safetensors').exists()
    capfd.readouterr()
    assert cli(argv) == 2  # the trainer refuses the rerun, naming --overwrite
    assert '--overwrite' in capfd.readouterr().err
    assert cli(['train', 'segmenter', '--help']) == 0
    assert cli(['train', 'translator', '--help']) == 0
    assert cli(['train', 'policy', '--help']) == 0
    assert cli(['select', '--help']) == 0  # flags reach select_translator, not vr-goggles
    assert cli(['collect', '--help']) == 0
    text = capfd.readouterr().out
    assert 'sim_training.train_segmenter' in text and 'select_translator' in text


def test_forward_leaves_ctrl_c_to_the_child(tmp_path, monkeypatch):
    """The child's own Ctrl-C handling decides; the verb returns its 130, no traceback here."""
    from vr_goggles.commands import forward as fw

    (tmp_path / 'sleeper.py').write_text(
        'import os, sys, time\n'
        f'open({str(tmp_path / "pid")!r}, "w").write(str(os.getpid()))\n'
        'try:\n    time.sleep(30)\nexcept KeyboardInterrupt:\n'
        '    print("child: saved", file=sys.stderr); sys.exit(130)\n')
    monkeypatch.setenv('PYTHONPATH', str(tmp_path))

    def ctrl_c():
        pid_file = tmp_path / 'pid'
        for _ in range(300):
            if pid_file.exists() and pid_file.read_text():
                break
            time.sleep(0.05)
        time.sleep(0.3)
        # a terminal's Ctrl-C reaches both processes
        os.kill(int(pid_file.read_text()), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=ctrl_c, daemon=True).start()
    t0 = time.monotonic()
    assert fw.forward('sleeper', []) == 130
    assert time.monotonic() - t0 < 20
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
