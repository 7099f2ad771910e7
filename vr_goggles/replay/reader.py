"""Reading the input: a ROS 1 or ROS 2 bag through ``rosbags``, or what is left of a cut MCAP.

:func:`open_bag` opens ``.bag`` (ROS 1), ``.db3`` and ``.mcap`` (ROS 2, a bag directory or the
storage file itself) with rosbags' ``AnyReader``; when that refuses an MCAP file whose footer
is missing (a recording cut by a crash or a full disk) it falls back to
:class:`McapSalvageReader`, which yields the readable messages and then fails with the byte
offset. :func:`pick_topic` chooses the camera topic, :func:`decode_frame` turns one of its
messages into a :class:`Frame` at the model size, and :func:`check_paths` guards the input and
any existing output before anything is written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator, Iterator
import contextlib
from dataclasses import dataclass
import logging
from pathlib import Path
import shutil
import struct
from typing import Any

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Connection, ConnectionExtRosbag2, TopicInfo
from rosbags.rosbag2 import storage_mcap
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

from vr_goggles.image import codec
from vr_goggles.replay.config import OutputExistsError, ReplayError, short_error
from vr_goggles.replay.salvage_ros1 import Ros1SalvageReader, check_ros1_magic, reason_text

_LOG = logging.getLogger(__package__)  # one logger for the whole replay

IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
#: Files an existing output may contain for ``--overwrite`` to delete it (never anything else).
MCAP_MAGIC = b'\x89MCAP0\r\n'
_BAG_SUFFIXES = ('.mcap', '.db3', '.yaml', '.zstd', '.db3-shm', '.db3-wal')


def _mcap_bytes(body: bytes, offset: int) -> tuple[bytes, int]:
    """MCAP length-prefixed field (uint32 length, then bytes) at ``offset`` -> (field, end)."""
    (n,) = struct.unpack_from('<I', body, offset)
    return body[offset + 4:offset + 4 + n], offset + 4 + n


class McapSalvageReader:
    """Reads what is left of a truncated/unindexed ROS 2 MCAP file, record by record.

    rosbags refuses an MCAP file without its footer; a recording cut by a crash or a full disk
    is exactly that. This scans from the start, yielding messages in file order until the data
    ends, then raises :class:`ReplayError` with the byte offset. Uncompressed chunks are read
    even when cut in the middle. Implements the subset of ``AnyReader`` replay uses.
    """

    is2 = True

    def __init__(self, path: Path):
        self.path = path
        self.file = path if path.is_file() else next(iter(sorted(path.glob('*.mcap'))), path)
        self.connections: list[Any] = []
        self.typestore = get_typestore(Stores.EMPTY)
        self.truncation: str | None = None
        self._counts: Counter = Counter()
        self._times: list[int] = []

    # -- low-level record scan -----------------------------------------------------------
    def _records(self, buf: bytes, base: int) -> Iterator[tuple[int, int, bytes, bool]]:
        """Yield ``(offset, op, body, complete)`` from ``buf``; the last may be incomplete."""
        pos = 0
        while pos < len(buf):
            if pos + 9 > len(buf):
                yield base + pos, -1, b'', False
                return
            op = buf[pos]
            (length,) = struct.unpack_from('<Q', buf, pos + 1)
            body = buf[pos + 9:pos + 9 + length]
            yield base + pos, op, body, len(body) == length
            if len(body) != length:
                return
            pos += 9 + length

    @staticmethod
    def _stream_records(f: Any, base: int, size: int
                        ) -> Iterator[tuple[int, int, bytes, bool]]:
        """Like :meth:`_records`, reading one top-level record at a time from the file."""
        offset = base
        while True:
            head = f.read(9)
            if not head:
                return
            if len(head) < 9:
                yield offset, -1, b'', False
                return
            op = head[0]
            (length,) = struct.unpack_from('<Q', head, 1)
            body = f.read(min(length, max(0, size - offset - 9)))  # a corrupt length: no OOM
            yield offset, op, body, len(body) == length
            if len(body) != length:
                return
            offset += 9 + length

    def _scan(self) -> Iterator[tuple[int, int, bytes]]:
        """Yield ``(offset, op, body)`` of top-level and in-chunk records; note truncation."""
        decompress = storage_mcap.decompress
        size = self.file.stat().st_size
        with self.file.open('rb') as f:
            if f.read(8) != MCAP_MAGIC:
                raise ReplayError(f'{self.path}: not an MCAP file (bad magic)')
            yield from self._scan_file(f, size, decompress)

    def _scan_file(self, f: Any, size: int, decompress: Any
                   ) -> Iterator[tuple[int, int, bytes]]:
        self.truncation = None
        for offset, op, body, complete in self._stream_records(f, 8, size):
            if op == 0x06:  # chunk: start, end, uncompressed size, crc, compression, records
                if len(body) < 32:
                    self.truncation = f'chunk at byte {offset} cut off at byte {size}'
                    return
                usize, crc = struct.unpack_from('<QI', body, 16)
                (clen,) = struct.unpack_from('<I', body, 28)
                compression = body[32:32 + clen].decode()
                p = 32 + clen
                if len(body) < p + 8:
                    self.truncation = f'chunk at byte {offset} cut off at byte {size}'
                    return
                (rlen,) = struct.unpack_from('<Q', body, p)
                records = body[p + 8:p + 8 + rlen]
                if len(records) == rlen:
                    inner = decompress(records, compression, usize, crc)
                elif compression == '':
                    inner = records  # a cut uncompressed chunk: read the records it still has
                else:
                    self.truncation = (f'compressed chunk at byte {offset} cut off at byte '
                                       f'{size}; its messages are lost')
                    return
                for ioff, iop, ibody, icomplete in self._records(inner, offset):
                    if not icomplete:
                        self.truncation = f'chunk at byte {offset} cut off at byte {size}'
                        return
                    yield ioff, iop, ibody
                if not complete:
                    self.truncation = f'chunk at byte {offset} cut off at byte {size}'
                    return
            elif not complete:
                self.truncation = f'record at byte {offset} cut off at byte {size}'
                return
            elif op in (0x02, 0x0F):  # footer / data end: the data section is over
                return
            else:
                yield offset, op, body

    # -- AnyReader subset ----------------------------------------------------------------
    def __enter__(self) -> McapSalvageReader:
        # rosbags' MCAP internals, looked up here so that a rosbags without them fails the
        # salvage (reported as such by open_bag), not the import of the replay.
        Schema, get_msgdef, get_qos = (storage_mcap.Schema, storage_mcap.get_msgdef,
                                       storage_mcap.get_qos)
        schemas: dict[int, Any] = {}
        for _, op, body in self._scan():
            if op == 0x03:
                (sid,) = struct.unpack_from('<H', body, 0)
                name, p = _mcap_bytes(body, 2)
                enc, p = _mcap_bytes(body, p)
                data, _ = _mcap_bytes(body, p)
                schemas[sid] = Schema(sid, name.decode(), enc.decode(), data.decode())
            elif op == 0x04:
                cid, sid = struct.unpack_from('<HH', body, 0)
                topic, p = _mcap_bytes(body, 4)
                enc, p = _mcap_bytes(body, p)
                meta, _ = _mcap_bytes(body, p)
                schema = schemas.get(sid)
                self.connections.append(Connection(
                    cid, topic.decode(), schema.name if schema else '', get_msgdef(schema), '',
                    0, ConnectionExtRosbag2(enc.decode(), get_qos(meta)), self))
            elif op == 0x05:
                cid, _, t = struct.unpack_from('<HIQ', body, 0)
                self._counts[cid] += 1
                self._times.append(t)
        typs: dict[str, Any] = {}
        for schema in schemas.values():
            if schema.encoding == 'ros2msg':
                typs.update(get_types_from_msg(schema.data, schema.name))
            elif schema.encoding in ('ros2idl', 'omgidl'):
                sep = '=' * 80 + '\n'
                parts = schema.data.split(sep)[1:] if schema.data.startswith(sep) else [
                    'IDL: x\n' + schema.data]
                for part in parts:
                    typs.update(get_types_from_idl(part.split('\n', 1)[1]))
        self.typestore.register(typs)
        self.connections = [c._replace(msgcount=self._counts[c.id]) for c in self.connections]
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    @property
    def topics(self) -> dict[str, Any]:
        """``{topic: TopicInfo}`` with the counts of the readable messages."""
        return {c.topic: TopicInfo(c.msgtype, c.msgdef, c.msgcount, [c])
                for c in self.connections}

    @property
    def duration(self) -> int:
        """Nanoseconds spanned by the readable messages."""
        return (max(self._times) - min(self._times) + 1) if self._times else 0

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        """CDR bytes -> message, with the types the file's schemas define."""
        return self.typestore.deserialize_cdr(raw, msgtype)

    def messages(self, connections: Any = ()) -> Generator[tuple[Any, int, bytes], None, None]:
        """All readable messages in file order; raises :class:`ReplayError` where data ends."""
        by_id = {c.id: c for c in self.connections}
        for _, op, body in self._scan():
            if op == 0x05:
                cid, _, t = struct.unpack_from('<HIQ', body, 0)
                if cid in by_id:
                    yield by_id[cid], t, body[22:]
        if self.truncation:
            raise ReplayError(f'{self.file.name} ends early: {self.truncation}')


