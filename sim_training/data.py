"""Unpaired image sources for translator and segmenter training, held in memory as uint8.

A source is one of
- a folder of images (``*.png``, ``*.jpg``...),
- the collector's export ``DIR`` (``DIR/images`` + ``DIR/labels`` (+ ``DIR/eval_labels``) +
  ``classes.json``, see docs/DESIGN.md),
- a ROS 2 / ROS 1 bag plus an image topic: ``path.mcap:/camera/image_raw`` or the path with a
  separate ``topic`` argument (``sensor_msgs/Image`` or ``CompressedImage``, decoded by
  :mod:`vr_goggles.image.codec`).

Images go through :class:`vr_goggles.image.preprocess.Preprocessor` (centre crop to aspect, area
resize) exactly as at deployment. Labels are class-id maps and must never be interpolated, so
they get the same centre crop and a nearest-neighbour resize.
Augmentation (random reflect-padded crop, horizontal flip) acts on uint8 arrays before
:func:`vr_goggles.image.preprocess.normalize`, drawn from the sampler's own torch generator so
that a
checkpoint can restore the exact data stream.
"""

from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path
import sys

import cv2
import numpy as np
import torch

from vr_goggles.image.preprocess import Preprocessor, center_crop_to_aspect, normalize

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.ppm', '.webp')
BAG_SUFFIXES = ('.mcap', '.db3', '.bag')


class UnreadableImage(ValueError):
    """One image file that OpenCV cannot read (the message names the file and why)."""


@dataclass
class FrameSet:
    """Frames of one domain: ``images`` ``(N, H, W, 3)`` uint8 RGB, ``labels`` ``(N, H, W)``."""

    images: np.ndarray
    labels: np.ndarray | None
    name: str

    def __len__(self) -> int:
        return len(self.images)


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Class-id map -> ``size`` with the image pipeline's centre crop and nearest resize."""
    lab = center_crop_to_aspect(np.asarray(labels), size)
    if lab.shape[:2] == tuple(size):
        return np.ascontiguousarray(lab)
    return cv2.resize(np.ascontiguousarray(lab), (size[1], size[0]),
                      interpolation=cv2.INTER_NEAREST)


def unreadable_reason(path: Path) -> str:
    """Why OpenCV could not read ``path`` (it only returns None), as far as can be told."""
    try:
        size = path.stat().st_size
    except OSError as e:
        return f'cannot open it ({e.strerror})'
    if size == 0:
        return 'empty file'
    return f'not a decodable image ({size} bytes: truncated, or not the format its name says)'


def _read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise UnreadableImage(f'{path}: cannot read image: {unreadable_reason(path)}')
    if img.ndim == 2:
        return img
    order = 'bgra' if img.shape[2] == 4 else 'bgr'
    from vr_goggles.image.preprocess import to_rgb

    return to_rgb(img, order)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Sorted image files directly inside ``folder``."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f'{folder}: no images ({", ".join(IMAGE_SUFFIXES)})')
    return files


def load_folder(folder: str | os.PathLike, size: tuple[int, int], *,
                labels_dir: str | os.PathLike | None = None,
                max_frames: int | None = None, strict: bool = False) -> FrameSet:
    """A folder of images (and optionally a folder of same-named label PNGs).

    An unreadable image is skipped with one line on stderr naming it and the reason, and
    counted in the closing line; ``strict`` (``--strict-images``) refuses the folder instead.
    A folder with no readable image is refused either way.
    """
    pre = Preprocessor(size=tuple(size), keep_aspect=True)
    files, frames, skipped = list_images(folder)[:max_frames], [], []
    for f in files:
        try:
            frames.append(pre.image(_read_rgb(f)))
        except UnreadableImage as e:
            if strict:
                raise UnreadableImage(f'{e} (--strict-images refuses the whole source)') from None
            print(f'warning: {e}; skipped', file=sys.stderr, flush=True)
            skipped.append(f)
    if skipped:
        print(f'warning: {folder}: skipped {len(skipped)} unreadable of {len(files)} image(s)',
              file=sys.stderr, flush=True)
    files = [f for f in files if f not in skipped]
    if not files:
        raise ValueError(f'{folder}: none of its {len(skipped)} image(s) could be read')
    images = np.stack(frames)
    labels = None
    if labels_dir is not None:
        labs = []
        for f in files:
            lp = Path(labels_dir) / (f.stem + '.png')
            lab = cv2.imread(str(lp), cv2.IMREAD_UNCHANGED)
            if lab is None:
                raise ValueError(f'{lp}: missing or unreadable label for {f.name}')
            labs.append(resize_labels(lab if lab.ndim == 2 else lab[..., 0], size))
        labels = np.stack(labs).astype(np.uint8)
    return FrameSet(images, labels, str(folder))


