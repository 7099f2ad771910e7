"""Export ChairNav-v0 frames (and labels) as an image dataset, sequences and a ROS 2 bag.

``python -m sim_training.collect --domain sim --n 5000 --out data/sim --seed 0``

Layout::

    DIR/images/000000.png          RGB frames
    DIR/labels/000000.png          mono8 class ids (vr_goggles.image.semantics), for sim/randomized
    DIR/eval_labels/000000.png     the same for --domain real: evaluation only, never training;
                                   with --hand-labels they go to DIR/labels instead: they then
                                   stand in for camera frames labelled by hand (segmenter_real)
    DIR/classes.json               vr_goggles.image.semantics.classes_json()
    DIR/meta.json                  domain, seed, n, size, split, command, counts
    DIR/sequences/KKK/000000.png   --trajectories K: K driven paths of --steps T frames
    DIR/sequences/KKK/poses.json   per frame: action taken before it, pose, distance, success
    BAG/                           --bag BAG: rosbag2 directory (MCAP) of the sequence frames,
                                   sensor_msgs/msg/Image rgb8 on /camera/image_raw

Frames come from a behaviour policy that mixes random actions with a planning oracle that
drives to the chair around obstacles (per episode, the oracle drives a random 0-90 % of the
steps), with 1-3 steps between kept frames, so the chair is in view often but not always.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import shlex
import sys
from typing import Any

import numpy as np

from vr_goggles.policy.actions import CONTROL_PERIOD, FORWARD, TURN_LEFT, TURN_RIGHT

#: Stamp of the first bag message (fixed, so bags are reproducible): 2024-01-01T00:00:00Z.
BAG_START_NS = 1_704_067_200 * 10**9
IMAGE_TOPIC = '/camera/image_raw'
FRAME_ID = 'camera'


class BehaviourPolicy:
    """Random actions mixed with the planning oracle (true positions, avoids obstacles)."""

    def __init__(self, rng: np.random.Generator, env: Any) -> None:
        from sim_training.envs.oracle import Oracle

        self.rng = rng
        self.oracle = Oracle(env)
        self.new_episode()

    def new_episode(self) -> None:
        """Draw this episode's share of oracle actions."""
        self.p_oracle = float(self.rng.choice([0.0, 0.3, 0.6, 0.9]))

    def act(self, info: dict[str, Any]) -> int:
        """One action for the state described by ``info``."""
        if self.rng.random() < self.p_oracle:
            return self.oracle.act(info)
        return int(self.rng.choice([FORWARD, TURN_LEFT, TURN_RIGHT], p=[0.5, 0.25, 0.25]))