def _mcap_file(bag: Path) -> Path | None:
    if bag.is_file() and bag.suffix == '.mcap':
        return bag
    if bag.is_dir():
        files = sorted(bag.glob('*.mcap'))
        if len(files) == 1:
            return files[0]
    return None


def _check_input(bag: Path) -> None:
    """Say plainly why ``bag`` is not a bag before rosbags words it (or tries to salvage it).

    rosbags reports random bytes named ``.bag`` as a UTF-8 decoding error, and a folder without
    ``metadata.yaml`` as a missing "metadata file" named after the folder.
    """
    if bag.is_dir():
        if not (bag / 'metadata.yaml').exists():
            files = sorted(p.name for p in bag.iterdir())
            storage = [f for f in files if f.endswith(('.mcap', '.db3'))]
            hint = (f'; to read a storage file without it, name the file itself: '
                    f'{bag / storage[0]}' if storage else '')
            what = 'is empty' if not files else f'has no metadata.yaml (it holds {len(files)} ' \
                f'file(s): {", ".join(files[:5])}{", ..." if len(files) > 5 else ""})'
            raise ReplayError(f'{bag}: not a ROS 2 bag folder: it {what}; a folder written by '
                              f'`ros2 bag record` holds metadata.yaml and its .db3/.mcap '
                              f'files{hint}')
        return
    if bag.suffix == '.bag':
        check_ros1_magic(bag)
    elif bag.suffix == '.mcap':
        with bag.open('rb') as f:
            head = f.read(8)
        if head != MCAP_MAGIC:
            raise ReplayError(f'{bag}: not an MCAP file: it does not start with the MCAP magic '
                              f'bytes (it starts with {head!r}), so there is nothing to '
                              'salvage')
    elif bag.suffix == '.db3':
        with bag.open('rb') as f:
            head = f.read(16)
        if head != b'SQLite format 3\x00':
            raise ReplayError(f'{bag}: not a SQLite database (a .db3 bag file starts with '
                              f'"SQLite format 3", this one with {head[:12]!r})')