def split_bag_spec(spec: str, topic: str | None = None) -> tuple[str, str | None]:
    """``'path.mcap:/topic'`` -> ``('path.mcap', '/topic')``; a plain path keeps ``topic``."""
    if ':/' in spec:
        path, t = spec.split(':/', 1)
        return path, '/' + t
    return spec, topic


def is_bag(path: str | os.PathLike) -> bool:
    """A bag file (``.mcap/.db3/.bag``) or a rosbag2 directory (``metadata.yaml``)."""
    p = Path(path)
    return p.suffix.lower() in BAG_SUFFIXES or (p.is_dir() and (p / 'metadata.yaml').exists())


def load_bag(path: str | os.PathLike, topic: str, size: tuple[int, int], *,
             max_frames: int | None = None, stride: int = 1) -> FrameSet:
    """Image frames of ``topic`` in a ROS 2 (.mcap/.db3/dir) or ROS 1 (.bag) bag."""
    from rosbags.highlevel import AnyReader

    from vr_goggles.image import codec

    pre = Preprocessor(size=tuple(size), keep_aspect=True)
    images: list[np.ndarray] = []
    with AnyReader([Path(path)]) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            topics = sorted({c.topic for c in reader.connections})
            raise ValueError(f'{path}: no topic {topic!r} (topics: {topics})')
        for k, (conn, _t, raw) in enumerate(reader.messages(connections=conns)):
            if k % stride:
                continue
            msg = reader.deserialize(raw, conn.msgtype)
            if 'CompressedImage' in conn.msgtype:
                img = codec.compressed_to_numpy(msg)
            else:
                img = codec.image_to_rgb(msg)  # native channels -> RGB uint8
            images.append(pre.image(img))
            if max_frames is not None and len(images) >= max_frames:
                break
    if not images:
        raise ValueError(f'{path}: topic {topic!r} has no messages')
    return FrameSet(np.stack(images), None, f'{path}:{topic}')


def load_source(spec: str, size: tuple[int, int], *, topic: str | None = None,
                labels: str = 'train', max_frames: int | None = None,
                strict: bool = False) -> FrameSet:
    """Load any supported source (see module doc).

    ``labels``: ``'train'`` reads ``DIR/labels``, ``'eval'`` reads ``DIR/eval_labels``
    (evaluation only), ``'none'`` skips.
    """
    path, topic = split_bag_spec(str(spec), topic)
    if is_bag(path):
        if not topic:
            raise ValueError(f'{path}: a bag needs a topic (path.mcap:/topic or --*-topic)')
        return load_bag(path, topic, size, max_frames=max_frames)
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f'{p}: no such folder or bag')
    if not p.is_dir():
        raise ValueError(f'{p}: not a folder, collector export or bag')
    if (p / 'images').is_dir():
        lab_dir = {'train': p / 'labels', 'eval': p / 'eval_labels'}.get(labels)
        if lab_dir is not None and not lab_dir.is_dir():
            lab_dir = None
        return load_folder(p / 'images', size, labels_dir=lab_dir, max_frames=max_frames,
                           strict=strict)
    return load_folder(p, size, max_frames=max_frames, strict=strict)