def _write_png(path: Path, img: np.ndarray) -> None:
    """RGB ``(H, W, 3)`` or mono8 ``(H, W)`` uint8 -> PNG (cv2 wants BGR: convert)."""
    import cv2

    img = np.asarray(img, dtype=np.uint8)
    if img.ndim == 3:
        img = img[:, :, ::-1]
    if not cv2.imwrite(str(path), np.ascontiguousarray(img), [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise OSError(f'{path}: could not write PNG')


def collect_frames(env: Any, n: int, out: Path, seed: int, label_dir: str | None,
                   progress: bool = True) -> int:
    """Write ``n`` frames (and labels into ``out/label_dir``) from the behaviour policy."""
    from tqdm import tqdm

    rng = np.random.default_rng([seed, 1])
    policy = BehaviourPolicy(rng, env)
    (out / 'images').mkdir(parents=True, exist_ok=True)
    if label_dir:
        (out / label_dir).mkdir(parents=True, exist_ok=True)
    obs, info = env.reset(seed=seed)
    for i in tqdm(range(n), desc='frames', unit='img', disable=not progress):
        _write_png(out / 'images' / f'{i:06d}.png', obs)
        if label_dir:
            _write_png(out / label_dir / f'{i:06d}.png', info['labels'])
        for _ in range(int(rng.integers(1, 4))):
            action = policy.act(info)
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated or rng.random() < 0.01:
                policy.new_episode()
                obs, info = env.reset()
                break
    return n


def collect_sequences(env: Any, k: int, steps: int, out: Path, seed: int,
                      progress: bool = True) -> list[list[np.ndarray]]:
    """Write ``k`` driven paths of ``steps`` consecutive frames; return the frames."""
    from tqdm import tqdm

    rng = np.random.default_rng([seed, 2])
    policy = BehaviourPolicy(rng, env)
    sequences = []
    for s in tqdm(range(k), desc='sequences', unit='seq', disable=not progress):
        d = out / 'sequences' / f'{s:03d}'
        d.mkdir(parents=True, exist_ok=True)
        policy.new_episode()
        policy.p_oracle = max(policy.p_oracle, 0.6)  # mostly purposeful driving
        obs, info = env.reset(seed=int(rng.integers(env.unwrapped.seed_range.start,
                                                    env.unwrapped.seed_range.stop)))
        frames, poses, action = [], [], None
        for t in range(steps):
            frames.append(obs)
            _write_png(d / f'{t:06d}.png', obs)
            poses.append({'action': action, 'agent_pos': info['agent_pos'].tolist(),
                          'agent_dir': info['agent_dir'], 'distance': info['distance'],
                          'success': info['success'], 'layout_seed': info['layout_seed']})
            if t == steps - 1:
                break
            action = policy.act(info)
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:  # keep the path continuous: restart from this layout
                policy.new_episode()
                obs, info = env.reset(seed=info['layout_seed'])
                action = None
        (d / 'poses.json').write_text(json.dumps(poses, indent=1), encoding='utf-8')
        sequences.append(frames)
    return sequences


def write_bag(path: Path, sequences: list[list[np.ndarray]],
              period_s: float = CONTROL_PERIOD) -> int:
    """Write the frames as a rosbag2 (MCAP) of rgb8 ``sensor_msgs/msg/Image``; return count.

    Stamps start at :data:`BAG_START_NS` and advance by ``period_s`` per frame, with one extra
    second between sequences. ``path`` is the bag directory and must not exist.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_HUMBLE)
    image_t = typestore.types['sensor_msgs/msg/Image']
    header_t = typestore.types['std_msgs/msg/Header']
    time_t = typestore.types['builtin_interfaces/msg/Time']
    count = 0
    stamp = BAG_START_NS
    step_ns = int(round(period_s * 1e9))
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(IMAGE_TOPIC, image_t.__msgtype__, typestore=typestore)
        for frames in sequences:
            for img in frames:
                h, w = img.shape[:2]
                msg = image_t(
                    header=header_t(stamp=time_t(sec=stamp // 10**9, nanosec=stamp % 10**9),
                                    frame_id=FRAME_ID),
                    height=h, width=w, encoding='rgb8', is_bigendian=0, step=w * 3,
                    data=np.ascontiguousarray(img, dtype=np.uint8).reshape(-1))
                writer.write(conn, stamp, typestore.serialize_cdr(msg, image_t.__msgtype__))
                count += 1
                stamp += step_ns
            stamp += 10**9
    return count


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        prog='python -m sim_training.collect',
        description=__doc__.split('\n', 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n', 2)[2])
    p.add_argument('--domain', choices=['sim', 'real', 'randomized'], default='sim',
                   help='simulator look: sim, real (the real-world proxy) or randomized '
                        '(default sim)')
    p.add_argument('--n', type=int, default=1000, help='number of single frames (default 1000)')
    p.add_argument('--out', type=Path, required=True, help='output directory')
    p.add_argument('--seed', type=int, default=0,
                   help='first layout seed and behaviour seed (default 0)')
    p.add_argument('--split', choices=['train', 'eval'], default='train',
                   help='layout seed range for later episodes (default train)')
    p.add_argument('--size', type=int, default=64, help='image size (default 64)')
    p.add_argument('--labels', action=argparse.BooleanOptionalAction, default=True,
                   help='write label PNGs (default on)')
    p.add_argument('--hand-labels', action='store_true',
                   help='--domain real: write the labels to DIR/labels, for training, as a '
                        'stand-in for camera frames labelled by hand (default: '
                        'DIR/eval_labels, evaluation only)')
    p.add_argument('--trajectories', type=int, default=0, metavar='K',
                   help='also write K driven paths of consecutive frames')
    p.add_argument('--steps', type=int, default=50, metavar='T',
                   help='frames per trajectory (default 50)')
    p.add_argument('--bag', type=Path, default=None,
                   help='write the trajectory frames as a rosbag2 MCAP directory '
                        '(implies --trajectories 1 if none)')
    p.add_argument('--no-progress', action='store_true', help='hide the progress bars')
    return p


def main(argv: list[str] | None = None) -> int:
    """Collect a dataset; returns the process exit status."""
    args = build_parser().parse_args(argv)
    if args.n < 0 or args.trajectories < 0 or args.steps < 1 or args.size < 8:
        print('error: --n and --trajectories must be >= 0, --steps >= 1, --size >= 8',
              file=sys.stderr)
        return 2
    if args.hand_labels and (args.domain != 'real' or not args.labels):
        print('error: --hand-labels needs --domain real and labels', file=sys.stderr)
        return 2
    if args.bag is not None:
        if args.bag.exists():
            print(f'error: --bag {args.bag} already exists', file=sys.stderr)
            return 2
        args.trajectories = args.trajectories or 1

    import sim_training  # noqa: F401  (headless pyglet before the env module loads)
    from sim_training.envs.chair_nav import ChairNavEnv
    from vr_goggles.image.semantics import classes_json

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    label_dir = None
    if args.labels:
        label_dir = ('eval_labels' if args.domain == 'real' and not args.hand_labels
                     else 'labels')
    env = ChairNavEnv(domain=args.domain, obs_size=args.size, labels=args.labels,
                      split=args.split)
    try:
        n = collect_frames(env, args.n, out, args.seed, label_dir, not args.no_progress)
        sequences = []
        if args.trajectories:
            seq_env = ChairNavEnv(domain=args.domain, obs_size=args.size, split=args.split)
            try:
                sequences = collect_sequences(seq_env, args.trajectories, args.steps, out,
                                              args.seed, not args.no_progress)
            finally:
                seq_env.close()
    finally:
        env.close()
    bag_count = write_bag(args.bag, sequences) if args.bag is not None else 0

    (out / 'classes.json').write_text(json.dumps(classes_json(), indent=2), encoding='utf-8')
    meta = {
        'domain': args.domain, 'seed': args.seed, 'n': n, 'size': [args.size, args.size],
        'split': args.split, 'labels': label_dir,
        'trajectories': args.trajectories,
        'steps': args.steps if args.trajectories else 0,
        'bag': str(args.bag) if args.bag is not None else None, 'bag_messages': bag_count,
        'command': 'python -m sim_training.collect ' + shlex.join(
            sys.argv[1:] if argv is None else argv),
    }
    (out / 'meta.json').write_text(json.dumps(meta, indent=2), encoding='utf-8')
    print(f'wrote {n} frames' + (f' and {len(sequences)} sequences' if sequences else '')
          + (f', {bag_count} bag messages' if bag_count else '') + f' to {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
