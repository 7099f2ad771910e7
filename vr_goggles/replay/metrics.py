"""The numbers a replay reports: what is accumulated per frame and the metrics dict built from it.

:class:`RunStats` collects per-frame latency, temporal flicker (mean |difference| of
consecutive frames before and after translation, as :func:`vr_goggles.goggles.quality.flicker`
defines it), the sampled frames for the shift error and the report, the policy's actions and
the per-frame domain scores (summarised by :mod:`vr_goggles.replay.domain`).
:func:`build_metrics` turns a finished run into the JSON-able dict; :func:`bench_engine` times
the engine alone on the same frames (``--bench``); :func:`format_summary` is the CLI's summary.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from vr_goggles.goggles import quality as qm
from vr_goggles.image.preprocess import denormalize, normalize
from vr_goggles.policy.actions import ACTION_NAMES
from vr_goggles.replay.config import ReplayConfig, short_error
from vr_goggles.replay.domain import ScoreSeries, summarize, summary_line

if TYPE_CHECKING:  # annotations only: the pipeline imports this module, the reader rosbags
    from vr_goggles.replay.pipeline import Pipeline
    from vr_goggles.replay.reader import Frame

_MAX_SKIP_EXAMPLES = 20


@dataclass
class RunStats:
    """Accumulated while frames flow; turned into the metrics dict at the end.

    ``sample_at`` are the frame indices kept for the shift error and the report's strip;
    ``bench_frames`` how many model-size inputs to keep for :func:`bench_engine` (0: none).
    """

    sample_at: set[int] = field(default_factory=set)
    bench_frames: int = 0
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
    last_sample: tuple | None = None
    bench_inputs: list[np.ndarray] = field(default_factory=list)
    first_time: int | None = None
    last_time: int | None = None
    source_sizes: Counter = field(default_factory=Counter)
    domain: ScoreSeries = field(default_factory=ScoreSeries)

    def add(self, frame: Frame, out: np.ndarray, latency_s: float) -> None:
        """Account one translated frame (flicker only against the directly preceding one)."""
        self.frames += 1
        self.latencies_ms.append(latency_s * 1e3)
        self.source_sizes[frame.source_size] += 1
        self.first_time = frame.log_time if self.first_time is None else self.first_time
        self.last_time = frame.log_time
        if self.prev is not None and self.prev[0] == frame.index - 1:
            _, pin, pout = self.prev
            self.flicker_in.append(float(np.abs(frame.image.astype(np.int16) - pin).mean()))
            self.flicker_out.append(float(np.abs(out.astype(np.int16) - pout).mean()))
            self.flicker_t.append((frame.log_time - self.first_time) / 1e9)
        self.prev = (frame.index, frame.image.astype(np.int16), out.astype(np.int16))
        sample = (frame.index, frame.log_time, frame.image, np.array(out), frame.source_size)
        if frame.index in self.sample_at:
            self.samples.append(sample)
        self.last_sample = sample
        if len(self.bench_inputs) < self.bench_frames:
            self.bench_inputs.append(frame.image)


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def evenly_spaced(n_expected: int, k: int) -> set[int]:
    """Up to ``k`` indices spread evenly over ``n_expected`` frames (the ones sampled)."""
    if n_expected <= 0 or k <= 0:
        return set()
    return {int(round(x)) for x in np.linspace(0, n_expected - 1, min(k, n_expected))}


def _shift_error(goggles: Any, samples: list, max_shift: int, k: int) -> dict[str, Any]:
    """Shift error of the translator on up to ``k`` sampled frames (``None`` with a reason)."""
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


def build_metrics(cfg: ReplayConfig, pipe: Pipeline, reader: Any, topic: str, msgtype: str,
                  sim_topic: str, cmd_vel_topic: str | None, goggles: Any, policy: Any,
                  wall: float, status: dict, salvaged: bool,
                  domain_score: Any = None) -> dict[str, Any]:
    """The metrics dict of a finished run (``status``: ``complete`` and ``error``)."""
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
        # WxH, as camera resolutions are written (1280x720), and as docs/replay.md says.
        'source_sizes': {f'{w}x{h}': n for (h, w), n in st.source_sizes.most_common()},
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
        'domain_score': None if domain_score is None else summarize(
            st.domain, domain_score.threshold, name=str(cfg.domain_score or ''),
            weights=str(getattr(domain_score, 'name', '')),
            engine=str(getattr(domain_score, 'engine', ''))),
        # rosbags' duration runs to one nanosecond after the last message: a one-message bag
        # would last 1e-9 s.
        'bag_duration_s': max(0, int(reader.duration) - 1) / 1e9,
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
            [st.last_sample] if st.last_sample else []), cfg.max_shift, cfg.shift_frames)
    except Exception as e:  # never lose the run's metrics over an optional one
        m['shift_error'] = {'value': None, 'reason': short_error(e)}
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


def pair_text(a: float | None, b: float | None) -> str:
    """``"a / b"`` with 3 significant digits, ``-`` for a missing value."""
    return ' / '.join('-' if v is None else f'{v:.3g}' for v in (a, b))


NO_FLICKER = 'n/a (needs two consecutive frames)'


def skipped_text(skipped: dict[str, Any]) -> str:
    """``"2 skipped: 1 bad image, 1 undeserializable message (first: frame 3: ...)"``."""
    if not skipped['count']:
        return '0 skipped'
    kinds = ', '.join(f'{n} {kind}' for kind, n in skipped['reasons'].items())
    first = skipped['examples'][0] if skipped['examples'] else None
    example = (f" (first: message {first['index']} of {first['topic']}: {first['reason']})"
               if first else '')
    return f"{skipped['count']} skipped: {kinds}{example}"


def format_summary(metrics: dict[str, Any]) -> str:
    """A few human-readable lines for the end of a CLI run."""
    lat = metrics['latency_ms']
    fl = metrics['flicker']['ratio']
    lines = [
        f"{metrics['frames']} of {metrics['frames_in_topic']} frames of {metrics['topic']} -> "
        f"{metrics['sim_topic']} in {metrics.get('out', '')} "
        f"({'complete' if metrics['complete'] else 'INCOMPLETE'}, "
        f"{skipped_text(metrics['skipped'])})",
        f"engine {metrics['engine']['name']}/{metrics['engine']['device']}: latency p50/p99 "
        f"{pair_text(lat['p50'], lat['p99'])} ms, {_num(metrics['throughput_fps'])} frames/s "
        f"end to end, flicker {NO_FLICKER if fl is None else _num(fl)}, shift error "
        f"{_num((metrics['shift_error'] or {}).get('value'))}",
    ]
    if metrics.get('policy'):
        lines.append(f"policy {metrics['policy']['actions']} switch rate "
                     f"{metrics['policy']['switch_rate']:.3f} on {metrics['cmd_vel_topic']}")
    if metrics.get('domain_score'):
        lines.append(summary_line(metrics['domain_score']))
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


def json_default(o: Any) -> Any:
    """``json.dumps`` fallback: numpy scalars and arrays as Python values, anything else as str."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
