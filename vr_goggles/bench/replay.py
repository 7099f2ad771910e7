"""Replay throughput vs engine-only throughput, measured in one run.

``python -m vr_goggles.bench.replay`` writes a synthetic camera bag (default: 300 frames of
640x480 ``bgr8``, as a typical USB camera records; ``--compressed`` for JPEG) unless ``--bag``
is given, replays it with :func:`vr_goggles.replay.replay` (``bench=True``) and then times the
engine alone on the same decoded frames with the same batch size. The goal is a ratio
``replay / engine-only >= 0.8``: bag I/O, decoding, resizing, encoding and writing may cost at
most 20% because they overlap inference in the replay pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import sys
import tempfile

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from vr_goggles.engines.cli_support import (
    add_engine_args,
    add_model_arg,
    add_random_init_args,
    load_source,
)
from vr_goggles.goggles.facade import Goggles
from vr_goggles.replay import ReplayConfig, format_summary, replay


def write_camera_bag(path: Path, *, n: int = 300, height: int = 480, width: int = 640,
                     compressed: bool = False, fps: float = 30.0) -> Path:
    """A ROS 2 MCAP bag with ``n`` moving-texture frames on ``/camera/image_raw``."""
    store = get_typestore(Stores.ROS2_HUMBLE)
    types = store.types
    Header, Time = types['std_msgs/msg/Header'], types['builtin_interfaces/msg/Time']
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8),
                      (width + 64, height), interpolation=cv2.INTER_LINEAR)
    msgtype = 'sensor_msgs/msg/CompressedImage' if compressed else 'sensor_msgs/msg/Image'
    t0 = 1_700_000_000 * 10**9
    period = int(1e9 / fps)
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection('/camera/image_raw', msgtype, typestore=store)
        for i in range(n):
            t = t0 + i * period
            bgr = np.ascontiguousarray(base[:, i % 64:i % 64 + width])
            hdr = Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id='camera')
            if compressed:
                ok, buf = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
                msg = types[msgtype](header=hdr, format='bgr8; jpeg compressed bgr8',
                                     data=buf.reshape(-1))
            else:
                msg = types[msgtype](header=hdr, height=height, width=width, encoding='bgr8',
                                     is_bigendian=0, step=width * 3, data=bgr.reshape(-1))
            w.write(conn, t, store.serialize_cdr(msg, msgtype))
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print both throughputs and their ratio (JSON with ``--json``)."""
    p = argparse.ArgumentParser(prog='python -m vr_goggles.bench.replay', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--bag', default=None, help='bench on this bag instead of a synthetic one')
    p.add_argument('--frames', type=int, default=300, help='synthetic bag length')
    p.add_argument('--size', default='480x640', help='synthetic frame HxW')
    p.add_argument('--compressed', action='store_true', help='synthetic JPEG frames')
    p.add_argument('--batch-size', type=int, default=1)
    p.add_argument('--decode-threads', type=int, default=None,
                   help='default: 2 for CompressedImage, 1 for raw Image')
    p.add_argument('--threads', type=int, default=None,
                   help='torch (and onnxruntime) threads (default: one core fewer than the '
                        'machine has, as replay uses)')
    p.add_argument('--repeats', type=int, default=3,
                   help='replay runs (the median ratio is printed) (default: %(default)s)')
    p.add_argument('--json', default=None, help='write the last run\'s metrics JSON here')
    add_model_arg(p)
    add_random_init_args(p)
    add_engine_args(p)
    args = p.parse_args(argv)

    import torch  # heavy: only once the arguments are known to be good (``--help`` stays fast)

    # As ``vr-goggles replay`` does (``--torch-threads``): leave a core to the bag I/O. Set it
    # before the engine is built, since onnxruntime takes torch's thread count at that moment.
    torch.set_num_threads(args.threads or min(torch.get_num_threads(),
                                              max(1, (os.cpu_count() or 2) - 1)))
    source, card = load_source(args)
    goggles = Goggles.from_source(source, card, engine=args.engine, device=args.device,
                                  precision=args.precision, compile=args.compile)
    ratios = []
    with tempfile.TemporaryDirectory(prefix='vr_goggles_bench_') as tmp:
        if args.bag:
            bag = Path(args.bag)
        else:
            h, w = (int(v) for v in args.size.lower().split('x'))
            bag = write_camera_bag(Path(tmp) / 'camera', n=args.frames, height=h, width=w,
                                   compressed=args.compressed)
        for k in range(max(1, args.repeats)):
            cfg = ReplayConfig(bag=bag, out=Path(tmp) / f'out{k}', model=card.name,
                               engine=args.engine, device=args.device,
                               precision=args.precision, batch_size=args.batch_size,
                               decode_threads=args.decode_threads, bench=True,
                               bench_frames=10**9, progress=False, command=' '.join(sys.argv))
            metrics = replay(cfg, goggles=goggles)
            print(f'--- run {k + 1}/{args.repeats}')
            print(format_summary(metrics))
            ratios.append(metrics['bench']['ratio'])
    valid = [r for r in ratios if r is not None]
    if valid:
        print(f'median ratio replay/engine-only over {len(valid)} runs: '
              f'{float(np.median(valid)):.3f} (runs: {", ".join(f"{r:.3f}" for r in valid)}; '
              'goal >= 0.8)')
    if args.json:
        metrics['bench']['ratios_all_runs'] = ratios
        Path(args.json).write_text(json.dumps(metrics, indent=2, default=str) + '\n')
    return 0 if valid else 1


if __name__ == '__main__':
    sys.exit(main())
