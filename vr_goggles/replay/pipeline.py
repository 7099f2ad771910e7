"""``vr-goggles replay``: run the goggles (and optionally the policy) over a recorded bag.

Offline twin of the ROS node: the same :class:`vr_goggles.goggles.Goggles` core, decoding
(:mod:`vr_goggles.image.codec`) and preprocessing, fed from a ROS 1 or ROS 2 bag through
``rosbags`` (no ROS install). The output is a ROS 2 MCAP bag with every original message plus
``<topic>_sim`` (translated ``rgb8`` images, original header stamps and log times) and, with a
policy, its ``cmd_vel`` per frame, so ``ros2 bag play`` of the output drives RViz/Foxglove as
the robot would have. Metrics (latency, throughput, flicker, shift error, action statistics)
go to JSON and an optional self-contained HTML report.

Pipeline (so codec and I/O overlap inference; the GIL is released in numpy/OpenCV/torch):
a reader thread reads and converts messages and decodes + resizes frames to the model size
(JPEG/PNG in a small thread pool, order kept); the calling thread batches frames through the
engine (and policy), with torch held to one core fewer than the machine so the I/O threads do
not oversubscribe it; a writer thread serialises and writes (see :func:`mcap_writer_class`).

A bag that is corrupt or truncated part-way stops the run with an error naming the bag and
position, but everything done so far is written and ``complete`` is false in the metrics; a
single undecodable message is skipped and counted with its reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
import contextlib
from dataclasses import dataclass, field
import io
import json
import logging
import os
from pathlib import Path
import queue
import shutil
import struct
import sys
import threading
import time
from typing import Any

import numpy as np

_LOG = logging.getLogger(__name__)

IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
TWIST_TYPE = 'geometry_msgs/msg/Twist'
#: Types the output needs even when the input bag does not define them.
_OUTPUT_TYPES = ('builtin_interfaces/msg/Time', 'std_msgs/msg/Header', IMAGE_TYPE,
                 'geometry_msgs/msg/Vector3', TWIST_TYPE)
#: Files an existing output may contain for ``--overwrite`` to delete it (never anything else).
_BAG_SUFFIXES = ('.mcap', '.db3', '.yaml', '.zstd', '.db3-shm', '.db3-wal')
_MAX_SKIP_EXAMPLES = 20
_QUEUE_DEPTH = 32  # frames in flight; raw pass-through messages may be ~1 MB each


class ReplayError(RuntimeError):
    """The bag cannot be replayed at all (the CLI prints it as one line)."""


class OutputExistsError(ValueError):
    """The output exists and ``overwrite`` was not given."""


@dataclass
class ReplayConfig:
    """Everything one replay run needs; mirrors the CLI flags."""

    bag: str | os.PathLike
    out: str | os.PathLike
    topic: str | None = None
    model: str = 'goggles_vr_goggles'
    engine: str = 'auto'
    device: str = 'cpu'
    precision: str = 'fp32'
    compile: bool = False
    engine_file_path: str | None = None
    force_engine_update: bool = False
    policy: str | None = None
    cmd_vel_topic: str = '/cmd_vel'
    sim_suffix: str = '_sim'
    report: str | os.PathLike | None = None
    metrics: str | os.PathLike | None = None
    overwrite: bool = False
    max_frames: int | None = None
    batch_size: int = 1
    decode_threads: int | None = None  # None: 2 for CompressedImage, 1 (no pool) for raw
    torch_threads: int | None = None  # None: min(current, cores - 1); 0: leave torch alone
    switch_interval: float | None = None  # seconds; None leaves sys.setswitchinterval alone
    shift_frames: int = 4
    max_shift: int = 4
    strip_frames: int = 6
    bench: bool = False
    bench_frames: int = 512
    progress: bool = True
    command: str = ''


@dataclass
class _Frame:
    """One decoded camera frame travelling from the reader to the engine."""

    index: int  # position among the camera topic's messages
    log_time: int
    stamp: tuple[int, int]
    frame_id: str
    source_size: tuple[int, int]
    image: np.ndarray  # uint8 RGB at the model size


@dataclass
class _Skip:
    index: int
    log_time: int
    topic: str
    kind: str
    reason: str


@dataclass
class _Position:
    """Where the reader is, for error messages about a corrupt bag."""

    messages: int = 0  # messages read so far (all topics)
    last_time: int | None = None


@dataclass
class _Stats:
    """Accumulated while frames flow; turned into the metrics dict at the end."""

    frames: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    translate_s: float = 0.0
    flicker_in: list[float] = field(default_factory=list)
    flicker_out: list[float] = field(default_factory=list)
    flicker_t: list[float] = field(default_factory=list)
    prev: tuple[int, np.ndarray, np.ndarray] | None = None
    actions: list[int] = field(default_factory=list)
    samples: list[tuple[int, int, np.ndarray, np.ndarray, tuple[int, int]]] = field(
        default_factory=list)
    bench_inputs: list[np.ndarray] = field(default_factory=list)
    first_time: int | None = None
    last_time: int | None = None
    source_sizes: Counter = field(default_factory=Counter)


# ---------------------------------------------------------------------------------------------
# Reading: rosbags AnyReader, or a salvage scan for an MCAP file whose tail is missing


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
        from rosbags.typesys import Stores, get_typestore

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
        from rosbags.rosbag2.storage_mcap import decompress

        size = self.file.stat().st_size
        with self.file.open('rb') as f:
            if f.read(8) != b'\x89MCAP0\r\n':
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
        from rosbags.interfaces import Connection, ConnectionExtRosbag2
        from rosbags.rosbag2.storage_mcap import Schema, get_msgdef, get_qos
        from rosbags.typesys import get_types_from_idl, get_types_from_msg

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
        from rosbags.interfaces import TopicInfo

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


def open_bag(bag: Path) -> Any:
    """Open ``bag`` with rosbags' AnyReader; fall back to salvage for a cut MCAP file.

    Returns an object with AnyReader's interface (use as a context manager). Raises
    :class:`ReplayError` naming the bag when it cannot be read at all.
    """
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    default = get_typestore(Stores.ROS2_HUMBLE if bag.suffix != '.bag' else Stores.ROS1_NOETIC)
    try:
        reader = AnyReader([bag], default_typestore=default)
        reader.open()
        return contextlib.closing(_Opened(reader))
    except FileNotFoundError:
        raise
    except Exception as e:
        mcap = _mcap_file(bag)
        if mcap is None:
            raise ReplayError(f'{bag}: cannot open bag: {e}') from None
        _LOG.warning('%s: %s; salvaging the readable part of %s', bag, e, mcap.name)
        salvage = McapSalvageReader(mcap)
        try:
            salvage.__enter__()
        except ReplayError:
            raise
        except Exception as e2:
            raise ReplayError(f'{bag}: cannot open bag ({e}) and salvage failed: {e2}') from None
        salvage.open_error = str(e)
        return contextlib.closing(_Opened(salvage))


class _Opened:
    """Uniform handle over AnyReader / McapSalvageReader (``close`` for contextlib)."""

    def __init__(self, reader: Any):
        self.reader = reader
        self.salvaged = isinstance(reader, McapSalvageReader)

    def close(self) -> None:
        if not self.salvaged:
            with contextlib.suppress(Exception):
                self.reader.close()


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
# Output paths


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


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


# ---------------------------------------------------------------------------------------------
# The run


def _output_typestore(reader: Any) -> Any:
    """Typestore for the written ROS 2 bag.

    The bag's own types (ROS 1 headers replaced by ROS 2's, as ``rosbags convert`` does) plus
    what the added topics need.
    """
    from rosbags.typesys import Stores, get_typestore

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
    from rosbags.rosbag2 import StoragePlugin, Writer

    try:
        from rosbags.rosbag2 import storage_mcap as sm

        base = sm.McapWriter
        helpers = (sm.PendingChunk, sm.write_uint16, sm.write_uint32, sm.write_uint64,
                   sm.write_record, sm.write_string)
    except (ImportError, AttributeError):
        return Writer
    del helpers
    from collections import defaultdict

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


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _evenly_spaced(n_expected: int, k: int) -> set[int]:
    if n_expected <= 0 or k <= 0:
        return set()
    return {int(round(x)) for x in np.linspace(0, n_expected - 1, min(k, n_expected))}


class _Pipeline:
    """Reader thread -> engine (caller's thread) -> writer thread."""

    def __init__(self, cfg: ReplayConfig, reader: Any, topic: str, goggles: Any,
                 policy: Any, writer: Any, out_store: Any, conns: dict[str, Any],
                 connmap: dict, convmap: dict, expected: int, msgtype: str = IMAGE_TYPE):
        self.cfg, self.reader, self.topic = cfg, reader, topic
        self.goggles, self.policy, self.writer = goggles, policy, writer
        self.out_store, self.conns = out_store, conns
        self.connmap, self.convmap = connmap, convmap
        self.size = tuple(goggles.preprocessor.size)
        self.frames_q: queue.Queue = queue.Queue(_QUEUE_DEPTH)
        self.out_q: queue.Queue = queue.Queue(_QUEUE_DEPTH * 2)
        self.stop = threading.Event()
        self.pos = _Position()
        self.skips: list[_Skip] = []
        self.read_error: str | None = None
        self.write_error: str | None = None
        self.written = 0
        self.cpu_s = 0.0
        self.stats = _Stats()
        self.sample_at = _evenly_spaced(expected, max(cfg.strip_frames, cfg.shift_frames))
        self.last_sample: tuple | None = None
        self.reader_done = threading.Event()
        workers = cfg.decode_threads
        if workers is None:  # JPEG/PNG decoding parallelises; raw copies only add contention
            workers = 2 if msgtype == COMPRESSED_TYPE else 1
        self.pool = (ThreadPoolExecutor(workers, thread_name_prefix='replay-decode')
                     if workers > 1 else None)

    # -- reader thread ----------------------------------------------------------------------
    def _put(self, q: queue.Queue, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _decode(self, conn: Any, raw: bytes) -> tuple[np.ndarray, Any]:
        """Raw message -> (RGB image at its own size, header); ``_Undecodable`` on failure."""
        from vr_goggles.image import codec

        try:
            msg = self.reader.deserialize(raw, conn.msgtype)
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

    def _make_frame(self, conn: Any, index: int, t: int, raw: bytes) -> _Frame | None:
        """Decode + resize one camera message; ``None`` (and a counted skip) if impossible."""
        try:
            rgb, header = self._decode(conn, raw)
            image = self.goggles.preprocessor.image(rgb)
        except _Undecodable as e:
            self.skips.append(_Skip(index, t, conn.topic, e.kind, _short(e.error)))
            return None
        except Exception as e:  # preprocessing refused the decoded image
            self.skips.append(_Skip(index, t, conn.topic, 'bad image', _short(e)))
            return None
        stamp = (int(header.stamp.sec), int(header.stamp.nanosec))
        return _Frame(index, t, stamp, str(header.frame_id), rgb.shape[:2], image)

    def read(self) -> None:
        """Reader thread: pass-through messages to the writer, frames to the engine."""
        n_img = 0
        limit = self.cfg.max_frames
        try:
            for conn, t, raw in self.reader.messages():
                if self.stop.is_set():
                    break
                if conn.topic == self.topic and limit is not None and n_img >= limit:
                    break
                self.pos.messages += 1
                self.pos.last_time = t
                wconn = self.connmap.get((conn.id, conn.owner))
                if wconn is not None:
                    try:
                        data = self.convmap[conn.msgtype](raw)
                    except Exception as e:
                        self.skips.append(_Skip(self.pos.messages - 1, t, conn.topic,
                                                'not convertible to ROS 2', _short(e)))
                    else:
                        if not self._put(self.out_q, ('raw', wconn, t, data)):
                            break
                if conn.topic != self.topic:
                    continue
                index, n_img = n_img, n_img + 1
                if self.pool is not None:  # decode in parallel, keep the order via futures
                    item = self.pool.submit(self._make_frame, conn, index, t, raw)
                else:
                    item = self._make_frame(conn, index, t, raw)
                    if item is None:
                        continue
                if not self._put(self.frames_q, item):
                    break
        except Exception as e:
            where = (f'after message {self.pos.messages}'
                     + (f' (log time {self.pos.last_time} ns)' if self.pos.last_time else ''))
            self.read_error = f'{self.cfg.bag}: bag is corrupt or truncated {where}: {_short(e)}'
        finally:
            self.reader_done.set()
            self._put(self.frames_q, None)

    # -- writer thread ----------------------------------------------------------------------
    def write(self) -> None:
        """Writer thread: serialise and write; on failure keep draining so nothing blocks."""
        from vr_goggles.image import codec

        types = self.out_store.types
        Image, Header, Time = (types[IMAGE_TYPE], types['std_msgs/msg/Header'],
                               types['builtin_interfaces/msg/Time'])
        Twist, Vector3 = types[TWIST_TYPE], types['geometry_msgs/msg/Vector3']
        ser = self.out_store.serialize_cdr
        while True:
            item = self.out_q.get()
            if item is None:
                return
            if self.write_error:
                continue
            try:
                if item[0] == 'raw':
                    _, wconn, t, data = item
                    self.writer.write(wconn, t, data)
                    self.written += 1
                    continue
                _, frame, out, vel = item
                hdr = Header(stamp=Time(sec=frame.stamp[0], nanosec=frame.stamp[1]),
                             frame_id=frame.frame_id)
                msg = codec.numpy_to_image(out, 'rgb8', header=hdr, msg_cls=Image)
                self.writer.write(self.conns['sim'], frame.log_time, ser(msg, IMAGE_TYPE))
                self.written += 1
                if vel is not None:
                    twist = Twist(linear=Vector3(x=float(vel[0]), y=0.0, z=0.0),
                                  angular=Vector3(x=0.0, y=0.0, z=float(vel[1])))
                    self.writer.write(self.conns['cmd_vel'], frame.log_time,
                                      ser(twist, TWIST_TYPE))
                    self.written += 1
            except Exception as e:
                self.write_error = f'{self.cfg.out}: writing failed: {_short(e)}'
                self.stop.set()

    # -- engine (calling thread) ------------------------------------------------------------
    def _batches(self) -> Iterator[list[_Frame]]:
        bs = max(1, int(self.cfg.batch_size))
        done = False
        while not done:
            try:
                first = self.frames_q.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set() or (self.reader_done.is_set() and self.frames_q.empty()):
                    return
                continue
            if first is None:
                return
            first = _resolve(first)
            batch = [first] if first is not None else []
            while len(batch) < bs:
                try:
                    item = self.frames_q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    done = True
                    break
                item = _resolve(item)
                if item is not None:
                    batch.append(item)
            if batch:
                yield batch

    def run(self, progress: Any) -> None:
        """Translate frames as they arrive; returns when the reader is done or stopped."""
        from vr_goggles.policy.actions import action_to_velocity

        st = self.stats
        for batch in self._batches():
            images = [f.image for f in batch]
            t0 = time.perf_counter()
            outs = np.asarray(self.goggles.translate_batch(images))
            dt = time.perf_counter() - t0
            # Header stamps pace the policy's frame history (one slot per control period).
            actions = (np.asarray(self.policy.act_batch(
                list(outs), times=[f.stamp[0] + 1e-9 * f.stamp[1] for f in batch])).astype(int)
                if self.policy is not None else None)
            st.translate_s += dt
            st.batch_sizes.append(len(batch))
            for k, (frame, out) in enumerate(zip(batch, outs)):
                vel = None
                if actions is not None:
                    st.actions.append(int(actions[k]))
                    vel = action_to_velocity(int(actions[k]))
                if not self._put(self.out_q, ('sim', frame, out, vel)):
                    return
                self._account(frame, out, dt / len(batch))
            if progress is not None:
                progress.update(len(batch))

    def _account(self, frame: _Frame, out: np.ndarray, latency_s: float) -> None:
        st = self.stats
        st.frames += 1
        st.latencies_ms.append(latency_s * 1e3)
        st.source_sizes[frame.source_size] += 1
        st.first_time = frame.log_time if st.first_time is None else st.first_time
        st.last_time = frame.log_time
        if st.prev is not None and st.prev[0] == frame.index - 1:
            _, pin, pout = st.prev
            st.flicker_in.append(float(np.abs(frame.image.astype(np.int16) - pin).mean()))
            st.flicker_out.append(float(np.abs(out.astype(np.int16) - pout).mean()))
            st.flicker_t.append((frame.log_time - st.first_time) / 1e9)
        st.prev = (frame.index, frame.image.astype(np.int16), out.astype(np.int16))
        sample = (frame.index, frame.log_time, frame.image, np.array(out), frame.source_size)
        if frame.index in self.sample_at:
            st.samples.append(sample)
        self.last_sample = sample
        if self.cfg.bench and len(st.bench_inputs) < self.cfg.bench_frames:
            st.bench_inputs.append(frame.image)


def _resolve(item: Any) -> _Frame | None:
    """A frame, or the result of a decode future (``None`` when that message was skipped)."""
    return item.result() if isinstance(item, Future) else item


class _Undecodable(Exception):
    """One message that cannot become an image; it is skipped and counted by ``kind``."""

    def __init__(self, kind: str, error: BaseException):
        super().__init__(f'{kind}: {error}')
        self.kind, self.error = kind, error


def _short(e: BaseException, limit: int = 200) -> str:
    text = f'{type(e).__name__}: {e}' if not isinstance(e, (ValueError, ReplayError)) else str(e)
    text = ' '.join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + '...'


def _make_progress(cfg: ReplayConfig, total: int | None) -> Any:
    if not cfg.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit='frame', desc='replay', dynamic_ncols=True)


def load_goggles(cfg: ReplayConfig) -> Any:
    """The same core the ROS node uses."""
    from vr_goggles.goggles import Goggles

    return Goggles.from_model(cfg.model, engine=cfg.engine, device=cfg.device,
                              precision=cfg.precision, compile=cfg.compile,
                              engine_file_path=cfg.engine_file_path,
                              force_engine_update=cfg.force_engine_update)


def replay(cfg: ReplayConfig, *, goggles: Any = None, policy: Any = None) -> dict[str, Any]:
    """Run a replay; returns the metrics dict (also written to ``cfg.metrics``/``cfg.report``).

    Raises ``ValueError``/``FileNotFoundError``/:class:`ReplayError` before anything is written
    when the bag or the arguments are unusable. A failure part-way does not raise: the output
    holds everything done so far and the metrics say ``complete: false`` with the ``error``.
    """
    bag, out = Path(cfg.bag), Path(cfg.out)
    check_paths(bag, out, cfg.overwrite, (('--report', cfg.report), ('--metrics', cfg.metrics)))
    if cfg.max_frames is not None and cfg.max_frames < 1:
        raise ValueError(f'--max-frames must be at least 1, got {cfg.max_frames}')
    with open_bag(bag) as opened:
        reader = opened.reader
        topic, msgtype = pick_topic(reader, cfg.topic, bag)
        sim_topic = topic + cfg.sim_suffix
        if sim_topic in reader.topics:
            raise ValueError(f'{bag}: already has a topic {sim_topic} (a replayed bag?); '
                             'choose the camera topic of the original recording')
        restore_threads = _limit_torch_threads(cfg.torch_threads)  # before engines are built
        try:
            metrics = _replay_open_bag(cfg, bag, out, opened, topic, msgtype, sim_topic,
                                       goggles, policy)
        finally:
            restore_threads()
    metrics['out'] = str(out)
    if cfg.metrics:
        try:
            Path(cfg.metrics).parent.mkdir(parents=True, exist_ok=True)
            Path(cfg.metrics).write_text(
                json.dumps(metrics, indent=2, default=_json_default) + '\n', encoding='utf-8')
        except OSError as e:
            raise ReplayError(f'{cfg.metrics}: cannot write the metrics ({e}); the output bag '
                              f'{out} is complete') from None
    return metrics


def _replay_open_bag(cfg: ReplayConfig, bag: Path, out: Path, opened: _Opened, topic: str,
                     msgtype: str, sim_topic: str, goggles: Any, policy: Any) -> dict[str, Any]:
    """Load the models, run the pipeline into a temporary bag, then swap it into ``out``."""
    reader = opened.reader
    goggles = goggles if goggles is not None else load_goggles(cfg)
    if policy is None and cfg.policy:
        from vr_goggles.policy import Policy

        policy = Policy.load(cfg.policy)
    cmd_vel_topic = cfg.cmd_vel_topic
    if policy is not None and cmd_vel_topic in reader.topics:
        cmd_vel_topic = cmd_vel_topic + '_policy'
        _LOG.warning('%s: already records %s; the policy commands go to %s', bag,
                     cfg.cmd_vel_topic, cmd_vel_topic)
    expected = reader.topics[topic].msgcount or 0
    if cfg.max_frames is not None:
        expected = min(expected, cfg.max_frames) if expected else cfg.max_frames
    tmp_dir = out.parent / f'.{out.name}.partial-{os.getpid()}'
    try:
        _remove(tmp_dir)
        tmp_dir.mkdir(parents=True)
    except OSError as e:
        raise ReplayError(f'{out}: cannot create the output: {e}') from None
    try:
        # Warm the engine outside the timed loop (lazy init, compile, first allocation).
        size = tuple(goggles.preprocessor.size)
        goggles.translate_batch([np.zeros((*size, 3), np.uint8)] * max(1, cfg.batch_size))
        metrics = _run_to(cfg, opened, topic, msgtype, sim_topic, cmd_vel_topic, goggles,
                          policy, tmp_dir / out.name, expected)
        if out.exists() or out.is_symlink():
            _remove(out)
        (tmp_dir / out.name).rename(out)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return metrics


def _limit_torch_threads(requested: int | None) -> Callable[[], None]:
    """Leave a core to the reader/writer threads; returns a function restoring the setting.

    torch's OpenMP workers spin after each op; with the pipeline's own threads on top, a
    2-core machine oversubscribes and a 1 ms model can take hundreds of ms per frame. ``None``
    means ``min(current, cores - 1)``; ``0`` leaves torch alone.
    """
    if requested == 0:
        return lambda: None
    try:
        import torch
    except ImportError:
        return lambda: None
    before = torch.get_num_threads()
    n = requested if requested else min(before, max(1, (os.cpu_count() or 2) - 1))
    if n == before:
        return lambda: None
    torch.set_num_threads(n)
    _LOG.debug('torch threads %d -> %d for the replay', before, n)
    return lambda: torch.set_num_threads(before)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _run_to(cfg: ReplayConfig, opened: _Opened, topic: str, msgtype: str, sim_topic: str,
            cmd_vel_topic: str, goggles: Any, policy: Any, out_path: Path,
            expected: int) -> dict[str, Any]:
    from rosbags.convert.converter import create_connections_converters
    from rosbags.interfaces import ConnectionExtRosbag2
    from rosbags.rosbag2 import StoragePlugin

    reader = opened.reader
    out_store = _output_typestore(reader)
    writer = mcap_writer_class()(out_path, version=8, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    status = {'complete': True, 'error': None}
    started, cpu_started = time.perf_counter(), time.process_time()
    progress = None
    try:
        with contextlib.redirect_stdout(io.StringIO()) as chatter:  # rosbags convert echoes
            connmap, convmap = create_connections_converters(reader.connections, out_store,
                                                             reader, writer)
        for line in chatter.getvalue().splitlines():
            _LOG.debug('rosbags: %s', line)
        cam = next(c for c in reader.connections if c.topic == topic)
        qos = cam.ext.offered_qos_profiles if isinstance(cam.ext, ConnectionExtRosbag2) else []
        conns = {'sim': writer.add_connection(sim_topic, IMAGE_TYPE, typestore=out_store,
                                              offered_qos_profiles=qos)}
        if policy is not None:
            conns['cmd_vel'] = writer.add_connection(cmd_vel_topic, TWIST_TYPE,
                                                     typestore=out_store)
        pipe = _Pipeline(cfg, reader, topic, goggles, policy, writer, out_store, conns, connmap,
                         convmap, expected, msgtype)
        progress = _make_progress(cfg, expected or None)
        threads = [threading.Thread(target=pipe.read, name='replay-read', daemon=True),
                   threading.Thread(target=pipe.write, name='replay-write', daemon=True)]
        # Optionally hand the GIL back to the engine thread sooner (measured: no gain on 2
        # cores, so off by default).
        switch = sys.getswitchinterval()
        if cfg.switch_interval:
            sys.setswitchinterval(min(switch, cfg.switch_interval))
        for th in threads:
            th.start()
        try:
            pipe.run(progress)
        except KeyboardInterrupt:
            status.update(complete=False, error='interrupted by the user')
        except Exception as e:
            status.update(complete=False, error=f'translation failed: {_short(e)}')
        finally:
            pipe.stop.set()
            threads[0].join()
            if pipe.pool is not None:
                pipe.pool.shutdown(wait=True, cancel_futures=True)
            pipe.stop.clear()  # let the writer drain what was already translated
            pipe.out_q.put(None)
            threads[1].join()
            sys.setswitchinterval(switch)
        for err in (pipe.read_error, pipe.write_error):
            if err and status['complete']:
                status.update(complete=False, error=err)
        if opened.salvaged and status['complete']:
            status.update(complete=False, error=f'{cfg.bag}: {reader.open_error}')
    finally:
        if progress is not None:
            progress.close()
        try:
            writer.close()
        except Exception as e:
            writer_err = f'{out_path}: closing the output failed: {_short(e)}'
            raise ReplayError(writer_err) from e
    wall = time.perf_counter() - started
    pipe.cpu_s = time.process_time() - cpu_started
    metrics = _metrics(cfg, pipe, reader, topic, msgtype, sim_topic,
                       cmd_vel_topic if policy is not None else None, goggles, policy, wall,
                       status, opened.salvaged)
    if cfg.bench:
        metrics['bench'] = bench_engine(goggles, pipe.stats.bench_inputs, cfg.batch_size,
                                        metrics['throughput_fps'],
                                        metrics['cpu_ms_per_frame'])
    if cfg.report:
        try:
            write_report(cfg.report, metrics, pipe.stats)
        except OSError as e:
            _LOG.error('%s: cannot write the report: %s', cfg.report, e)
            metrics['report_error'] = str(e)
    return metrics


# ---------------------------------------------------------------------------------------------
# Metrics, bench and report


def _shift_error(goggles: Any, samples: list, max_shift: int, k: int) -> dict[str, Any]:
    from vr_goggles.goggles import quality as qm
    from vr_goggles.image.preprocess import denormalize, normalize

    chosen = [s[2] for s in samples[:k]]
    if not chosen or max_shift < 2:
        return {'value': None, 'frames': 0, 'max_shift': max_shift,
                'reason': 'no frames' if not chosen else 'max_shift < 2'}
    run = getattr(goggles, 'run', None)  # the network on normalised NCHW, as the node runs it

    def fn(x: np.ndarray) -> np.ndarray:
        if callable(run):
            return np.asarray(run(np.ascontiguousarray(x, np.float32)))
        return normalize(np.asarray(goggles.translate_batch(list(denormalize(x)))))

    value = qm.shift_error(fn, normalize(np.stack(chosen)), max_shift)
    return {'value': float(value), 'frames': len(chosen), 'max_shift': max_shift,
            'units': 'mean |difference| in the network range [-1, 1]'}


def _metrics(cfg: ReplayConfig, pipe: _Pipeline, reader: Any, topic: str, msgtype: str,
             sim_topic: str, cmd_vel_topic: str | None, goggles: Any, policy: Any,
             wall: float, status: dict, salvaged: bool) -> dict[str, Any]:
    from vr_goggles.policy.actions import ACTION_NAMES

    st = pipe.stats
    lat = st.latencies_ms
    din, dout = float(np.sum(st.flicker_in)), float(np.sum(st.flicker_out))
    skipped = Counter(s.kind for s in pipe.skips)
    engine = getattr(goggles, 'engine', None)
    m: dict[str, Any] = {
        'bag': str(cfg.bag),
        'out': str(cfg.out),
        'bag_format': 'ros2' if reader.is2 else 'ros1',
        'salvaged': salvaged,
        'topic': topic,
        'topic_type': msgtype,
        'sim_topic': sim_topic,
        'cmd_vel_topic': cmd_vel_topic,
        'model': cfg.model,
        'engine': {'name': getattr(engine, 'name', str(engine)),
                   'device': getattr(engine, 'device', cfg.device),
                   'precision': getattr(engine, 'precision', cfg.precision)},
        'model_size': list(pipe.size),
        'source_sizes': {f'{h}x{w}': n for (h, w), n in st.source_sizes.most_common()},
        'frames': st.frames,
        'frames_in_topic': int(reader.topics[topic].msgcount or 0),
        'messages_read': pipe.pos.messages,
        'messages_written': pipe.written,
        'batch_size': cfg.batch_size,
        'latency_ms': {'p50': _percentile(lat, 50), 'p99': _percentile(lat, 99),
                       'mean': float(np.mean(lat)) if lat else None,
                       'max': float(np.max(lat)) if lat else None,
                       'definition': 'engine time per frame (batch time / batch size)'},
        'throughput_fps': st.frames / wall if wall > 0 else None,
        'engine_fps': st.frames / st.translate_s if st.translate_s > 0 else None,
        'wall_s': wall,
        'cpu_ms_per_frame': pipe.cpu_s * 1e3 / st.frames if st.frames else None,
        'flicker': {'ratio': (dout / max(din, 1e-12)) if st.flicker_in else None,
                    'output_mean_abs_diff': float(np.mean(st.flicker_out)) if st.flicker_out
                    else None,
                    'input_mean_abs_diff': float(np.mean(st.flicker_in)) if st.flicker_in
                    else None,
                    'pairs': len(st.flicker_in),
                    'definition': 'sum|out[t+1]-out[t]| / sum|in[t+1]-in[t]| at model size '
                                  '(vr_goggles.goggles.quality.flicker); 0 for a static input'},
        'shift_error': None,
        'policy': None,
        'bag_duration_s': float(reader.duration) / 1e9,
        'frames_duration_s': ((st.last_time - st.first_time) / 1e9
                              if st.first_time is not None else None),
        'skipped': {'count': len(pipe.skips), 'reasons': dict(skipped.most_common()),
                    'examples': [vars(s) for s in sorted(pipe.skips, key=lambda s: s.log_time)
                                 [:_MAX_SKIP_EXAMPLES]]},
        'complete': status['complete'],
        'error': status['error'],
        'command': cfg.command,
        'finished_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
    }
    try:
        m['shift_error'] = _shift_error(goggles, st.samples or (
            [pipe.last_sample] if pipe.last_sample else []), cfg.max_shift, cfg.shift_frames)
    except Exception as e:  # never lose the run's metrics over an optional one
        m['shift_error'] = {'value': None, 'reason': _short(e)}
    if policy is not None:
        counts = Counter(st.actions)
        n = len(st.actions)
        switches = sum(1 for a, b in zip(st.actions, st.actions[1:]) if a != b)
        m['policy'] = {
            'name': getattr(policy, 'name', str(cfg.policy)),
            'actions': {ACTION_NAMES[a]: counts.get(a, 0) for a in range(len(ACTION_NAMES))},
            'fractions': {ACTION_NAMES[a]: (counts.get(a, 0) / n if n else 0.0)
                          for a in range(len(ACTION_NAMES))},
            'switch_rate': switches / (n - 1) if n > 1 else 0.0,
        }
    return m


def bench_engine(goggles: Any, inputs: list[np.ndarray], batch_size: int,
                 replay_fps: float | None, replay_cpu_ms: float | None = None, *,
                 repeats: int = 3) -> dict[str, Any]:
    """Engine-only throughput on the replay's own (already decoded) frames, same batch size.

    Timed ``repeats`` times right after the replay; the median is compared with the replay's
    end-to-end throughput. CPU time per frame (all threads of the process) is reported for both
    because wall-clock ratios swing with whatever else the machine is running.
    """
    if not inputs:
        return {'engine_only_fps': None, 'replay_fps': replay_fps, 'ratio': None}
    bs = max(1, int(batch_size))
    batches = [inputs[i:i + bs] for i in range(0, len(inputs), bs)]
    passes, cpu = [], []
    for _ in range(max(1, repeats)):
        t0, c0 = time.perf_counter(), time.process_time()
        for b in batches:
            goggles.translate_batch(b)
        passes.append(len(inputs) / (time.perf_counter() - t0))
        cpu.append((time.process_time() - c0) * 1e3 / len(inputs))
    engine_fps = float(np.median(passes))
    engine_cpu = float(np.median(cpu))
    return {'engine_only_fps': engine_fps, 'engine_only_passes_fps': passes,
            'replay_fps': replay_fps, 'frames': len(inputs),
            'ratio': (replay_fps / engine_fps) if replay_fps and engine_fps else None,
            'engine_cpu_ms_per_frame': engine_cpu, 'replay_cpu_ms_per_frame': replay_cpu_ms,
            'cpu_overhead': (replay_cpu_ms / engine_cpu - 1.0) if replay_cpu_ms and engine_cpu
            else None,
            'load_average': _loadavg(),
            'goal': 'ratio >= 0.8 (I/O and codec overhead <= 20%)'}


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def write_report(path: str | os.PathLike, metrics: dict[str, Any], stats: _Stats) -> Path:
    """Standalone HTML: summary, latency and flicker plots, input | translated strip, command."""
    from vr_goggles.replay import html as rp

    sections: list[tuple[str, str]] = []
    status = ('complete' if metrics['complete']
              else f'<span class="warn">INCOMPLETE: {rp.escape(metrics["error"])}</span>')
    summary = {
        'bag': metrics['bag'], 'output': metrics.get('out', ''), 'topic': metrics['topic'],
        'translated topic': metrics['sim_topic'], 'model': metrics['model'],
        'engine': '{name} / {device} / {precision}'.format(**metrics['engine']),
        'frames': f"{metrics['frames']} of {metrics['frames_in_topic']}",
        'skipped': metrics['skipped']['count'],
        'latency p50 / p99 (ms)': _pair(metrics['latency_ms']['p50'],
                                        metrics['latency_ms']['p99']),
        'throughput (frames/s)': metrics['throughput_fps'],
        'engine-only (frames/s)': metrics['engine_fps'],
        'flicker ratio': metrics['flicker']['ratio'],
        'shift error': (metrics['shift_error'] or {}).get('value'),
        'bag duration (s)': metrics['bag_duration_s'],
    }
    if metrics.get('policy'):
        summary['policy actions'] = metrics['policy']['actions']
        summary['policy switch rate'] = metrics['policy']['switch_rate']
    if metrics.get('bench'):
        summary['bench replay/engine ratio'] = metrics['bench']['ratio']
    sections.append(('Summary', f'<p>Run: {status}</p>' + rp.table(summary)))
    if metrics['skipped']['count']:
        sections.append(('Skipped messages', rp.table(metrics['skipped']['reasons'].items(),
                                                      header=('reason', 'count'))))
    if stats.latencies_ms:
        fig, ax = rp.new_figure()
        ax.plot(stats.latencies_ms, lw=0.8)
        ax.set_xlabel('frame')
        ax.set_ylabel('translate latency (ms)')
        for q, style in ((50, '--'), (99, ':')):
            ax.axhline(np.percentile(stats.latencies_ms, q), ls=style, c='k', lw=0.8,
                       label=f'p{q}')
        ax.legend()
        sections.append(('Latency', rp.img_tag(rp.figure_to_data_uri(fig), 'latency plot')))
    if stats.flicker_t:
        fig, ax = rp.new_figure()
        ax.plot(stats.flicker_t, stats.flicker_in, lw=0.8, label='input |x[t+1]-x[t]|')
        ax.plot(stats.flicker_t, stats.flicker_out, lw=0.8, label='output |y[t+1]-y[t]|')
        ax.set_xlabel('time in bag (s)')
        ax.set_ylabel('mean abs difference (0-255)')
        ax.legend()
        sections.append(('Temporal flicker', rp.img_tag(rp.figure_to_data_uri(fig),
                                                        'flicker plot')))
    samples = sorted(stats.samples, key=lambda s: s[0])
    if samples:
        step = max(1, len(samples) // 8)
        t0 = stats.first_time or 0
        rows = []
        for idx, t, image, out, _ in samples[::step][:8]:
            uri = rp.image_strip_data_uri([image, out], height=max(128, image.shape[0]))
            rows.append(rp.img_tag(uri, f'frame {idx}',
                                   f'frame {idx}, t = {(t - t0) / 1e9:.2f} s: input | '
                                   'translated'))
        sections.append(('Input | translated', '\n'.join(rows)))
    sections.append(('Command', rp.pre(metrics['command'] or '(library call)')))
    sections.append(('All metrics', rp.pre(json.dumps(metrics, indent=2,
                                                      default=_json_default))))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rp.html_page('vr-goggles replay', sections, subtitle=metrics['bag']),
                    encoding='utf-8')
    return path


def _pair(a: float | None, b: float | None) -> str:
    return ' / '.join('-' if v is None else f'{v:.3g}' for v in (a, b))


def format_summary(metrics: dict[str, Any]) -> str:
    """A few human-readable lines for the end of a CLI run."""
    lat = metrics['latency_ms']
    fl = metrics['flicker']['ratio']
    lines = [
        f"{metrics['frames']} frames of {metrics['topic']} -> {metrics['sim_topic']} in "
        f"{metrics.get('out', '')} ({'complete' if metrics['complete'] else 'INCOMPLETE'}"
        f", {metrics['skipped']['count']} skipped)",
        f"engine {metrics['engine']['name']}/{metrics['engine']['device']}: latency p50/p99 "
        f"{_pair(lat['p50'], lat['p99'])} ms, {_num(metrics['throughput_fps'])} frames/s "
        f"end to end, flicker {_num(fl)}, shift error "
        f"{_num((metrics['shift_error'] or {}).get('value'))}",
    ]
    if metrics.get('policy'):
        lines.append(f"policy {metrics['policy']['actions']} switch rate "
                     f"{metrics['policy']['switch_rate']:.3f} on {metrics['cmd_vel_topic']}")
    bench = metrics.get('bench')
    if bench:
        lines.append(f"bench: replay {_num(bench['replay_fps'])} frames/s, engine only "
                     f"{_num(bench['engine_only_fps'])} frames/s, ratio {_num(bench['ratio'])} "
                     '(goal >= 0.8)')
        lines.append(f"bench: CPU ms/frame replay {_num(bench.get('replay_cpu_ms_per_frame'))} "
                     f"vs engine only {_num(bench.get('engine_cpu_ms_per_frame'))}; load "
                     f"average {bench.get('load_average')}")
    return '\n'.join(lines)


def _num(v: float | None) -> str:
    return '-' if v is None else f'{v:.3g}'
