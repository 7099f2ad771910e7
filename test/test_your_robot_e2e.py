"""docs/your_robot.md end to end at tiny scale, on real indoor frames (issue #39, item 3).

A ROS 1 bag (CompressedImage jpeg) of ``../shared/real_indoor/desk_sequence`` is the robot's
recording, an MCAP bag (raw rgb8) of ``rgbd_sequence`` + ``pair`` the held-out one. The guide's
verbs run as a user runs them, each in its own process from a fresh working folder, with the
guide's flags and only the scale reduced (steps, widths): ``collect`` a sim folder ->
``frames`` -> ``train segmenter`` (sim and pseudo-labeller) -> ``train translator --preset
vr_goggles`` -> ``replay`` of the held-out bag per snapshot -> ``export`` ONNX beside the
weights -> ``goggles_node`` (onnxruntime) over DDS publishing exactly that ONNX model's output
for the held-out bag's frames. A second test checks every ``vr-goggles`` line of the guide
against the parsers that will read it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import re
import shlex
import subprocess
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
pytest.importorskip('rosbags')

import realbags  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / 'docs' / 'your_robot.md'
TOPIC = '/camera/image_raw'
#: the guide's flags, at tiny scale (the only difference from the guide's commands)
TINY_SEG = ['--steps', '4', '--batch-size', '4', '--width', '4']
TINY_GAN = ['--steps', '2', '--snapshot-every', '1', '--warmup-steps', '0',
            '--pseudo-start-step', '0', '--ngf', '4', '--n-blocks', '1', '--ndf', '4',
            '--d-layers', '2', '--no-progress']


def _vr(cwd: Path, *argv: str, expect: int = 0) -> str:
    """``vr-goggles ARGV`` in its own process from ``cwd``; its output (asserting the status)."""
    env = {**os.environ, 'PYGLET_HEADLESS': '1',
           'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')])}
    proc = subprocess.run([sys.executable, '-m', 'vr_goggles.cli', *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == expect, (argv, proc.stdout[-2000:], proc.stderr[-3000:])
    return proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(not realbags.REAL_INDOOR.is_dir(), reason='../shared/real_indoor missing')
def test_the_guide_end_to_end_on_real_frames(tmp_path):
    """From a robot's bag to its own goggles publishing over DDS, with the guide's verbs."""
    rclpy = pytest.importorskip('rclpy')
    pytest.importorskip('onnxruntime')
    t0 = time.monotonic()
    w = tmp_path
    realbags.write_frames_bag(w / 'robot_run1.bag', realbags.real_frames('desk_sequence'),
                              fmt='ros1', compressed='jpeg', topic=f'{TOPIC}/compressed')
    held = realbags.real_frames('rgbd_sequence', 'pair')
    realbags.write_frames_bag(w / 'held_out', held, fmt='mcap', topic=TOPIC)

    _vr(w, 'collect', '--domain', 'sim', '--n', '16', '--out', 'data/sim')
    _vr(w, 'collect', '--domain', 'randomized', '--n', '16', '--seed', '300000', '--out',
        'data/rand')
    out = _vr(w, 'frames', 'robot_run1.bag', '--topic', f'{TOPIC}/compressed', '--out',
              'data/robot', '--every', '0.2')
    assert '5 frame(s) of 10 message(s)' in out
    assert json.loads((w / 'data/robot/frames.json').read_text())['written'] == 5
    _vr(w, 'train', 'segmenter', '--data', 'data/sim', '--lr', '0.002', *TINY_SEG,
        '--out', 'runs/segmenter/segmenter')
    _vr(w, 'train', 'segmenter', '--data', 'data/sim,data/rand', '--lr', '0.002', *TINY_SEG,
        '--out', 'runs/segmenter_dr/segmenter_dr')
    out = _vr(w, 'train', 'translator', '--preset', 'vr_goggles', '--sim', 'data/sim', '--real',
              'data/robot', '--segmenter', 'runs/segmenter/segmenter', '--pseudo-segmenter',
              'runs/segmenter_dr/segmenter_dr', '--precision', 'fp32', *TINY_GAN,
              '--out', 'runs/robot_vr')
    assert 'has only 5 frame(s)' in out  # the small-domain warning reaches the user
    snaps = sorted((w / 'runs/robot_vr/snapshots').glob('*.safetensors'))
    assert [s.stem for s in snaps] == ['step_000001', 'step_000002']
    # pick: each snapshot replayed on the held-out bag, its metrics in one JSON each
    for s in snaps:
        rel = f'runs/robot_vr/snapshots/{s.stem}'
        _vr(w, 'replay', 'held_out', '--topic', TOPIC, '--model', rel, '--out',
            f'runs/pick/{s.stem}', '--metrics', f'runs/pick/{s.stem}.json', '--report',
            f'runs/pick/{s.stem}.html', '--no-progress')
        m = json.loads((w / f'runs/pick/{s.stem}.json').read_text())
        assert m['complete'] and m['frames'] == len(held) == 7
        assert m['source_sizes'] and m['flicker']['ratio'] is not None
        assert (w / f'runs/pick/{s.stem}.html').stat().st_size > 1000
    best = 'runs/robot_vr/snapshots/step_000002'
    _vr(w, 'export', '--model', best, '--onnx', f'{best}.onnx', '--dynamic-batch')
    onnx_path = w / f'{best}.onnx'
    assert onnx_path.stat().st_size > 0

    # the new weights on the robot: goggles_node (model:=, engine onnxruntime) over DDS
    import onnxruntime as ort

    from vr_goggles.image.preprocess import Preprocessor, denormalize, normalize

    pre = Preprocessor(size=(64, 64), keep_aspect=True)
    sess = ort.InferenceSession(str(onnx_path), providers=['CPUExecutionProvider'])
    expected = []
    for rgb in held:
        (y,) = sess.run(None, {'input': normalize(pre.image(rgb)[None])})
        expected.append(denormalize(y)[0])
    got = _run_goggles_node(rclpy, str(w / best), held)
    assert len(got) == len(held)
    for i, (exp, img) in enumerate(zip(expected, got)):
        assert img.shape == (64, 64, 3)
        assert np.abs(img.astype(int) - exp.astype(int)).max() <= 1, i
    assert time.monotonic() - t0 < 150


def _run_goggles_node(rclpy, model: str, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Publish ``frames`` (rgb8, stamped i s) to a GogglesNode; its image_sim, in stamp order."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from vr_goggles.image.codec import image_to_rgb, numpy_to_image
    from vr_goggles.nodes.goggles_node import GogglesNode
    from vr_goggles.nodes.ros_common import autostart

    domain = 60 + os.getpid() % 40
    saved = {k: os.environ.get(k) for k in ('ROS_AUTOMATIC_DISCOVERY_RANGE',
                                            'ROS_LOCALHOST_ONLY')}
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    ex = SingleThreadedExecutor(context=context)
    node = GogglesNode(namespace='/robot', context=context, parameter_overrides=[
        Parameter('model', value=model), Parameter('engine', value='onnxruntime'),
        Parameter('input_qos', value='reliable'), Parameter('output_qos', value='reliable')])
    tester = rclpy.create_node('robot_camera', context=context)
    got: dict[int, np.ndarray] = {}
    qos = QoSProfile(depth=50)
    tester.create_subscription(Image, '/robot/image_sim',
                               lambda m: got.setdefault(m.header.stamp.sec, image_to_rgb(m)),
                               qos)
    pub = tester.create_publisher(Image, '/robot/image', qos)
    try:
        assert autostart(node)
        ex.add_node(node)
        ex.add_node(tester)
        deadline = time.monotonic() + 20
        while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.05)
        for i, rgb in enumerate(frames):  # one at a time: the node keeps the latest frame only
            header = Header(frame_id='camera')
            header.stamp.sec = i + 1
            pub.publish(numpy_to_image(rgb, 'rgb8', header=header, msg_cls=Image))
            deadline = time.monotonic() + 20
            while i + 1 not in got and time.monotonic() < deadline:
                ex.spin_once(timeout_sec=0.05)
    finally:
        ex.shutdown(timeout_sec=2)
        node.close()
        node.destroy_node()
        tester.destroy_node()
        context.try_shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return [got[k] for k in sorted(got)]


def _guide_commands() -> list[list[str]]:
    """Every ``vr-goggles`` command in the guide's bash blocks (continuations joined)."""
    text = GUIDE.read_text(encoding='utf-8')
    cmds = []
    for block in re.findall(r'```bash\n(.*?)```', text, flags=re.S):
        joined = re.sub(r'\\\n\s*', ' ', block)
        for line in joined.splitlines():
            line = line.split(' #')[0].strip()
            if line.startswith('vr-goggles '):
                cmds.append(shlex.split(line.replace('$s', 'step_003500'))[1:])
    return cmds


