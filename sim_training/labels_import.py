"""Labels from the tools people label with -> mono8 class-id PNGs (``DIR/labels``).

Two exports are read:

* **labelme** JSON (one file per image): ``shapes`` of type ``polygon`` or ``rectangle`` with a
  ``label``, drawn in file order (a later shape covers an earlier one, as labelme's own
  ``shapes_to_label``), on ``imageHeight`` x ``imageWidth``; unlabelled pixels get the
  background class;
* **CVAT "Segmentation mask 1.1"** (an unzipped export folder, or its ``.zip``): ``labelmap.txt``
  (``name:r,g,b::`` per line) and ``SegmentationClass/*.png`` colour masks.

Every label name goes through a class-name table: a ``classes.json`` as the collector writes it
(``{"classes": [{"id": 0, "name": "void"}, ...]}``, default: the project's six classes,
:func:`vr_goggles.image.semantics.classes_json`). A name the table lacks, a colour the label map
lacks, a shape with no area, or a mask whose size differs from its image (``--images``) is
refused with the file and the reason, and nothing is written for that import.

``vr-goggles labels import SRC... --out DIR/labels [--images DIR/images] [--classes JSON]``
runs this module (``python -m sim_training.labels_import``).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
import json
import os
from pathlib import Path
import sys
import zipfile

import cv2
import numpy as np

AREA_SHAPES = ('polygon', 'rectangle')
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp')


class LabelImportError(ValueError):
    """One file cannot be imported; the message names it and says why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f'{path}: {reason}')


def load_class_table(path: str | os.PathLike | None) -> dict[str, int]:
    """``classes.json`` -> ``{name: id}`` (the project's classes when ``path`` is None)."""
    if path is None:
        from vr_goggles.image.semantics import classes_json

        doc = classes_json()
    else:
        try:
            doc = json.loads(Path(path).read_text(encoding='utf-8'))
        except (OSError, ValueError) as e:
            raise LabelImportError(path, f'cannot read the class table ({e})') from None
    try:
        table = {str(c['name']): int(c['id']) for c in doc['classes']}
    except (KeyError, TypeError, ValueError):
        raise LabelImportError(path, 'not a class table: expected {"classes": [{"id": 0, '
                                     '"name": "void"}, ...]}') from None
    if any(not 0 <= i <= 255 for i in table.values()):
        raise LabelImportError(path, 'class ids must fit mono8 (0-255)')
    return table


def _class_id(table: dict[str, int], name: str, where: str | os.PathLike) -> int:
    if name not in table:
        raise LabelImportError(where, f'unknown class name {name!r} (the class table has: '
                                      f'{", ".join(sorted(table, key=table.get))})')
    return table[name]


