"""``vr-goggles replay``: run the goggles (and optionally the policy) over a recorded bag.

Offline twin of the ROS node: the same :class:`vr_goggles.goggles.Goggles` core, decoding
(:mod:`vr_goggles.image.codec`) and preprocessing, fed from a ROS 1 or ROS 2 bag through
``rosbags`` (no ROS install). The output is a ROS 2 MCAP bag with every original message plus
``<topic>_sim`` (translated ``rgb8`` images, original header stamps and log times) and, with a
policy, its ``cmd_vel`` per frame, so ``ros2 bag play`` of the output drives RViz/Foxglove as
the robot would have. Metrics (latency, throughput, flicker, shift error, action statistics)
go to JSON and an optional self-contained HTML report. Every translated frame is also scored
with the goggles' :class:`vr_goggles.goggles.domain_score.DomainScore` (on the decoded camera
frame, batched like the translation), and ``policy_node``'s stop rule is replayed over the
scores (:mod:`vr_goggles.replay.domain`): where in the recording the goggles stop working.

Pipeline (so codec and I/O overlap inference; the GIL is released in numpy/OpenCV/torch):
a reader thread reads and converts messages and decodes + resizes frames to the model size
(JPEG/PNG in a small thread pool, order kept); the calling thread batches frames through the
engine (and policy), with torch held to one core fewer than the machine so the I/O threads do
not oversubscribe it; a writer thread serialises and writes (see
:func:`vr_goggles.replay.writer.mcap_writer_class`).

A bag that is corrupt or truncated part-way stops the run with an error naming the bag and
position, but everything done so far is written and ``complete`` is false in the metrics; a
single undecodable message is skipped and counted with its reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
import contextlib
from dataclasses import dataclass
import json
import logging
import os
from pathlib import Path
import queue
import shutil
import sys
import threading
import time
from typing import Any

import numpy as np
from tqdm import tqdm

from vr_goggles.goggles.domain_score import DomainScore
from vr_goggles.goggles.facade import Goggles
from vr_goggles.policy.actions import action_to_velocity
from vr_goggles.policy.policy import Policy
from vr_goggles.replay.config import ReplayConfig, ReplayError, short_error
from vr_goggles.replay.metrics import (
    RunStats,
    bench_engine,
    build_metrics,
    evenly_spaced,
    json_default,
)
from vr_goggles.replay.reader import (
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    Frame,
    OpenedBag,
    Skip,
    camera_info_topic,
    check_paths,
    decode_frame,
    open_bag,
    pick_topic,
    remove_output,
)
from vr_goggles.replay.report import write_report
from vr_goggles.replay.writer import (
    OutputBag,
    sim_camera_info,
    sim_info_topic,
    sim_topic_name,
)

_LOG = logging.getLogger(__package__)  # one logger for the whole replay

_QUEUE_DEPTH = 32  # frames in flight; raw pass-through messages may be ~1 MB each


@dataclass
class _Position:
    """Where the reader is, for error messages about a corrupt bag."""

    messages: int = 0  # messages read so far (all topics)
    last_time: int | None = None


class Pipeline:
    """Reader thread -> engine (caller's thread) -> writer thread."""

    def __init__(self, cfg: ReplayConfig, reader: Any, topic: str, goggles: Any,
                 policy: Any, out: OutputBag, expected: int, msgtype: str = IMAGE_TYPE,
                 domain_score: Any = None):
        self.cfg, self.reader, self.topic = cfg, reader, topic
        self.goggles, self.policy, self.out = goggles, policy, out
        self.size = tuple(goggles.preprocessor.size)
        self.domain_score = domain_score
        # The goggles' model-size frame is exactly what the score's own preprocessing makes of
        # the decoded frame when both preprocess alike; otherwise the reader resizes the
        # decoded frame a second time for the score.
        self.score_pre = (domain_score.preprocessor if domain_score is not None
                          and not _same_preprocessing(domain_score.preprocessor,
                                                      goggles.preprocessor) else None)
        self.frames_q: queue.Queue = queue.Queue(_QUEUE_DEPTH)
        self.out_q: queue.Queue = queue.Queue(_QUEUE_DEPTH * 2)
        self.stop = threading.Event()
        self.pos = _Position()
        self.skips: list[Skip] = []
        self.info_topic: str | None = None  # the camera's CameraInfo, see OutputBag
        self.camera_info: Any = None
        self.read_error: str | None = None
        self.write_error: str | None = None
        self.written = 0
        self.cpu_s = 0.0
        self.stats = RunStats(
            sample_at=evenly_spaced(expected, max(cfg.strip_frames, cfg.shift_frames)),
            bench_frames=cfg.bench_frames if cfg.bench else 0)
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

    def _make_frame(self, conn: Any, index: int, t: int, raw: bytes,
                    info: Any = None) -> Frame | None:
        """Decode + resize one camera message; ``None`` (and a counted skip) if impossible."""
        item = decode_frame(self.reader, conn, index, t, raw, self.goggles.preprocessor,
                            self.score_pre)
        if isinstance(item, Skip):
            self.skips.append(item)
            return None
        item.camera_info = info
        return item

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
                wconn = self.out.connmap.get((conn.id, conn.owner))
                if wconn is not None:
                    try:
                        data = self.out.convmap[conn.msgtype](raw)
                    except Exception as e:
                        self.skips.append(Skip(self.pos.messages - 1, t, conn.topic,
                                               'not convertible to ROS 2', short_error(e)))
                    else:
                        if not self._put(self.out_q, ('raw', wconn, t, data)):
                            break
                if conn.topic == self.info_topic:
                    with contextlib.suppress(Exception):  # a bad one: keep the previous
                        self.camera_info = self.reader.deserialize(raw, conn.msgtype)
                if conn.topic != self.topic:
                    continue
                index, n_img = n_img, n_img + 1
                if self.pool is not None:  # decode in parallel, keep the order via futures
                    item = self.pool.submit(self._make_frame, conn, index, t, raw,
                                            self.camera_info)
                else:
                    item = self._make_frame(conn, index, t, raw, self.camera_info)
                    if item is None:
                        continue
                if not self._put(self.frames_q, item):
                    break
        except Exception as e:
            where = (f'after message {self.pos.messages}'
                     + (f' (log time {self.pos.last_time} ns)' if self.pos.last_time else ''))
            self.read_error = (f'{self.cfg.bag}: bag is corrupt or truncated {where}: '
                               f'{short_error(e)}')
        finally:
            self.reader_done.set()
            self._put(self.frames_q, None)

    # -- writer thread ----------------------------------------------------------------------
    def write(self) -> None:
        """Writer thread: serialise and write; on failure keep draining so nothing blocks."""
        while True:
            item = self.out_q.get()
            if item is None:
                return
            if self.write_error:
                continue
            try:
                if item[0] == 'raw':
                    _, wconn, t, data = item
                    self.out.write_raw(wconn, t, data)
                    self.written += 1
                    continue
                _, frame, out, vel = item
                self.out.write_image(frame.log_time, frame.stamp, frame.frame_id, out)
                self.written += 1
                info = frame.camera_info if frame.camera_info is not None else self.camera_info
                if self.info_topic is not None and info is not None:
                    self.out.write_camera_info(frame.log_time, frame.stamp, frame.frame_id,
                                               sim_camera_info(info, frame.source_size,
                                                               self.size))
                    self.written += 1
                if vel is not None:
                    self.out.write_cmd_vel(frame.log_time, vel)
                    self.written += 1
            except Exception as e:
                self.write_error = f'{self.cfg.out}: writing failed: {short_error(e)}'
                self.stop.set()

    # -- engine (calling thread) ------------------------------------------------------------
    def _batches(self) -> Iterator[list[Frame]]:
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
        st = self.stats
        for batch in self._batches():
            images = [f.image for f in batch]
            scores = self._score(batch) if self.domain_score is not None else None
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
                st.add(frame, out, dt / len(batch))
                if scores is not None:
                    st.domain.add(frame.index, frame.stamp, frame.log_time, scores[k])
            if progress is not None:
                progress.update(len(batch))

    def _score(self, batch: list[Frame]) -> np.ndarray:
        """Domain scores of a batch of decoded camera frames, in one call (timed)."""
        t0 = time.perf_counter()
        scores = self.domain_score.scores(
            [f.score_image if f.score_image is not None else f.image for f in batch])
        self.stats.domain.seconds += time.perf_counter() - t0
        return scores


def _same_preprocessing(a: Any, b: Any) -> bool:
    """Whether two preprocessors make the same image of a camera frame (size, crop)."""
    return (tuple(int(v) for v in a.size) == tuple(int(v) for v in b.size)
            and bool(a.keep_aspect) == bool(b.keep_aspect))


def _resolve(item: Any) -> Frame | None:
    """A frame, or the result of a decode future (``None`` when that message was skipped)."""
    return item.result() if isinstance(item, Future) else item


def _make_progress(cfg: ReplayConfig, total: int | None) -> Any:
    """A tqdm bar over the camera frames, or None with ``progress`` off."""
    if not cfg.progress:
        return None
    return tqdm(total=total, unit='frame', desc='replay', dynamic_ncols=True)


def load_goggles(cfg: ReplayConfig) -> Any:
    """The same core the ROS node uses."""
    return Goggles.from_model(cfg.model, engine=cfg.engine, device=cfg.device,
                              precision=cfg.precision, compile=cfg.compile,
                              engine_file_path=cfg.engine_file_path,
                              force_engine_update=cfg.force_engine_update)


def load_domain_score(cfg: ReplayConfig) -> DomainScore | None:
    """``cfg.domain_score`` loaded (``None`` when off); a bad file raises naming its path."""
    return DomainScore.load(cfg.domain_score) if cfg.domain_score else None


def replay(cfg: ReplayConfig, *, goggles: Any = None, policy: Any = None,
           domain_score: Any = None) -> dict[str, Any]:
    """Run a replay; returns the metrics dict (also written to ``cfg.metrics``/``cfg.report``).

    ``goggles``, ``policy``, ``domain_score``: already loaded models instead of the config's.
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
        sim_topic = sim_topic_name(topic, cfg.sim_suffix)
        if sim_topic in reader.topics:
            raise ValueError(f'{bag}: already has a topic {sim_topic} (a replayed bag?); '
                             'choose the camera topic of the original recording')
        restore_threads = _limit_torch_threads(cfg.torch_threads)  # before engines are built
        try:
            metrics = _replay_open_bag(cfg, bag, out, opened, topic, msgtype, sim_topic,
                                       goggles, policy, domain_score)
        finally:
            restore_threads()
    metrics['out'] = str(out)
    if cfg.metrics:
        try:
            Path(cfg.metrics).parent.mkdir(parents=True, exist_ok=True)
            Path(cfg.metrics).write_text(
                json.dumps(metrics, indent=2, default=json_default) + '\n', encoding='utf-8')
        except OSError as e:
            raise ReplayError(f'{cfg.metrics}: cannot write the metrics ({e}); the output bag '
                              f'{out} is complete') from None
    return metrics


def _replay_open_bag(cfg: ReplayConfig, bag: Path, out: Path, opened: OpenedBag, topic: str,
                     msgtype: str, sim_topic: str, goggles: Any, policy: Any,
                     domain_score: Any) -> dict[str, Any]:
    """Load the models, run the pipeline into a temporary bag, then swap it into ``out``."""
    reader = opened.reader
    goggles = goggles if goggles is not None else load_goggles(cfg)
    if policy is None and cfg.policy:
        policy = Policy.load(cfg.policy)
    if domain_score is None:
        domain_score = load_domain_score(cfg)
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
        remove_output(tmp_dir)
        tmp_dir.mkdir(parents=True)
    except OSError as e:
        raise ReplayError(f'{out}: cannot create the output: {e}') from None
    try:
        # Warm the engine outside the timed loop (lazy init, compile, first allocation).
        size = tuple(goggles.preprocessor.size)
        goggles.translate_batch([np.zeros((*size, 3), np.uint8)] * max(1, cfg.batch_size))
        if domain_score is not None:  # warm it too (ONNX Runtime's first run allocates)
            domain_score.scores([np.zeros((*size, 3), np.uint8)])
        metrics = _run_to(cfg, opened, topic, msgtype, sim_topic, cmd_vel_topic, goggles,
                          policy, tmp_dir / out.name, expected, domain_score)
        if out.exists() or out.is_symlink():
            remove_output(out)
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
    try:  # torch is heavy and only matters when the engine runs on it
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


def _run_to(cfg: ReplayConfig, opened: OpenedBag, topic: str, msgtype: str, sim_topic: str,
            cmd_vel_topic: str, goggles: Any, policy: Any, out_path: Path,
            expected: int, domain_score: Any = None) -> dict[str, Any]:
    """Replay into a new bag at ``out_path``; returns the metrics (with bench and report)."""
    reader = opened.reader
    out = OutputBag(reader, out_path)
    out.open()
    status = {'complete': True, 'error': None}
    started, cpu_started = time.perf_counter(), time.process_time()
    progress = None
    try:
        info_topic = camera_info_topic(reader, topic)
        out.add_topics(topic, sim_topic, cmd_vel_topic if policy is not None else None,
                       sim_info_topic(info_topic) if info_topic else None)
        pipe = Pipeline(cfg, reader, topic, goggles, policy, out, expected, msgtype,
                        domain_score)
        pipe.info_topic = info_topic
        progress = _make_progress(cfg, expected or None)
        _run_threads(cfg, pipe, progress, status)
        if opened.salvaged and status['complete']:
            status.update(complete=False, error=f'{cfg.bag}: {reader.open_error}')
        nothing = _nothing_translated(pipe, topic)
        if nothing and status['complete']:
            status.update(complete=False, error=nothing)
    finally:
        if progress is not None:
            progress.close()
        out.close()
    wall = time.perf_counter() - started
    pipe.cpu_s = time.process_time() - cpu_started
    metrics = build_metrics(cfg, pipe, reader, topic, msgtype, sim_topic,
                            cmd_vel_topic if policy is not None else None, goggles, policy,
                            wall, status, opened.salvaged, domain_score)
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


def _nothing_translated(pipe: Pipeline, topic: str) -> str | None:
    """Why a run that read camera frames but translated none of them is not a success."""
    cam = [sk for sk in pipe.skips if sk.topic == topic]
    if pipe.stats.frames or not cam:
        return None
    kinds = Counter(sk.kind for sk in cam)
    return (f'none of the {len(cam)} frames of {topic} could be translated: '
            + '; '.join(f'{n} {kind}' for kind, n in kinds.most_common())
            + f' (first: {cam[0].reason})')


def _run_threads(cfg: ReplayConfig, pipe: Pipeline, progress: Any, status: dict) -> None:
    """Start the reader and writer threads, translate until done, then drain and join.

    The first error (translation, reading, writing, in that order) goes to ``status``.
    """
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
        status.update(complete=False, error=f'translation failed: {short_error(e)}')
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
