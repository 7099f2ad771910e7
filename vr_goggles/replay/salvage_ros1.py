"""What is left of a cut ROS 1 ``.bag``: its readable chunks, read without the index.

A ROS 1 bag keeps its index (connection records and chunk infos) at the end of the file, so a
recording cut by a crash or a full disk loses it and rosbags refuses the whole file ("Bag index
looks damaged"). The data before the cut is intact: chunks, each holding the connection records
it needs and the messages. :class:`Ros1SalvageReader` is rosbags' ROS 1 reader with ``open``
replaced by a scan from the start of the file that rebuilds the connections and a per-message
index from the chunks it can read; rosbags' own ``messages`` then reads them. Compressed chunks
(bz2, lz4) are read when complete; an uncompressed chunk cut in the middle gives its complete
messages. After the last readable message :meth:`Ros1SalvageReader.messages` raises
:class:`~vr_goggles.replay.config.ReplayError` saying where the data ends, as the MCAP salvage
does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Generator
import io
import os
from pathlib import Path
import re
import struct
from typing import Any

from rosbags.interfaces import (
    Connection,
    ConnectionExtRosbag1,
    MessageDefinition,
    MessageDefinitionFormat,
)
from rosbags.rosbag1 import reader as r1
from rosbags.typesys.msg import normalize_msgtype

from vr_goggles.replay.config import ReplayError

ROS1_MAGIC = b'#ROSBAG V2.0\n'


def reason_text(e: BaseException) -> str:
    """A rosbags error as a sentence: ``"x: ('y',)"`` (a repr of ``args``) becomes ``"x: y"``."""
    text = str(e.args[0]) if len(e.args) == 1 else str(e)
    return re.sub(r"\(\s*'([^']*)',?\s*\)", r'\1', text).rstrip('.')


def check_ros1_magic(path: Path) -> None:
    """Refuse a ``.bag`` that is not a ROS 1 bag v2.0, saying what it starts with instead."""
    with path.open('rb') as f:
        head = f.read(len(ROS1_MAGIC))
    if not head:
        raise ReplayError(f'{path}: the file is empty, not a ROS 1 bag')
    if head != ROS1_MAGIC:
        if head.startswith(b'#ROSBAG V'):
            version = head.split(b'\n', 1)[0].decode('ascii', 'replace')
            raise ReplayError(f'{path}: {version} is not supported (only ROS 1 bag format 2.0)')
        raise ReplayError(f'{path}: not a ROS 1 bag: a .bag file starts with "#ROSBAG V2.0", '
                          f'this one with {head[:12]!r}')


class Ros1SalvageReader(r1.Reader):
    """rosbags' ROS 1 reader over the readable chunks of a bag whose index is lost."""

    def __init__(self, path: str | os.PathLike, open_error: str):
        super().__init__(Path(path))
        self.open_error = open_error
        self.truncation: str | None = None

    def open(self) -> None:
        """Scan the file from its start; build connections, chunk infos and indexes."""
        if self.bio is not None:
            raise r1.ReaderError('Reader is already open.')
        self.bio = self.path.open('rb')
        try:
            self._scan(self.path.stat().st_size)
        except BaseException:
            self.bio.close()
            self.bio = None
            raise

    def _scan(self, size: int) -> None:
        bio = self.bio
        assert bio is not None
        if bio.readline() != ROS1_MAGIC:
            raise ReplayError(f'{self.path}: not a ROS 1 bag v2.0')
        try:  # the bag header record, padded to 4 KiB
            r1.Header.read(bio, r1.RecordType.BAGHEADER)
            bio.seek(r1.read_uint32(bio), os.SEEK_CUR)
        except r1.ReaderError as e:
            raise ReplayError(f'{self.path}: the bag header is unreadable '
                              f'({reason_text(e)})') from None
        conns: dict[int, Connection] = {}
        indexes: dict[int, list[r1.IndexData]] = defaultdict(list)
        while bio.tell() < size:
            pos = bio.tell()
            try:
                header = r1.Header.read(bio)
                op = header.get_uint8('op')
                datalen = r1.read_uint32(bio)
            except r1.ReaderError:
                self.truncation = f'record at byte {pos} cut off at byte {size}'
                break
            datapos = bio.tell()
            if op == r1.RecordType.CHUNK:
                if not self._chunk(header, pos, datapos, datalen, size, conns, indexes):
                    break
            elif op == r1.RecordType.CONNECTION:
                try:
                    conn = self._connection(header, bio)
                except r1.ReaderError:
                    break  # the index section is being cut: the chunks are all read
                conns.setdefault(conn.id, conn)
            else:  # index data / chunk info: rebuilt from the chunks themselves
                if datapos + datalen > size:
                    break
                bio.seek(datalen, os.SEEK_CUR)
        self.indexes = {cid: sorted(indexes[cid]) for cid in conns}
        self.connections = [Connection(*c[0:5], len(self.indexes[c.id]), c.ext, self)
                            for c in conns.values()]

    def _chunk(self, header: Any, pos: int, datapos: int, datalen: int, size: int,
               conns: dict[int, Connection], indexes: dict[int, list[r1.IndexData]]) -> bool:
        """Index one chunk's messages; False when the file ends inside it."""
        bio = self.bio
        assert bio is not None
        compression = header.get_string('compression')
        avail = min(datalen, max(0, size - datapos))
        if compression not in r1.decompressors:
            self.truncation = f'chunk at byte {pos} uses unknown compression {compression!r}'
            return False
        if avail < datalen and compression != 'none':
            self.truncation = (f'{compression} chunk at byte {pos} cut off at byte {size}; its '
                               'messages are lost')
            return False
        raw = bio.read(avail)
        try:
            data = r1.decompressors[compression](raw)
        except Exception as e:
            self.truncation = f'chunk at byte {pos} does not decompress ({e})'
            return False
        counts: dict[int, int] = defaultdict(int)
        times: list[int] = []
        chunk = io.BytesIO(data)
        while chunk.tell() < len(data):
            offset = chunk.tell()
            try:
                rec = r1.Header.read(chunk)
                op = rec.get_uint8('op')
                if op == r1.RecordType.CONNECTION:
                    conn = self._connection(rec, chunk)
                    conns.setdefault(conn.id, conn)
                    continue
                n = r1.read_uint32(chunk)
                if op != r1.RecordType.MSGDATA or chunk.seek(n, os.SEEK_CUR) > len(data):
                    break
                cid, t = rec.get_uint32('conn'), rec.get_time('time')
            except (r1.ReaderError, struct.error):
                break
            indexes[cid].append(r1.IndexData(t, pos, offset))
            counts[cid] += 1
            times.append(t)
        if times:
            self.chunks[pos] = r1.Chunk(len(raw), datapos, r1.decompressors[compression])
            self.chunk_infos.append(r1.ChunkInfo(pos, min(times), max(times) + 1, dict(counts)))
        if avail < datalen:
            self.truncation = f'chunk at byte {pos} cut off at byte {size}'
            return False
        return True

    @staticmethod
    def _connection(header: Any, src: Any) -> Connection:
        """A connection record (its header already read) -> rosbags Connection."""
        data = r1.Header.read(src)
        latching = data.get_string('latching') if 'latching' in data else None
        return Connection(
            header.get_uint32('conn'), r1.normalize(header.get_string('topic')),
            normalize_msgtype(data.get_string('type')),
            MessageDefinition(MessageDefinitionFormat.MSG,
                              data.get_string('message_definition')),
            data.get_string('md5sum'), 0,
            ConnectionExtRosbag1(data.get_string('callerid') if 'callerid' in data else None,
                                 int(latching) if latching not in (None, '') else None),
            None)

    def messages(self, connections: Collection[Connection] = (), start: int | None = None,
                 stop: int | None = None) -> Generator[tuple[Connection, int, bytes], None, None]:
        """Messages via rosbags over the salvaged index; then where the data ends."""
        yield from super().messages(connections, start, stop)
        if self.truncation and start is None and stop is None:
            raise ReplayError(f'{self.path.name} ends early: {self.truncation}')
