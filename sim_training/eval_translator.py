"""Evaluate a real->sim translator on held-out real frames.

- shift error: mean ``|T_ij(G(x)) - G(T_ij(x))|`` over the overlap region and all shifts
  ``(i, j)`` in ``[0, 2^K)^2`` except ``(0, 0)`` (:func:`vr_goggles.goggles.quality.shift_error`),
  in
  the network's [-1, 1] units (x 127.5 = uint8 grey levels);
- temporal flicker on consecutive real frames: ``sum|G(x_t+1) - G(x_t)| / sum|x_t+1 - x_t|``;
- semantic preservation: mIoU of ``segmenter(G(x_real))`` against the real domain's true labels
  (``eval_labels/``, never used in training) beside the mIoU of ``segmenter(x_real)``, and
  for the chair, the policy's target, how often the segmenter finds one in frames that have
  none (``false_frames``: the translator painted it) and misses a visible one
  (``missed_frames``) (:func:`vr_goggles.goggles.quality.object_presence`);
- contrast ratio: mean per-frame standard deviation of ``G(x)`` over that of ``x``. A collapsed
  generator (near-constant output) scores ~0 here *and* scores perfectly on shift error and
  flicker, so those two are only meaningful next to this one.

``python -m sim_training.eval_translator --model goggles_vr_goggles --real data/real_eval
--sequences /work/shared/real_indoor/desk_sequence --json out.json``; ``--model raw`` measures
the untranslated frames (identity).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
import json
from pathlib import Path
import sys

import numpy as np
import torch

from sim_training.data import FrameSet, load_sequences, load_source
from vr_goggles.goggles.quality import (
    confusion_matrix,
    flicker,
    iou_per_class,
    mean_iou,
    object_presence,
    shift_error,
)
from vr_goggles.image.preprocess import normalize
from vr_goggles.image.semantics import CLASS_NAMES, NUM_CLASSES


def _batched(fn: Callable, x: torch.Tensor, batch: int = 32) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(x[k:k + batch]) for k in range(0, len(x), batch)])


@torch.no_grad()
def evaluate(fn: Callable[[torch.Tensor], torch.Tensor], frames: FrameSet, *,
             max_shift: int, clips: dict[str, np.ndarray] | None = None,
             segmenter: torch.nn.Module | None = None, shift_frames: int = 200) -> dict:
    """All translator metrics for ``fn`` (``(N, 3, H, W)`` -> same, [-1, 1])."""
    x = torch.from_numpy(normalize(frames.images))
    out: dict = {'frames': len(frames), 'max_shift': max_shift}
    y_all = _batched(fn, x)
    out['contrast_ratio'] = round(float(y_all.flatten(1).std(1).mean()
                                        / x.flatten(1).std(1).mean()), 4)
    xs = x[:shift_frames]
    out['shift_error'] = round(shift_error(lambda t: _batched(fn, t), xs, max_shift), 5)
    out['shift_frames'] = len(xs)
    if clips:
        dy = dx = 0.0
        per_clip = {}
        for name, clip in clips.items():
            c = torch.from_numpy(normalize(clip))
            y = _batched(fn, c)
            per_clip[name] = round(flicker(y, c), 4)
            dy += float((y[1:] - y[:-1]).abs().sum())
            dx += float((c[1:] - c[:-1]).abs().sum())
        out['flicker'] = round(dy / max(dx, 1e-12), 4)
        out['flicker_per_clip'] = per_clip
    if segmenter is not None and frames.labels is not None:
        segmenter.eval()
        for key, inp in (('translated', None), ('raw', x)):
            src = y_all if inp is None else inp
            pred = _batched(segmenter, src).argmax(1).numpy()
            conf = confusion_matrix(pred, frames.labels, NUM_CLASSES)
            out[f'miou_{key}'] = round(100 * mean_iou(conf), 2)
            out[f'iou_{key}'] = {n: (None if np.isnan(v) else round(100 * float(v), 2))
                                 for n, v in zip(CLASS_NAMES, iou_per_class(conf))}
            out[f'chair_{key}'] = object_presence(pred, frames.labels, CLASS_NAMES.index('chair'))
    return out


def load_translator(model: str) -> tuple[Callable, int, dict]:
    """``raw`` (identity) or a weights name/path -> (fn, max_shift, card dict)."""
    if model == 'raw':
        return (lambda t: t), 4, {}
    from dataclasses import asdict

    from vr_goggles.weights import build_module

    g, card = build_module(model)
    return g, 2 ** int(card.kwargs.get('n_down', 2)), asdict(card)


def update_card(model: str, metrics: dict) -> None:
    """Merge ``metrics`` into the model card (the tensors and their hash are untouched)."""
    from vr_goggles.weights import atomic_write_bytes, paths_for, resolve

    _, card_path = paths_for(resolve(model))
    d = json.loads(card_path.read_text())
    d.setdefault('metrics', {}).update(metrics)
    atomic_write_bytes(card_path, (json.dumps(d, indent=2) + '\n').encode())


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (every flag with its help)."""
    p = argparse.ArgumentParser(prog='python -m sim_training.eval_translator',
                                description=__doc__.split('\n\n')[0])
    p.add_argument('--model', required=True, help="weights name/path, or 'raw' (identity)")
    p.add_argument('--real', required=True, help='held-out real export (images + eval_labels)')
    p.add_argument('--sequences', nargs='*', default=[],
                   help='extra folders of consecutive frames (the export\'s sequences/ is '
                        'used automatically)')
    p.add_argument('--segmenter', default='segmenter', help="'' to skip the mIoU metrics")
    p.add_argument('--size', type=int, default=64,
                   help='square frame size the translator runs at (default 64)')
    p.add_argument('--max-frames', type=int, default=0,
                   help='evaluate the first N frames only (default 0: all)')
    p.add_argument('--shift-frames', type=int, default=200,
                   help='frames the shift error is averaged over (default 200)')
    p.add_argument('--threads', type=int, default=1, help='torch threads (default 1)')
    p.add_argument('--json', default='', help='write the metrics here')
    p.add_argument('--update-card', action='store_true', help='merge metrics into the card')
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    size = (args.size, args.size)
    frames = load_source(args.real, size, labels='eval', max_frames=args.max_frames or None)
    clips: dict[str, np.ndarray] = {}
    if (Path(args.real) / 'sequences').is_dir():
        clips.update(load_sequences(args.real, size))
    for s in args.sequences:
        clips.update(load_sequences(s, size))
    fn, max_shift, _card = load_translator(args.model)
    seg = None
    if args.segmenter:
        from vr_goggles.weights import build_module

        seg, _ = build_module(args.segmenter)
    metrics = evaluate(fn, frames, max_shift=max_shift, clips=clips, segmenter=seg,
                       shift_frames=args.shift_frames)
    metrics = {'model': args.model, 'real': args.real, **metrics}
    text = json.dumps(metrics, indent=1)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + '\n')
    if args.update_card and args.model != 'raw':
        update_card(args.model, {k: v for k, v in metrics.items()
                                 if k not in ('model', 'flicker_per_clip')})
    return 0


if __name__ == '__main__':
    sys.exit(main())