def _check_size(path: str | os.PathLike, shape: tuple[int, int],
                image: Path | None) -> None:
    """Refuse a label whose size is not its image's (when the image is known)."""
    if image is None:
        return
    img = cv2.imread(str(image), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise LabelImportError(image, 'cannot read the image the labels belong to')
    if img.shape[:2] != tuple(shape):
        raise LabelImportError(path, f'labels are {shape[1]}x{shape[0]} but the image {image} '
                                     f'is {img.shape[1]}x{img.shape[0]} (width x height)')


def _find_image(images: Path | None, stem: str) -> Path | None:
    if images is None:
        return None
    for suffix in IMAGE_SUFFIXES:
        if (images / (stem + suffix)).exists():
            return images / (stem + suffix)
    raise LabelImportError(images, f'no image named {stem} (.png/.jpg/...) for its labels')


def labelme_to_ids(path: str | os.PathLike, table: dict[str, int], *,
                   background: str = 'void', image: Path | None = None) -> np.ndarray:
    """One labelme JSON -> ``(H, W)`` uint8 class ids."""
    try:
        doc = json.loads(Path(path).read_text(encoding='utf-8'))
        h, w = int(doc['imageHeight']), int(doc['imageWidth'])
        shapes = list(doc['shapes'])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise LabelImportError(path, f'not a labelme file ({type(e).__name__}: {e})') from None
    ids = np.full((h, w), _class_id(table, background, path), np.uint8)
    for k, shape in enumerate(shapes):
        kind = shape.get('shape_type') or 'polygon'
        label = str(shape.get('label', ''))
        cid = _class_id(table, label, f'{path} (shape {k})')
        if kind not in AREA_SHAPES:
            raise LabelImportError(path, f'shape {k} ({label!r}) is a {kind}, which has no area '
                                         f'(only {" and ".join(AREA_SHAPES)} are labels)')
        pts = np.asarray(shape.get('points', []), float)
        if kind == 'rectangle':
            if pts.shape != (2, 2):
                raise LabelImportError(path, f'shape {k}: a rectangle needs 2 corner points')
            (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
            pts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        if pts.ndim != 2 or len(pts) < 3:
            raise LabelImportError(path, f'shape {k} ({label!r}): a polygon needs 3 points or '
                                         'more')
        cv2.fillPoly(ids, [np.round(pts).astype(np.int32)], int(cid))
    _check_size(path, (h, w), image)
    return ids


def read_cvat_export(src: str | os.PathLike) -> tuple[dict[tuple[int, int, int], str],
                                                      dict[str, bytes]]:
    """A CVAT Segmentation mask 1.1 export -> (colour -> name, mask name -> PNG bytes)."""
    src = Path(src)
    if src.suffix == '.zip':
        with zipfile.ZipFile(src) as z:
            files = {n: z.read(n) for n in z.namelist() if not n.endswith('/')}
    elif src.is_dir():
        files = {str(p.relative_to(src)): p.read_bytes() for p in src.rglob('*') if p.is_file()}
    else:
        raise LabelImportError(src, 'not a CVAT export folder or .zip')
    labelmap = next((b for n, b in files.items() if Path(n).name == 'labelmap.txt'), None)
    if labelmap is None:
        raise LabelImportError(src, 'no labelmap.txt: not a CVAT "Segmentation mask" export')
    colours: dict[tuple[int, int, int], str] = {}
    for line in labelmap.decode('utf-8').splitlines():
        if not line.strip() or line.startswith('#'):
            continue
        name, _, rest = line.partition(':')
        try:
            rgb = tuple(int(v) for v in rest.split(':', 1)[0].split(','))
        except ValueError:
            rgb = ()
        if len(rgb) != 3:
            raise LabelImportError(src, f'labelmap.txt: cannot read the colour of {line!r}')
        colours[rgb] = name  # type: ignore[index]
    masks = {n: b for n, b in files.items()
             if Path(n).parent.name == 'SegmentationClass' and n.endswith('.png')}
    if not masks:
        raise LabelImportError(src, 'no SegmentationClass/*.png masks')
    return colours, masks


def cvat_mask_to_ids(name: str, png: bytes, colours: dict[tuple[int, int, int], str],
                     table: dict[str, int], *, image: Path | None = None) -> np.ndarray:
    """One CVAT colour mask -> ``(H, W)`` uint8 class ids."""
    bgr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise LabelImportError(name, 'not a readable PNG')
    rgb = bgr[:, :, ::-1]
    ids = np.zeros(rgb.shape[:2], np.uint8)
    flat = rgb.reshape(-1, 3)
    found, inverse = np.unique(flat, axis=0, return_inverse=True)
    for k, colour in enumerate(map(tuple, found.tolist())):
        if colour not in colours:
            raise LabelImportError(name, f'colour {colour} is not in labelmap.txt')
        ids.reshape(-1)[inverse.reshape(-1) == k] = _class_id(table, colours[colour], name)
    _check_size(name, ids.shape, image)
    return ids


def import_labels(sources: Iterable[str | os.PathLike], out: str | os.PathLike, *,
                  classes: str | os.PathLike | None = None,
                  images: str | os.PathLike | None = None,
                  background: str = 'void') -> list[Path]:
    """Convert every source (labelme JSONs, folders of them, CVAT exports) into ``out``.

    Everything is converted in memory first, so a refused file leaves ``out`` untouched.
    """
    table = load_class_table(classes)
    img_dir = Path(images) if images else None
    done: dict[str, np.ndarray] = {}
    for src in map(Path, sources):
        if not src.exists():
            raise LabelImportError(src, 'no such file or folder')
        cvat = src.suffix == '.zip' or (src.is_dir() and any(src.rglob('labelmap.txt')))
        if cvat:
            colours, masks = read_cvat_export(src)
            for name, png in sorted(masks.items()):
                stem = Path(name).stem
                done[stem] = cvat_mask_to_ids(f'{src}/{name}', png, colours, table,
                                              image=_find_image(img_dir, stem))
            continue
        files = sorted(src.glob('*.json')) if src.is_dir() else [src]
        if not files:
            raise LabelImportError(src, 'no labelme .json files')
        for f in files:
            done[f.stem] = labelme_to_ids(f, table, background=background,
                                          image=_find_image(img_dir, f.stem))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, ids in sorted(done.items()):
        if not cv2.imwrite(str(out / f'{stem}.png'), ids):
            raise LabelImportError(out / f'{stem}.png', 'cannot write the PNG')
        written.append(out / f'{stem}.png')
    return written


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m sim_training.labels_import SRC... --out DIR/labels``."""
    p = argparse.ArgumentParser(prog='vr-goggles labels import', description=__doc__.split(
        '\n\n')[0])
    p.add_argument('sources', nargs='+', metavar='SRC',
                   help='labelme .json files or folders of them, CVAT Segmentation mask 1.1 '
                        'exports (folder or .zip)')
    p.add_argument('--out', required=True, help='folder for the mono8 label PNGs')
    p.add_argument('--classes', default=None,
                   help='class table classes.json (default: the project classes: void, floor, '
                        'wall, ceiling, chair, object)')
    p.add_argument('--images', default=None,
                   help='folder of the labelled images: each label must have its image\'s size')
    p.add_argument('--background', default='void',
                   help='class of pixels no labelme shape covers (default: %(default)s)')
    args = p.parse_args(argv)
    try:
        written = import_labels(args.sources, args.out, classes=args.classes,
                                images=args.images, background=args.background)
    except LabelImportError as e:
        print(f'vr-goggles labels import: error: {e} (nothing written)', file=sys.stderr)
        return 1
    print(f'wrote {len(written)} mono8 label PNG(s) to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
