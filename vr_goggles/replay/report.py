"""The self-contained HTML report of a replay (``--report``).

Summary table, skipped messages, latency, flicker and domain-score plots and an input |
translated strip of the sampled frames, built with the helpers of :mod:`vr_goggles.replay.html`
(matplotlib is imported there, only when a plot is drawn).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from vr_goggles.replay import html as rp
from vr_goggles.replay.domain import summary_rows
from vr_goggles.replay.metrics import NO_FLICKER, RunStats, json_default, pair_text, skipped_text


def write_report(path: str | os.PathLike, metrics: dict[str, Any], stats: RunStats) -> Path:
    """Standalone HTML: summary, latency, flicker and domain-score plots, frames, command."""
    sections: list[tuple[str, str]] = []
    status = ('complete' if metrics['complete']
              else f'<span class="warn">INCOMPLETE: {rp.escape(metrics["error"])}</span>')
    summary = {
        'bag': metrics['bag'], 'output': metrics.get('out', ''), 'topic': metrics['topic'],
        'translated topic': metrics['sim_topic'], 'model': metrics['model'],
        'engine': '{name} / {device} / {precision}'.format(**metrics['engine']),
        'frames': f"{metrics['frames']} of {metrics['frames_in_topic']}",
        'skipped': skipped_text(metrics['skipped']),
        'latency p50 / p99 (ms)': pair_text(metrics['latency_ms']['p50'],
                                            metrics['latency_ms']['p99']),
        'throughput (frames/s)': metrics['throughput_fps'],
        'engine-only (frames/s)': metrics['engine_fps'],
        'flicker ratio': (NO_FLICKER if metrics['flicker']['ratio'] is None
                          else metrics['flicker']['ratio']),
        'shift error': (metrics['shift_error'] or {}).get('value'),
        'bag duration (s)': metrics['bag_duration_s'],
    }
    if metrics.get('policy'):
        summary['policy actions'] = metrics['policy']['actions']
        summary['policy switch rate'] = metrics['policy']['switch_rate']
    if metrics.get('bench'):
        summary['bench replay/engine ratio'] = metrics['bench']['ratio']
    if metrics.get('domain_score'):
        summary.update(summary_rows(metrics['domain_score']))
    sections.append(('Summary', f'<p>Run: {status}</p>' + rp.table(summary)))
    if metrics['skipped']['count']:
        sections.append(('Skipped messages', rp.table(metrics['skipped']['reasons'].items(),
                                                      header=('reason', 'count'))))
    # A plot of one point says nothing the summary's p50 does not (a one-frame bag).
    if len(stats.latencies_ms) >= 2:
        fig, ax = rp.new_figure()
        ax.plot(stats.latencies_ms, lw=0.8)
        ax.set_xlabel('frame')
        ax.set_ylabel('translate latency (ms)')
        for q, style in ((50, '--'), (99, ':')):
            ax.axhline(np.percentile(stats.latencies_ms, q), ls=style, c='k', lw=0.8,
                       label=f'p{q}')
        ax.legend()
        sections.append(('Latency', rp.img_tag(rp.figure_to_data_uri(fig), 'latency plot')))
    if len(stats.flicker_t) >= 2:
        fig, ax = rp.new_figure()
        ax.plot(stats.flicker_t, stats.flicker_in, lw=0.8, label='input |x[t+1]-x[t]|')
        ax.plot(stats.flicker_t, stats.flicker_out, lw=0.8, label='output |y[t+1]-y[t]|')
        ax.set_xlabel('time in bag (s)')
        ax.set_ylabel('mean abs difference (0-255)')
        ax.legend()
        sections.append(('Temporal flicker', rp.img_tag(rp.figure_to_data_uri(fig),
                                                        'flicker plot')))
    if metrics.get('domain_score') and metrics['domain_score']['frames'] >= 2:
        sections.append(('Domain score', _domain_plot(metrics['domain_score'])))
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
    sections.append(('All metrics', rp.pre(json.dumps(_without_series(metrics), indent=2,
                                                      default=json_default))))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rp.html_page('vr-goggles replay', sections, subtitle=metrics['bag']),
                    encoding='utf-8')
    return path


def _domain_plot(dm: dict[str, Any]) -> str:
    """Score over time, the threshold line, the guard's stopped spans shaded; with a caption."""
    series = dm['per_frame']
    t, score = np.asarray(series['t']), np.asarray(series['score'], dtype=float)
    fig, ax = rp.new_figure()
    ax.plot(t, score, lw=0.8, marker='.', ms=3, label='domain score')
    low = ~(score >= dm['threshold'])
    if low.any():
        ax.plot(t[low], score[low], ls='none', marker='.', ms=4, c='tab:red',
                label='below threshold')
    ax.axhline(dm['threshold'], ls='--', c='k', lw=0.8,
               label=f"threshold {dm['threshold']:.2f}")
    guard = dm['guard']
    for i, stop in enumerate(guard['stops']):
        end = stop['end']['t'] if stop['end'] is not None else float(t[-1])
        ax.axvspan(stop['start']['t'], end, color='tab:red', alpha=0.15, lw=0,
                   label='guard would stop the robot' if i == 0 else None)
    ax.set_xlabel('time since the first frame (s)')
    ax.set_ylabel('domain score (higher = in domain)')
    ax.legend(fontsize='small')
    caption = (f"policy_node's stop rule: stop after {guard['stop_after']} consecutive frames "
               f"below the threshold, resume after {guard['resume_after']} at or above it; "
               f"{guard['stop_events']} stop(s), {guard['stopped_s']:.2f} s stopped")
    return rp.img_tag(rp.figure_to_data_uri(fig), 'domain score plot', caption)


def _without_series(metrics: dict[str, Any]) -> dict[str, Any]:
    """The metrics for the report's dump, the per-frame score series left to ``--metrics``."""
    dm = metrics.get('domain_score')
    if not dm:
        return metrics
    note = f"{dm['frames']} frames: index, stamp, t, score, stopped in the --metrics JSON"
    return {**metrics, 'domain_score': {**dm, 'per_frame': note}}
