"""sim_training.collect writes the documented dataset layout and a readable ROS 2 bag."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip('miniworld')
os.environ.setdefault('PYGLET_HEADLESS', '1')

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from sim_training import collect  # noqa: E402
from vr_goggles.image import semantics  # noqa: E402


def read_rgb(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]


def test_collect_sim_with_labels(tmp_path):
    out = tmp_path / 'sim'
    assert collect.main(['--domain', 'sim', '--n', '6', '--out', str(out), '--seed', '4',
                         '--size', '32', '--no-progress']) == 0
    images = sorted((out / 'images').glob('*.png'))
    labels = sorted((out / 'labels').glob('*.png'))
    assert [p.name for p in images] == [f'{i:06d}.png' for i in range(6)]
    assert [p.name for p in labels] == [p.name for p in images]
    assert read_rgb(images[0]).shape == (32, 32, 3)
    lab = cv2.imread(str(labels[0]), cv2.IMREAD_UNCHANGED)
    assert lab.shape == (32, 32) and lab.dtype == np.uint8
    assert lab.max() < semantics.NUM_CLASSES
    assert json.loads((out / 'classes.json').read_text()) == semantics.classes_json()
    meta = json.loads((out / 'meta.json').read_text())
    assert meta['domain'] == 'sim' and meta['n'] == 6 and meta['seed'] == 4
    assert meta['size'] == [32, 32] and 'sim_training.collect' in meta['command']
    assert not (out / 'eval_labels').exists()


def test_collect_real_sequences_and_bag(tmp_path):
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    out, bag = tmp_path / 'real', tmp_path / 'drive_bag'
    assert collect.main(['--domain', 'real', '--n', '3', '--out', str(out), '--seed', '1',
                         '--size', '32', '--trajectories', '2', '--steps', '4',
                         '--bag', str(bag), '--no-progress']) == 0
    assert not (out / 'labels').exists()  # real labels are for evaluation only
    assert len(list((out / 'eval_labels').glob('*.png'))) == 3
    for k in range(2):
        seq = out / 'sequences' / f'{k:03d}'
        assert sorted(p.name for p in seq.glob('*.png')) == [f'{i:06d}.png' for i in range(4)]
        assert len(json.loads((seq / 'poses.json').read_text())) == 4
    first = read_rgb(out / 'sequences' / '000' / '000000.png')

    typestore = get_typestore(Stores.ROS2_HUMBLE)
    with AnyReader([bag], default_typestore=typestore) as reader:
        assert reader.message_count == 8
        assert [c.topic for c in reader.connections] == [collect.IMAGE_TOPIC]
        stamps, msgs = [], []
        for conn, _, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            stamps.append(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
            msgs.append(msg)
    assert stamps == sorted(stamps) and len(set(stamps)) == 8
    assert all(m.encoding == 'rgb8' and (m.height, m.width, m.step) == (32, 32, 96)
               for m in msgs)
    assert np.array_equal(np.asarray(msgs[0].data).reshape(32, 32, 3), first)


def test_collect_refuses_existing_bag(tmp_path):
    bag = tmp_path / 'bag'
    bag.mkdir()
    assert collect.main(['--n', '1', '--out', str(tmp_path / 'o'), '--bag', str(bag),
                         '--no-progress']) == 2


def test_collect_hand_labels_are_the_eval_labels_made_trainable(tmp_path, capsys):
    """--hand-labels: the same real-proxy frames and labels, in DIR/labels for training."""
    common = ['--domain', 'real', '--n', '3', '--seed', '7', '--no-progress']
    assert collect.main(common + ['--out', str(tmp_path / 'e')]) == 0
    assert collect.main(common + ['--out', str(tmp_path / 'h'), '--hand-labels']) == 0
    assert not (tmp_path / 'h' / 'eval_labels').exists()
    for name in ('000000.png', '000002.png'):
        assert (tmp_path / 'h' / 'labels' / name).read_bytes() == (
            tmp_path / 'e' / 'eval_labels' / name).read_bytes()
        assert (tmp_path / 'h' / 'images' / name).read_bytes() == (
            tmp_path / 'e' / 'images' / name).read_bytes()
    assert json.loads((tmp_path / 'h' / 'meta.json').read_text())['labels'] == 'labels'
    assert collect.main(['--domain', 'sim', '--hand-labels', '--n', '1',
                         '--out', str(tmp_path / 's'), '--no-progress']) == 2
    assert '--hand-labels needs --domain real' in capsys.readouterr().err
