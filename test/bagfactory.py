"""Tiny synthetic camera bags (ROS 2 .db3/.mcap, ROS 1 .bag) for the replay tests and bench.

Written with ``rosbags`` only, so no ROS install is needed. Frames are a moving gradient (or a
constant image with ``static=True``) so the temporal metrics have something to measure.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

#: encoding -> bytes per pixel of the raw message (yuv422 packs 2 pixels in 4 bytes).
BYTES_PER_PIXEL = {'rgb8': 3, 'bgr8': 3, 'mono8': 1, 'yuv422': 2, 'rgba8': 4, 'bgra8': 4}

T0 = 1_700_000_000 * 10**9  # log/stamp time of the first frame (ns)


def frame_rgb(i: int, height: int, width: int, *, static: bool = False) -> np.ndarray:
    """Deterministic RGB test frame ``i``: a gradient that slides with ``i``."""
    shift = 0 if static else 3 * i
    y, x = np.mgrid[0:height, 0:width]
    r = (x * 255 // max(width - 1, 1) + shift) % 256
    g = (y * 255 // max(height - 1, 1)) % 256
    b = ((x + y + 2 * shift) * 2) % 256
    return np.stack([r, g, b], axis=2).astype(np.uint8)


def encode_raw(rgb: np.ndarray, encoding: str) -> tuple[np.ndarray, int]:
    """RGB frame -> (flat uint8 data, step) in ``encoding``."""
    h, w = rgb.shape[:2]
    if encoding == 'rgb8':
        arr = rgb
    elif encoding == 'bgr8':
        arr = rgb[:, :, ::-1]
    elif encoding == 'rgba8':
        arr = np.dstack([rgb, np.full((h, w), 255, np.uint8)])
    elif encoding == 'bgra8':
        arr = np.dstack([rgb[:, :, ::-1], np.full((h, w), 255, np.uint8)])
    elif encoding == 'mono8':
        arr = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    elif encoding == 'yuv422':  # UYVY, as ROS's yuv422
        yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV).astype(np.int32)
        out = np.empty((h, w * 2), np.uint8)
        out[:, 0::4] = ((yuv[:, 0::2, 1] + yuv[:, 1::2, 1]) // 2).astype(np.uint8)  # U
        out[:, 1::4] = yuv[:, 0::2, 0]  # Y0
        out[:, 2::4] = ((yuv[:, 0::2, 2] + yuv[:, 1::2, 2]) // 2).astype(np.uint8)  # V
        out[:, 3::4] = yuv[:, 1::2, 0]  # Y1
        arr = out
    else:
        raise ValueError(f'unsupported test encoding {encoding!r}')
    arr = np.ascontiguousarray(arr)
    return arr.reshape(-1), w * BYTES_PER_PIXEL[encoding]


def open_writer(path: Path, fmt: str = 'mcap', zstd: str = '') -> tuple[Any, Any, Callable]:
    """``(writer, typestore, serialize)`` for a ``ros1`` bag or a ROS 2 ``mcap`` / ``db3`` one.

    ``zstd``: ``'message'`` or ``'file'`` compresses a ROS 2 bag as ``ros2 bag record
    --compression-format zstd --compression-mode MODE`` does.
    """
    from rosbags.typesys import Stores, get_typestore

    if fmt == 'ros1':
        from rosbags.rosbag1 import Writer as Writer1

        store = get_typestore(Stores.ROS1_NOETIC)
        return Writer1(path), store, store.serialize_ros1
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin
    from rosbags.rosbag2 import Writer as Writer2

    store = get_typestore(Stores.ROS2_HUMBLE)
    plugin = StoragePlugin.MCAP if fmt == 'mcap' else StoragePlugin.SQLITE3
    writer = Writer2(path, version=8, storage_plugin=plugin)
    if zstd:
        mode = {'message': CompressionMode.MESSAGE, 'file': CompressionMode.FILE}[zstd]
        writer.set_compression(mode, CompressionFormat.ZSTD)
    return writer, store, store.serialize_cdr


def write_bag(path: str | Path, *, fmt: str = 'mcap', n: int = 6, height: int = 48,
              width: int = 64, encoding: str = 'rgb8', compressed: bool = False,
              topic: str = '/camera/image_raw', extra_image_topic: str | None = None,
              static: bool = False, period_ns: int = 100_000_000,
              other_topics: bool = True, zstd: str = '') -> Path:
    """Write a camera bag; ``fmt`` is ``mcap``, ``db3`` (ROS 2 directories) or ``ros1``.

    ``zstd``: compression of a ROS 2 bag (:func:`open_writer`).

    Besides the camera it records ``/odom_text`` (std_msgs/String) so pass-through of
    non-image topics is exercised. Returns the bag path (directory, or the ``.bag`` file).
    """
    path = Path(path)
    ros1 = fmt == 'ros1'
    if ros1 and path.suffix != '.bag':
        path = path.with_suffix('.bag')
    writer, store, ser = open_writer(path, fmt, zstd)
    Image = store.types['sensor_msgs/msg/Image']
    CompressedImage = store.types['sensor_msgs/msg/CompressedImage']
    Header = store.types['std_msgs/msg/Header']
    Time = store.types['builtin_interfaces/msg/Time']
    String = store.types['std_msgs/msg/String']

    def header(i: int, t: int):
        stamp = Time(sec=t // 10**9, nanosec=t % 10**9)
        if ros1:
            return Header(seq=i, stamp=stamp, frame_id='camera')
        return Header(stamp=stamp, frame_id='camera')

    def image_msg(i: int, t: int):
        rgb = frame_rgb(i, height, width, static=static)
        if compressed:
            ok, buf = cv2.imencode('.jpg' if encoding != 'png' else '.png', rgb[:, :, ::-1])
            assert ok
            return CompressedImage(header=header(i, t), format='jpeg' if encoding != 'png'
                                   else 'png', data=buf.reshape(-1))
        data, step = encode_raw(rgb, encoding)
        return Image(header=header(i, t), height=height, width=width, encoding=encoding,
                     is_bigendian=0, step=step, data=data)

    imgtype = 'sensor_msgs/msg/CompressedImage' if compressed else 'sensor_msgs/msg/Image'
    with writer:
        conn = writer.add_connection(topic, imgtype, typestore=store)
        conn2 = (writer.add_connection(extra_image_topic, imgtype, typestore=store)
                 if extra_image_topic else None)
        sconn = (writer.add_connection('/odom_text', 'std_msgs/msg/String', typestore=store)
                 if other_topics else None)
        for i in range(n):
            t = T0 + i * period_ns
            raw = ser(image_msg(i, t), imgtype)
            writer.write(conn, t, raw)
            if conn2 is not None:
                writer.write(conn2, t + 1, raw)
            if sconn is not None and i % 2 == 0:
                writer.write(sconn, t + 5, ser(String(data=f'odom {i}'), 'std_msgs/msg/String'))
    return path