def test_every_guide_command_parses_as_written():
    """Each ``vr-goggles`` line of docs/your_robot.md is accepted by the parsers that read it.

    The verb's own parser, and for the forwarding verbs the training script's: a flag renamed
    or removed there fails here, and the end-to-end test above runs the chain itself.
    """
    from vr_goggles.cli import build_parser

    cmds = _guide_commands()
    verbs = {c[0] for c in cmds}
    assert {'frames', 'labels', 'train', 'replay', 'export'} <= verbs, verbs
    parser = build_parser()
    for argv in cmds:
        args = parser.parse_args(argv)
        if argv[0] == 'train':
            if args.what == 'segmenter':
                from sim_training.train_segmenter import build_parser as seg

                seg().parse_args(args.args)
            elif args.what == 'translator':
                from sim_training.train_translator import config_from_args

                config_from_args(args.args)
            elif args.what == 'domain-score':
                from sim_training.train_domain_score import build_parser as ds

                ds().parse_args(args.args)
            else:
                from sim_training.policy_training.args import parse_args

                parse_args(args.args)
        elif argv[0] == 'collect':
            from sim_training.collect import build_parser as col

            col().parse_args(args.args)
        elif argv[0] == 'labels':
            assert '--out' in args.args, argv  # labels_import's one required flag