def open_bag(bag: Path) -> Any:
    """Open ``bag`` with rosbags' AnyReader; fall back to salvage for a cut MCAP or ROS 1 bag.

    Returns an object with AnyReader's interface (use as a context manager). Raises
    :class:`ReplayError` naming the bag and saying why in a sentence when it cannot be read at
    all.
    """
    _check_input(bag)
    default = get_typestore(Stores.ROS2_HUMBLE if bag.suffix != '.bag' else Stores.ROS1_NOETIC)
    try:
        reader = AnyReader([bag], default_typestore=default)
        reader.open()
        return contextlib.closing(OpenedBag(reader))
    except FileNotFoundError:
        raise
    except Exception as e:
        reason = reason_text(e)
        if bag.suffix == '.bag' and bag.is_file():
            return _salvage_ros1(bag, reason, default)
        mcap = _mcap_file(bag)
        if mcap is None:
            raise ReplayError(f'{bag}: cannot open bag: {reason}') from None
        _LOG.warning('%s: %s; salvaging the readable part of %s', bag, reason, mcap.name)
        salvage = McapSalvageReader(mcap)
        return _opened_salvage(bag, reason, salvage, salvage.__enter__)


def _salvage_ros1(bag: Path, reason: str, default: Any) -> Any:
    """The readable chunks of a damaged ROS 1 bag, as an AnyReader over a salvage reader."""
    _LOG.warning('%s: %s; salvaging the readable chunks', bag, reason)
    reader = AnyReader([bag], default_typestore=default)
    reader.readers = [Ros1SalvageReader(bag, reason)]
    return _opened_salvage(bag, reason, reader, reader.open)


