"""Writing the output: a ROS 2 MCAP bag with the input's messages plus the replay's topics.

:class:`OutputBag` converts every input message to ROS 2 (as ``rosbags convert`` does; ROS 1
headers become ROS 2's) and adds ``<topic>_sim`` (translated ``rgb8`` images with the original
header stamps) and, with a policy, its ``cmd_vel``. It writes through
:func:`mcap_writer_class`, rosbags' writer with a storage that copies each message once.
"""

from __future__ import annotations

from collections import defaultdict
import contextlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.convert.converter import create_connections_converters
from rosbags.interfaces import ConnectionExtRosbag2
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2 import storage_mcap as sm
from rosbags.typesys import Stores, get_typestore

from vr_goggles.image import codec
from vr_goggles.replay.config import ReplayError, short_error
from vr_goggles.replay.reader import IMAGE_TYPE

_LOG = logging.getLogger(__package__)  # one logger for the whole replay

TWIST_TYPE = 'geometry_msgs/msg/Twist'
ROS1_LOG_TYPE = 'rosgraph_msgs/msg/Log'
ROS2_LOG_TYPE = 'rcl_interfaces/msg/Log'
#: Types the output needs even when the input bag does not define them.
_OUTPUT_TYPES = ('builtin_interfaces/msg/Time', 'std_msgs/msg/Header', IMAGE_TYPE,
                 'geometry_msgs/msg/Vector3', TWIST_TYPE, ROS2_LOG_TYPE,
                 'sensor_msgs/msg/RegionOfInterest', 'sensor_msgs/msg/CameraInfo')
#: ROS 1 log levels (rosgraph_msgs/Log, bit flags) -> ROS 2's (rcl_interfaces/Log).
_LOG_LEVELS = {1: 10, 2: 20, 4: 30, 8: 40, 16: 50}


CAMERA_INFO_TYPE = 'sensor_msgs/msg/CameraInfo'


def sim_info_topic(info_topic: str) -> str:
    """``/camera/camera_info`` -> ``/camera/camera_info_sim``, the ``_sim`` image's."""
    return info_topic + '_sim'


