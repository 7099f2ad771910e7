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
#: Types the output needs even when the input bag does not define them.
_OUTPUT_TYPES = ('builtin_interfaces/msg/Time', 'std_msgs/msg/Header', IMAGE_TYPE,
                 'geometry_msgs/msg/Vector3', TWIST_TYPE)


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

    def add_topics(self, topic: str, sim_topic: str, cmd_vel_topic: str | None) -> None:
        """Add the output connections.

        One per input topic, ``sim_topic`` (with the camera's QoS) and, unless
        ``cmd_vel_topic`` is None, the policy's commands.
        """
        with contextlib.redirect_stdout(io.StringIO()) as chatter:  # rosbags convert echoes
            self.connmap, self.convmap = create_connections_converters(
                self.reader.connections, self.store, self.reader, self.writer)
        for line in chatter.getvalue().splitlines():
            _LOG.debug('rosbags: %s', line)
        cam = next(c for c in self.reader.connections if c.topic == topic)
        qos = cam.ext.offered_qos_profiles if isinstance(cam.ext, ConnectionExtRosbag2) else []
        self.conns = {'sim': self.writer.add_connection(sim_topic, IMAGE_TYPE,
                                                        typestore=self.store,
                                                        offered_qos_profiles=qos)}
        if cmd_vel_topic is not None:
            self.conns['cmd_vel'] = self.writer.add_connection(cmd_vel_topic, TWIST_TYPE,
                                                               typestore=self.store)

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
