"""``vr-goggles translate``: real images (files or folders) -> simulator-styled PNGs.

Outputs are at the model's input size. Folders are searched recursively for png/jpg/jpeg/bmp
files; their structure is kept under ``--out/<folder name>/``. ``--side-by-side`` writes the
(resized, cropped) input left of the translation. An unreadable file is skipped with one line
naming it and the reason, and the command exits 3; ``--strict`` refuses the set instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys
from typing import Any

from vr_goggles.engines.cli_support import add_engine_args, add_model_arg

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp')
#: Exit status when some inputs were unreadable and skipped (the others are written), as
#: ``vr-goggles replay`` exits 3 for an incomplete run.
EXIT_SKIPPED = 3


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``translate``."""
    p = subparsers.add_parser('translate', help='translate images to the simulator look',
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('inputs', nargs='+', metavar='IN', help='image files or folders')
    p.add_argument('--out', required=True, help='output folder')
    add_model_arg(p)
    add_engine_args(p)
    p.add_argument('--side-by-side', action='store_true', help='input | output in one PNG')
    p.add_argument('--batch', type=int, default=8, help='images per engine call')
    p.add_argument('--strict', action='store_true',
                   help='refuse the whole set, writing nothing, if any image is unreadable '
                        '(default: skip it, name it on stderr and exit 3)')
    p.set_defaults(func=run)
    return p


def collect_inputs(inputs: list[str]) -> list[tuple[Path, Path]]:
    """(source file, output path relative to --out) for every image under ``inputs``."""
    pairs: list[tuple[Path, Path]] = []
    for item in inputs:
        src = Path(item)
        if src.is_dir():
            files = sorted(f for f in src.rglob('*')
                           if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise FileNotFoundError(f'{src}: folder holds no {"/".join(IMAGE_SUFFIXES)} '
                                        'images')
            name = src.resolve().name or 'input'
            pairs += [(f, Path(name) / f.relative_to(src).with_suffix('.png')) for f in files]
        elif src.is_file():
            pairs.append((src, Path(src.with_suffix('.png').name)))
        else:
            raise FileNotFoundError(f'{src}: no such file or folder')
    seen: dict[Path, int] = {}
    out = []
    for f, rel in pairs:  # two inputs called a.png from different places: a.png, a_1.png
        k = seen.get(rel, 0)
        seen[rel] = k + 1
        out.append((f, rel if k == 0 else rel.with_name(f'{rel.stem}_{k}.png')))
    return out


def _read(src: Path) -> tuple[Any, str]:
    """(BGR image, '') or (None, why it cannot be read); OpenCV itself only returns None."""
    import cv2

    img = cv2.imread(str(src), cv2.IMREAD_COLOR)  # BGR uint8, gray expanded
    if img is not None:
        return img, ''
    try:
        size = src.stat().st_size
    except OSError as e:
        return None, f'cannot open it ({e.strerror})'
    if size == 0:
        return None, 'empty file'
    return None, (f'not a decodable image ({size} bytes: truncated, or not the format its '
                  'name says)')


def run(args: argparse.Namespace) -> int:
    """Translate every readable input and write PNGs; exit 3 when some were skipped."""
    import cv2
    import numpy as np

    from vr_goggles.goggles import Goggles

    pairs = collect_inputs(args.inputs)
    if args.strict:  # refuse the whole set before anything is written
        bad = [(src, why) for src, _ in pairs for why in [_read(src)[1]] if why]
        if bad:
            raise ValueError('; '.join(f'{src}: {why}' for src, why in bad)
                             + ' (--strict: nothing written)')
    goggles = Goggles.from_model(args.model, engine=args.engine, device=args.device,
                                 precision=args.precision, compile=args.compile,
                                 engine_file_path=args.engine_file_path,
                                 force_engine_update=args.force_engine_update)
    out_dir = Path(args.out)
    bs = max(1, int(args.batch))
    written, skipped = 0, []
    for i in range(0, len(pairs), bs):
        chunk, images = [], []
        for src, rel in pairs[i:i + bs]:
            img, why = _read(src)
            if img is None:
                print(f'vr-goggles translate: skipped {src}: {why}', file=sys.stderr)
                skipped.append(src)
                continue
            chunk.append((src, rel))
            images.append(img)
        if not images:
            continue
        outputs = goggles.translate_batch(images, color_order='bgr')
        for (_src, rel), img, out in zip(chunk, images, outputs):
            if args.side_by_side:
                out = np.concatenate([goggles.preprocessor.image(img, 'bgr'), out], axis=1)
            dst = out_dir / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(dst), np.ascontiguousarray(out[:, :, ::-1])):  # RGB -> BGR
                raise RuntimeError(f'{dst}: cannot write PNG')
            written += 1
    if not written:
        raise ValueError(f'none of the {len(pairs)} input image(s) could be read; nothing '
                         'written')
    print(f'translated {written} image(s) to {out_dir} with {goggles.engine.name} '
          f'({goggles.engine.device}, {goggles.engine.precision}), model {goggles.card.name}'
          + (f'; skipped {len(skipped)} unreadable' if skipped else ''))
    return EXIT_SKIPPED if skipped else 0