def load_sequences(spec: str | os.PathLike, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Consecutive-frame clips: ``DIR/sequences/KKK/*.png``, ``DIR/KKK/*.png`` or ``DIR/*.png``.

    Returns name -> ``(T, H, W, 3)`` uint8.
    """
    p = Path(spec)
    if (p / 'sequences').is_dir():
        p = p / 'sequences'
    subdirs = sorted(d for d in p.iterdir() if d.is_dir())
    clips = {}
    pre = Preprocessor(size=tuple(size), keep_aspect=True)
    for d in subdirs or [p]:
        try:
            files = list_images(d)
        except ValueError:
            continue
        if len(files) >= 2:
            clips[str(d)] = np.stack([pre.image(_read_rgb(f)) for f in files])
    return clips


class FrameSampler:
    """Random frames of one :class:`FrameSet` with uint8 augmentation, reproducible by state.

    ``sample(n)`` -> (images float32 ``(n, 3, H, W)`` in [-1, 1], labels int64 ``(n, H, W)``
    or None).
    """

    def __init__(self, frames: FrameSet, *, seed: int, flip: bool = True, crop_pad: int = 0):
        if len(frames) == 0:
            raise ValueError(f'{frames.name}: empty frame set')
        self.frames = frames
        self.flip = flip
        self.crop_pad = crop_pad
        self.generator = torch.Generator().manual_seed(seed)

    def _augment(self, *arrays: np.ndarray | None) -> list[np.ndarray | None]:
        """The same random crop and flip for an image and its aligned label."""
        g = self.generator
        out = list(arrays)
        if self.crop_pad > 0:
            p = self.crop_pad
            h, w = out[0].shape[:2]
            dy, dx = (int(v) for v in torch.randint(2 * p + 1, (2,), generator=g))
            out = [None if a is None else
                   np.pad(a, ((p, p), (p, p)) + ((0, 0),) * (a.ndim - 2),
                          mode='reflect')[dy:dy + h, dx:dx + w] for a in out]
        if self.flip and bool(torch.rand((), generator=g) < 0.5):
            out = [None if a is None else a[:, ::-1] for a in out]
        return out

    def _draw(self, n: int, *arrays: np.ndarray | None) -> list[np.ndarray | None]:
        """``n`` indices with replacement; each array's rows there, augmented together."""
        idx = torch.randint(len(self.frames), (n,), generator=self.generator).tolist()
        picks = [self._augment(*(None if a is None else a[k] for a in arrays)) for k in idx]
        return [None if a is None else np.stack([np.ascontiguousarray(p[j]) for p in picks])
                for j, a in enumerate(arrays)]

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Draw ``n`` frames with replacement."""
        imgs, labs = self._draw(n, self.frames.images, self.frames.labels)
        return (torch.from_numpy(normalize(imgs)),
                None if labs is None else torch.from_numpy(labs).long())

    def state_dict(self) -> dict:
        """RNG state (the frames themselves are reloaded from the source)."""
        return {'rng': self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self.generator.set_state(state['rng'])


def jitter(x: torch.Tensor, *, contrast: float, brightness: float,
           generator: torch.Generator) -> torch.Tensor:
    """Per-frame contrast and brightness jitter of normalised ``(N, 3, H, W)`` frames.

    Each frame is scaled by ``1 + contrast * (u - 0.5)`` and offset by
    ``brightness * (v - 0.5)`` (``u`` then ``v`` drawn uniform from ``generator``), then
    clamped to [-1, 1]: the photometric augmentation of the domain score and of DACS's mixed
    frames, one draw order so a run reproduces from the generator's state.
    """
    n = len(x)
    a = 1 + contrast * (torch.rand(n, 1, 1, 1, generator=generator) - 0.5)
    b = brightness * (torch.rand(n, 1, 1, 1, generator=generator) - 0.5)
    return (x * a + b).clamp(-1, 1)


def synthetic_frames(n: int, size: tuple[int, int], *, domain: str, seed: int = 0,
                     num_classes: int = 6) -> FrameSet:
    """Tiny procedural scenes for tests and benchmarks: horizontal class bands + a box.

    ``domain='sim'`` renders flat class colours, ``'real'`` adds a colour cast, noise and
    texture; the class layout (labels) is the same kind in both.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    palette = rng.integers(40, 220, size=(num_classes, 3))
    images = np.zeros((n, h, w, 3), np.uint8)
    labels = np.zeros((n, h, w), np.uint8)
    for k in range(n):
        horizon = int(rng.integers(h // 3, 2 * h // 3))
        lab = np.full((h, w), 2, np.uint8)
        lab[:h // 6] = 3
        lab[horizon:] = 1
        bh, bw = int(rng.integers(h // 6, h // 3)), int(rng.integers(w // 6, w // 3))
        by, bx = int(rng.integers(0, h - bh)), int(rng.integers(0, w - bw))
        lab[by:by + bh, bx:bx + bw] = 4
        img = palette[lab].astype(np.float32)
        if domain == 'real':
            img = _synthetic_real_look(img, rng)
        images[k] = np.clip(img, 0, 255).astype(np.uint8)
        labels[k] = lab
    return FrameSet(images, labels, f'synthetic-{domain}')


def _synthetic_real_look(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour cast, noise and stripes over a float ``(H, W, 3)`` sim-look frame."""
    img = img * np.array([1.1, 0.9, 0.8]) + 15
    img += rng.normal(0, 12, size=img.shape)
    return img + 20 * np.sin(np.arange(img.shape[1]) / 2.0)[None, :, None]