def _opened_salvage(bag: Path, reason: str, reader: Any, open_: Any) -> Any:
    """``open_()`` a salvage ``reader`` of ``bag``, which failed to open for ``reason``.

    A salvage that cannot start either is one ReplayError naming both reasons.
    """
    try:
        open_()
    except ReplayError:
        raise
    except Exception as e2:
        raise ReplayError(f'{bag}: cannot open bag ({reason}) and salvage failed: '
                          f'{reason_text(e2)}') from None
    reader.open_error = reason
    return contextlib.closing(OpenedBag(reader, salvaged=True))


class OpenedBag:
    """Uniform handle over AnyReader / McapSalvageReader (``close`` for contextlib)."""

    def __init__(self, reader: Any, salvaged: bool = False):
        self.reader = reader
        self.salvaged = salvaged

    def close(self) -> None:
        """Close the reader (a salvage reader holds no open file between scans)."""
        if not isinstance(self.reader, McapSalvageReader):
            with contextlib.suppress(Exception):
                self.reader.close()


def camera_info_topic(reader: Any, topic: str) -> str | None:
    """The camera's CameraInfo topic (``camera_info`` beside the image topic), if recorded."""
    base = topic[:-len('/compressed')] if topic.endswith('/compressed') else topic
    name = base.rsplit('/', 1)[0] + '/camera_info'
    info = reader.topics.get(name)
    return name if info is not None and info.msgtype == 'sensor_msgs/msg/CameraInfo' else None


def image_topics(reader: Any) -> dict[str, tuple[str, int]]:
    """``{topic: (msgtype, count)}`` of the Image/CompressedImage topics of an open reader."""
    return {name: (info.msgtype, info.msgcount) for name, info in sorted(reader.topics.items())
            if info.msgtype in IMAGE_TYPES}


def pick_topic(reader: Any, topic: str | None, bag: Path) -> tuple[str, str]:
    """The camera topic to translate: ``topic`` if given, else the bag's only image topic."""
    images = image_topics(reader)
    listing = ', '.join(f'{t} ({m.rsplit("/", 1)[-1]}, {n} msgs)'
                        for t, (m, n) in images.items()) or 'none'
    if topic is not None:
        if topic in images:
            return topic, images[topic][0]
        if topic in reader.topics:
            raise ValueError(f'{bag}: topic {topic} is {reader.topics[topic].msgtype}, not an '
                             f'image; image topics: {listing}')
        raise ValueError(f'{bag}: no topic {topic}; image topics: {listing}')
    if len(images) == 1:
        return next(iter(images.items()))[0], next(iter(images.values()))[0]
    if not images:
        others = ', '.join(f'{t} ({i.msgtype})' for t, i in sorted(reader.topics.items()))
        raise ValueError(f'{bag}: no sensor_msgs/Image or CompressedImage topic '
                         f'(topics: {others or "none"})')
    raise ValueError(f'{bag}: {len(images)} image topics, choose one with --topic: {listing}')


# ---------------------------------------------------------------------------------------------
# Camera messages -> frames at the model size


@dataclass
class Frame:
    """One decoded camera frame travelling from the reader to the engine."""

    index: int  # position among the camera topic's messages
    log_time: int
    stamp: tuple[int, int]
    frame_id: str
    source_size: tuple[int, int]
    image: np.ndarray  # uint8 RGB at the model size
    camera_info: Any = None  # the camera's latest CameraInfo when this frame was read
    score_image: np.ndarray | None = None  # for a domain score of another size than ``image``