def crop_box(height: int, width: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(x0, y0, w, h)`` of the centre crop :mod:`vr_goggles.image.preprocess` takes.

    Frames are cropped at the centre to the model's aspect (square: 1280x720 -> 720x720) and
    then resized to the model size; this is the same arithmetic as
    ``preprocess.center_crop_to_aspect`` (a test checks they agree).
    """
    th, tw = size
    if height * tw > width * th:
        nh = max(1, round(width * th / tw))
        return 0, (height - nh) // 2, width, nh
    nw = max(1, round(height * tw / th))
    return (width - nw) // 2, 0, nw, height


def _field(msg: Any, name: str) -> Any:
    """A CameraInfo field under its ROS 2 (``k``) or ROS 1 (``K``) name."""
    return getattr(msg, name) if hasattr(msg, name) else getattr(msg, name.upper())


def sim_camera_info(info: Any, source_size: tuple[int, int], size: tuple[int, int]
                    ) -> dict[str, Any]:
    """The camera's CameraInfo fields for the ``_sim`` image: crop, then scale, K and P.

    Pixel centres map as ``u' = (u - x0 + 0.5) * s - 0.5``; the distortion coefficients are in
    normalised coordinates and stay valid, R is unchanged.
    """
    h, w = source_size
    x0, y0, cw, ch = crop_box(h, w, size)
    sx, sy = size[1] / cw, size[0] / ch
    k = np.array(_field(info, 'k'), float).reshape(3, 3)
    p = np.array(_field(info, 'p'), float).reshape(3, 4)
    for m in (k, p):
        m[0, 0], m[0, 1], m[1, 1] = m[0, 0] * sx, m[0, 1] * sx, m[1, 1] * sy
        m[0, 2] = (m[0, 2] - x0 + 0.5) * sx - 0.5
        m[1, 2] = (m[1, 2] - y0 + 0.5) * sy - 0.5
    p[0, 3], p[1, 3] = p[0, 3] * sx, p[1, 3] * sy
    return {'height': int(size[0]), 'width': int(size[1]),
            'distortion_model': str(info.distortion_model),
            'd': np.array(_field(info, 'd'), float), 'k': k.reshape(-1),
            'r': np.array(_field(info, 'r'), float), 'p': p.reshape(-1)}


def sim_topic_name(topic: str, suffix: str = '_sim') -> str:
    """The translated topic's name: ``topic + suffix``, without a ``/compressed`` transport.

    The output is always a raw ``rgb8`` Image; ``/camera/image/compressed_sim`` would read as a
    compressed transport of ``/camera/image``, so ``/camera/image/compressed`` (a
    CompressedImage, or a raw Image recorded under that name) becomes ``/camera/image_sim``.
    """
    base = topic[:-len('/compressed')] if topic.endswith('/compressed') else topic
    return (base or topic) + suffix


def output_typestore(reader: Any) -> Any:
    """Typestore for the written ROS 2 bag.

    The bag's own types (ROS 1 headers replaced by ROS 2's, as ``rosbags convert`` does) plus
    what the added topics need.
    """
    humble = get_typestore(Stores.ROS2_HUMBLE)
    store = get_typestore(Stores.EMPTY)
    typs = dict(reader.typestore.fielddefs)
    if not reader.is2:
        typs['std_msgs/msg/Header'] = humble.fielddefs['std_msgs/msg/Header']
    for name in _OUTPUT_TYPES:
        typs.setdefault(name, humble.fielddefs[name])
    store.register(typs)
    return store


def mcap_writer_class() -> type:
    """The rosbags rosbag2 ``Writer`` with an MCAP storage that copies each message once.

    Re-writing a 640x480 camera bag moves ~1 MB per frame; rosbags' MCAP writer assembles every
    record and chunk in intermediate buffers, which cost as much CPU as the goggles themselves
    on a 2-core robot. The lean storage writes record headers and payloads straight into the
    chunk and the chunk straight into the file. Output is byte-identical to rosbags' own
    (``test_lean_mcap_writer_is_byte_identical``); if rosbags' internals change shape, the
    stock writer is used.
    """
    try:  # rosbags internals the lean storage builds on
        base = sm.McapWriter
        helpers = (sm.PendingChunk, sm.write_uint16, sm.write_uint32, sm.write_uint64,
                   sm.write_record, sm.write_string)
    except AttributeError:
        return Writer
    del helpers

    class LeanMcapWriter(base):  # type: ignore[misc, valid-type]
        def write(self, connection: Any, timestamp: int, data: bytes | memoryview) -> None:
            self.message_start_time = min(timestamp, self.message_start_time)
            self.message_end_time = max(timestamp, self.message_end_time)
            self.channel_stats[connection.id] += 1
            chunk = self.chunk
            chunk.message_start_time = min(timestamp, chunk.message_start_time)
            chunk.message_end_time = max(timestamp, chunk.message_end_time)
            bio = chunk.bio
            chunk.msgs[connection.id].append((timestamp, bio.tell()))
            ts = timestamp.to_bytes(8, 'little')
            bio.write(b'\x05' + (22 + len(data)).to_bytes(8, 'little')
                      + connection.id.to_bytes(2, 'little') + b'\x00' * 4 + ts + ts)
            bio.write(data)
            if bio.tell() > 2**20:
                self.close_chunk()

        def close_chunk(self) -> None:
            if self.compression:
                return super().close_chunk()
            chunk = self.chunk
            payload = chunk.bio.getbuffer()
            size = len(payload)
            # start, end, uncompressed size, crc (0: none), compression '', compressed size
            head = (chunk.message_start_time.to_bytes(8, 'little')
                    + chunk.message_end_time.to_bytes(8, 'little') + size.to_bytes(8, 'little')
                    + b'\x00' * 8 + size.to_bytes(8, 'little'))
            chunk_start = self.bio.tell()
            self.bio.write(b'\x06' + (len(head) + size).to_bytes(8, 'little') + head)
            self.bio.write(payload)
            del payload  # release the export so the BytesIO can be dropped
            chunk_end = self.bio.tell()
            offsets = []
            for cid, msgs in chunk.msgs.items():  # message index records, as rosbags writes
                offsets.append((cid, self.bio.tell()))
                rec = io.BytesIO()
                sm.write_uint16(rec, cid)
                sm.write_uint32(rec, len(msgs) * 16)
                for t, offset in msgs:
                    sm.write_uint64(rec, t)
                    sm.write_uint64(rec, offset)
                sm.write_record(self.bio, 0x07, rec)
            rec = io.BytesIO()  # chunk index for the summary section
            sm.write_uint64(rec, chunk.message_start_time)
            sm.write_uint64(rec, chunk.message_end_time)
            sm.write_uint64(rec, chunk_start)
            sm.write_uint64(rec, chunk_end - chunk_start)
            sm.write_uint32(rec, len(offsets) * 10)
            for cid, offset in offsets:
                sm.write_uint16(rec, cid)
                sm.write_uint64(rec, offset)
            sm.write_uint64(rec, self.bio.tell() - chunk_end)
            sm.write_string(rec, self.compression)
            sm.write_uint64(rec, size)
            sm.write_uint64(rec, size)
            self.chunks.append(rec)
            self.chunk = sm.PendingChunk(2**63 - 1, 0, io.BytesIO(), defaultdict(list))
            return None

    class LeanWriter(Writer):
        STORAGE_PLUGINS = {**Writer.STORAGE_PLUGINS, StoragePlugin.MCAP: LeanMcapWriter}

    return LeanWriter


class OutputBag:
    """The output bag being written: converters for the input's messages, the added topics.

    ``connmap`` maps an input connection ``(id, owner)`` to its output connection and
    ``convmap`` a message type to the function converting its raw bytes to ROS 2 CDR.
    """

    def __init__(self, reader: Any, path: Path):
        self.reader, self.path = reader, path
        self.store = output_typestore(reader)
        self.writer = mcap_writer_class()(path, version=8, storage_plugin=StoragePlugin.MCAP)
        self.connmap: dict = {}
        self.convmap: dict = {}
        self.conns: dict[str, Any] = {}
        types = self.store.types
        self._image, self._header, self._time = (types[IMAGE_TYPE], types['std_msgs/msg/Header'],
                                                 types['builtin_interfaces/msg/Time'])
        self._twist, self._vector3 = types[TWIST_TYPE], types['geometry_msgs/msg/Vector3']

    def open(self) -> None:
        """Create the bag on disk."""
        self.writer.open()

    def add_topics(self, topic: str, sim_topic: str, cmd_vel_topic: str | None,
                   info_topic: str | None = None) -> None:
        """Add the output connections.

        One per input topic, ``sim_topic`` (with the camera's QoS), unless ``cmd_vel_topic`` is
        None the policy's commands, and with ``info_topic`` the ``_sim`` image's CameraInfo.
        """
        # ROS 2 has no rosgraph_msgs/Log: ROS 1 /rosout is written as rcl_interfaces/msg/Log,
        # what a ROS 2 /rosout carries (the ROS 1 ``topics`` list has no place there).
        logs = [c for c in self.reader.connections
                if not self.reader.is2 and c.msgtype == ROS1_LOG_TYPE]
        rest = [c for c in self.reader.connections if c not in logs]
        with contextlib.redirect_stdout(io.StringIO()) as chatter:  # rosbags convert echoes
            self.connmap, self.convmap = create_connections_converters(
                rest, self.store, self.reader, self.writer)
        for c in logs:
            self.connmap[(c.id, c.owner)] = self.writer.add_connection(
                c.topic, ROS2_LOG_TYPE, typestore=self.store)
            self.convmap[ROS1_LOG_TYPE] = self._convert_log
        for line in chatter.getvalue().splitlines():
            _LOG.debug('rosbags: %s', line)
        cam = next(c for c in self.reader.connections if c.topic == topic)
        qos = cam.ext.offered_qos_profiles if isinstance(cam.ext, ConnectionExtRosbag2) else []
        self.conns = {'sim': self.writer.add_connection(sim_topic, IMAGE_TYPE,
                                                        typestore=self.store,
                                                        offered_qos_profiles=qos)}
        if info_topic is not None:
            self.conns['info'] = self.writer.add_connection(info_topic, CAMERA_INFO_TYPE,
                                                            typestore=self.store)
        if cmd_vel_topic is not None:
            self.conns['cmd_vel'] = self.writer.add_connection(cmd_vel_topic, TWIST_TYPE,
                                                               typestore=self.store)

    def _convert_log(self, raw: Any) -> Any:
        """ROS 1 rosgraph_msgs/Log bytes -> ROS 2 rcl_interfaces/msg/Log CDR."""
        m = self.reader.deserialize(bytes(raw), ROS1_LOG_TYPE)
        log = self.store.types[ROS2_LOG_TYPE](
            stamp=self._time(sec=m.header.stamp.sec, nanosec=m.header.stamp.nanosec),
            level=_LOG_LEVELS.get(int(m.level), 20), name=m.name, msg=m.msg, file=m.file,
            function=m.function, line=int(m.line))
        return self.store.serialize_cdr(log, ROS2_LOG_TYPE)

    def write_raw(self, wconn: Any, log_time: int, data: Any) -> None:
        """An input message, already converted to ROS 2 CDR."""
        self.writer.write(wconn, log_time, data)

    def write_image(self, log_time: int, stamp: tuple[int, int], frame_id: str,
                    image: np.ndarray) -> None:
        """A translated frame on the sim topic, with the camera message's header."""
        hdr = self._header(stamp=self._time(sec=stamp[0], nanosec=stamp[1]), frame_id=frame_id)
        msg = codec.numpy_to_image(image, 'rgb8', header=hdr, msg_cls=self._image)
        self.writer.write(self.conns['sim'], log_time,
                          self.store.serialize_cdr(msg, IMAGE_TYPE))

    def write_camera_info(self, log_time: int, stamp: tuple[int, int], frame_id: str,
                          fields: dict[str, Any]) -> None:
        """The ``_sim`` image's CameraInfo (from :func:`sim_camera_info`), same header."""
        hdr = self._header(stamp=self._time(sec=stamp[0], nanosec=stamp[1]), frame_id=frame_id)
        roi = self.store.types['sensor_msgs/msg/RegionOfInterest'](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        msg = self.store.types[CAMERA_INFO_TYPE](header=hdr, binning_x=0, binning_y=0, roi=roi,
                                                 **fields)
        self.writer.write(self.conns['info'], log_time,
                          self.store.serialize_cdr(msg, CAMERA_INFO_TYPE))

    def write_cmd_vel(self, log_time: int, vel: tuple[float, float]) -> None:
        """The policy's ``(linear x, angular z)`` for a frame, as a Twist."""
        vec = self._vector3
        twist = self._twist(linear=vec(x=float(vel[0]), y=0.0, z=0.0),
                            angular=vec(x=0.0, y=0.0, z=float(vel[1])))
        self.writer.write(self.conns['cmd_vel'], log_time,
                          self.store.serialize_cdr(twist, TWIST_TYPE))

    def close(self) -> None:
        """Write the summary and metadata; a failure here loses the bag, so it raises."""
        try:
            self.writer.close()
        except Exception as e:
            raise ReplayError(f'{self.path}: closing the output failed: {short_error(e)}') from e
