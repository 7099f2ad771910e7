"""Camera bags made of given RGB frames (e.g. ``../shared/real_indoor``), ROS 1 or ROS 2 MCAP.

Written with ``rosbags`` only (no ROS install). Frames are stamped ``period_ns`` apart from
``bagfactory.T0``; raw ``Image`` (rgb8, bgr8, mono8) or ``CompressedImage`` (jpeg, png).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bagfactory import T0, encode_raw, open_writer
import cv2
import numpy as np

REAL_INDOOR = Path(__file__).resolve().parents[2] / 'shared' / 'real_indoor'


def real_frames(*folders: str, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """RGB frames of ``REAL_INDOOR/<folder>/*.png`` in name order (resized to ``size`` WxH)."""
    frames = []
    for folder in folders:
        for path in sorted((REAL_INDOOR / folder).glob('*.png')):
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            assert bgr is not None, path
            if size is not None:
                bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
            frames.append(np.ascontiguousarray(bgr[:, :, ::-1]))
    return frames


def write_frames_bag(path: str | Path, frames: Sequence[np.ndarray], *, fmt: str = 'mcap',
                     topic: str = '/camera/image_raw', encoding: str = 'rgb8',
                     compressed: str = '', period_ns: int = 100_000_000) -> Path:
    """Write ``frames`` on ``topic``; ``fmt`` 'mcap' or 'ros1'; ``compressed`` 'jpeg' | 'png'."""
    path = Path(path)
    ros1 = fmt == 'ros1'
    writer, store, ser = open_writer(path, fmt)
    types = store.types
    msgtype = 'sensor_msgs/msg/CompressedImage' if compressed else 'sensor_msgs/msg/Image'

    def header(i: int, t: int):
        stamp = types['builtin_interfaces/msg/Time'](sec=t // 10**9, nanosec=t % 10**9)
        extra = {'seq': i} if ros1 else {}
        return types['std_msgs/msg/Header'](stamp=stamp, frame_id='camera', **extra)

    with writer:
        conn = writer.add_connection(topic, msgtype, typestore=store)
        for i, rgb in enumerate(frames):
            t = T0 + i * period_ns
            if compressed:
                ok, buf = cv2.imencode('.jpg' if compressed == 'jpeg' else '.png',
                                       rgb[:, :, ::-1])
                assert ok
                msg = types[msgtype](header=header(i, t), format=compressed,
                                     data=buf.reshape(-1))
            else:
                data, step = encode_raw(rgb, encoding)
                msg = types[msgtype](header=header(i, t), height=rgb.shape[0],
                                     width=rgb.shape[1], encoding=encoding, is_bigendian=0,
                                     step=step, data=data)
            writer.write(conn, t, ser(msg, msgtype))
    return path