@dataclass
class Skip:
    """A message left out of the output or the translation, and why (``kind``: counted)."""

    index: int
    log_time: int
    topic: str
    kind: str
    reason: str


class _Undecodable(Exception):
    """One message that cannot become an image; it is skipped and counted by ``kind``."""

    def __init__(self, kind: str, error: BaseException):
        super().__init__(f'{kind}: {error}')
        self.kind, self.error = kind, error


def _decode(reader: Any, conn: Any, raw: bytes) -> tuple[np.ndarray, Any]:
    """Raw message -> (RGB image at its own size, header); ``_Undecodable`` on failure."""
    try:
        msg = reader.deserialize(raw, conn.msgtype)
    except Exception as e:
        raise _Undecodable('undeserializable message', e) from None
    try:
        if conn.msgtype == COMPRESSED_TYPE:
            rgb = codec.compressed_to_numpy(msg)
        else:
            rgb = codec.image_to_rgb(msg)
    except Exception as e:
        raise _Undecodable('bad image', e) from None
    return rgb, msg.header


def decode_frame(reader: Any, conn: Any, index: int, t: int, raw: bytes,
                 preprocessor: Any, score_preprocessor: Any = None) -> Frame | Skip:
    """Decode + resize one camera message; a :class:`Skip` saying why if impossible.

    The same decoding (:mod:`vr_goggles.image.codec`) and preprocessing as the ROS node.
    ``score_preprocessor``: also resize the decoded frame for a domain score whose input size
    differs from the goggles' (``Frame.score_image``).
    """
    try:
        rgb, header = _decode(reader, conn, raw)
        image = preprocessor.image(rgb)
        score_image = (score_preprocessor.image(rgb) if score_preprocessor is not None
                       else None)
    except _Undecodable as e:
        return Skip(index, t, conn.topic, e.kind, short_error(e.error))
    except Exception as e:  # preprocessing refused the decoded image
        return Skip(index, t, conn.topic, 'bad image', short_error(e))
    stamp = (int(header.stamp.sec), int(header.stamp.nanosec))
    return Frame(index, t, stamp, str(header.frame_id), rgb.shape[:2], image,
                 score_image=score_image)


# ---------------------------------------------------------------------------------------------
# Input and output paths


def _looks_like_bag(path: Path) -> bool:
    if path.is_file():
        return path.suffix in _BAG_SUFFIXES
    if not path.is_dir():
        return False
    entries = list(path.iterdir())
    return (not entries) or ((path / 'metadata.yaml').exists() and all(
        p.is_file() and p.name.endswith(_BAG_SUFFIXES) for p in entries))


def check_paths(bag: Path, out: Path, overwrite: bool,
                extra: tuple[tuple[str, Any], ...] = ()) -> None:
    """Refuse to write into/over the input and to replace an output without ``overwrite``.

    ``extra`` are ``(flag, path)`` of the other files written (report, metrics).
    """
    if not bag.exists():
        raise FileNotFoundError(f'{bag}: no such bag')
    b, o = bag.resolve(), out.resolve()
    if b.is_file() and (b.parent / 'metadata.yaml').exists():
        b = b.parent  # a .db3/.mcap named directly: its bag directory is off limits too
    if o == b or b in o.parents or o in b.parents:
        raise ValueError(f'--out {out} would write into or over the input bag {bag}')
    for flag, path in extra:
        if path is None:
            continue
        p = Path(path).resolve()
        if p == b or b in p.parents:
            raise ValueError(f'{flag} {path} would write into or over the input bag {bag}')
        if p == o or o in p.parents:
            raise ValueError(f'{flag} {path} would be inside the output bag {out}')
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise OutputExistsError(f'{out} exists; pass --overwrite to replace it')
        if not _looks_like_bag(out):
            raise ValueError(f'{out} exists and does not look like a bag; refusing to delete it '
                             'even with --overwrite')


def remove_output(path: Path) -> None:
    """Delete an output bag (file, directory or link) that :func:`check_paths` let through."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
