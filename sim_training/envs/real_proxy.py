"""The simulator's "real-proxy" look: photo texture tiles, procedural textures, a camera model.

Real-proxy rendering keeps the simulator's geometry and replaces its appearance with textures cut
from real indoor photos (``sim_training/assets/real_textures/``, cropped from the MIT-licensed
frames in ``shared/real_indoor``; see the README there) plus a camera model (exposure, white
balance, tone curve, vignetting, blur, sensor noise, JPEG). The gap to the canonical sim look is
thus at texture level, not a per-pixel colour map, which is what a real-to-sim translator must
undo.

The tiles ship with the package. :func:`extract_tiles` regenerates them from the photos
(``python -m sim_training.envs.real_proxy --out sim_training/assets/real_textures``); the photo
folder is found through ``VR_GOGGLES_REAL_INDOOR`` or ``<repo>/../shared/real_indoor``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
import functools
import os
from pathlib import Path
import sys

import cv2
import numpy as np

from vr_goggles.image.preprocess import resize

#: Texture categories; every real-proxy surface draws from one of these pools.
CATEGORIES: tuple[str, ...] = ('floor', 'wall', 'ceiling', 'furniture', 'chair', 'object')

#: Side of a shipped tile in pixels (tiles are mirrored to 2x this at load time: seamless).
TILE_SIZE = 128

ASSET_DIR = Path(__file__).resolve().parents[1] / 'assets' / 'real_textures'
REAL_INDOOR_ENV = 'VR_GOGGLES_REAL_INDOOR'

LICENSE_NOTICE = """\
Texture tiles cropped (and resized to {size}x{size}) from real indoor camera frames.

Source: the public repository gaoxiang12/slambook2 (MIT License, Copyright (c) 2018 Xiang Gao),
commit e62d9cd1f95bab337fb4251608543b71d004c420, files ch11/data/1-10.png, ch5/rgbd/color/1-5.png
and ch7/1.png, ch7/2.png, as redistributed in shared/real_indoor (desk_sequence/, rgbd_sequence/,
pair/). Keep this notice with any copy.

MIT License: Permission is hereby granted, free of charge, to any person obtaining a copy of this
software and associated documentation files (the "Software"), to deal in the Software without
restriction, including without limitation the rights to use, copy, modify, merge, publish,
distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions: The above copyright notice
and this permission notice shall be included in all copies or substantial portions of the
Software. THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED.

Regenerate with: python -m sim_training.envs.real_proxy --out sim_training/assets/real_textures
"""


@dataclass(frozen=True)
class TileSpec:
    """One crop ``(x, y, w, h)`` of a 640x480 photo, used as a texture of ``category``."""

    category: str
    source: str
    box: tuple[int, int, int, int]

    @property
    def name(self) -> str:
        """File stem, e.g. ``floor_rgbd_sequence_01_20_400``."""
        stem = self.source.replace('/', '_').rsplit('.', 1)[0]
        return f'{self.category}_{stem}_{self.box[0]}_{self.box[1]}'


#: The crops, chosen by eye on the photos (documented so the assets are reproducible).
TILE_SPECS: tuple[TileSpec, ...] = (
    TileSpec('floor', 'desk_sequence/01.png', (330, 20, 180, 60)),       # warehouse concrete
    TileSpec('floor', 'desk_sequence/10.png', (60, 420, 200, 60)),       # concrete, shadowed
    TileSpec('floor', 'rgbd_sequence/01.png', (20, 400, 180, 80)),       # carpet
    TileSpec('floor', 'rgbd_sequence/05.png', (250, 400, 200, 80)),      # carpet, dark
    TileSpec('wall', 'rgbd_sequence/01.png', (380, 20, 90, 120)),        # wall and curtain
    TileSpec('wall', 'rgbd_sequence/05.png', (220, 60, 90, 90)),         # wall with frames
    TileSpec('wall', 'rgbd_sequence/01.png', (60, 70, 70, 70)),          # wall with frame
    TileSpec('wall', 'rgbd_sequence/01.png', (230, 90, 60, 60)),         # wall, switch, lamp
    TileSpec('wall', 'rgbd_sequence/05.png', (480, 50, 70, 80)),         # wall and door edge
    TileSpec('wall', 'desk_sequence/01.png', (20, 0, 140, 30)),          # warehouse wall
    TileSpec('ceiling', 'rgbd_sequence/01.png', (20, 0, 140, 40)),
    TileSpec('ceiling', 'rgbd_sequence/05.png', (130, 0, 160, 40)),
    TileSpec('furniture', 'rgbd_sequence/01.png', (440, 270, 160, 100)),  # wooden table
    TileSpec('furniture', 'rgbd_sequence/01.png', (470, 60, 80, 130)),    # cabinet
    TileSpec('furniture', 'desk_sequence/01.png', (90, 305, 220, 45)),    # white desk top
    TileSpec('furniture', 'rgbd_sequence/05.png', (170, 140, 70, 80)),    # chest of drawers
    TileSpec('chair', 'rgbd_sequence/01.png', (330, 300, 70, 100)),       # wooden chair
    TileSpec('chair', 'rgbd_sequence/05.png', (340, 160, 90, 120)),       # armchair fabric
    TileSpec('chair', 'rgbd_sequence/05.png', (560, 180, 80, 80)),        # sofa
    TileSpec('object', 'desk_sequence/01.png', (200, 255, 180, 50)),      # keyboard
    TileSpec('object', 'desk_sequence/01.png', (240, 100, 140, 120)),     # monitor and clutter
    TileSpec('object', 'rgbd_sequence/01.png', (300, 330, 150, 70)),      # table runner
)


class RealIndoorMissingError(FileNotFoundError):
    """The real photo folder (needed only to regenerate tiles) could not be found."""


def repo_root() -> Path:
    """The source checkout this module lives in (``sim_training/..``)."""
    return Path(__file__).resolve().parents[2]


def real_indoor_dir() -> Path:
    """Locate ``real_indoor``: ``$VR_GOGGLES_REAL_INDOOR``, else ``<repo>/../shared/real_indoor``.

    Raises :class:`RealIndoorMissingError` naming both places when neither exists.
    """
    env = os.environ.get(REAL_INDOOR_ENV)
    candidates = [Path(env)] if env else []
    candidates.append(repo_root().parent / 'shared' / 'real_indoor')
    for c in candidates:
        if (c / 'rgbd_sequence').is_dir():
            return c
    raise RealIndoorMissingError(
        'real_indoor photos not found (looked in: '
        + ', '.join(str(c) for c in candidates)
        + f'); set {REAL_INDOOR_ENV} to the folder holding desk_sequence/ and rgbd_sequence/')


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f'{path}: not a readable image')
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]),
                       [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f'{path}: could not write image')


def crop_tile(photo: np.ndarray, spec: TileSpec, size: int = TILE_SIZE) -> np.ndarray:
    """Cut ``spec.box`` out of ``photo`` and resize it to ``size`` x ``size`` (stretching)."""
    x, y, w, h = spec.box
    crop = photo[y:y + h, x:x + w]
    if crop.shape[0] != h or crop.shape[1] != w:
        raise ValueError(f'{spec.name}: box {spec.box} outside photo of shape {photo.shape}')
    return resize(crop, (size, size))


def extract_tiles(src: Path | None = None, out: Path = ASSET_DIR,
                  size: int = TILE_SIZE) -> list[Path]:
    """Write every :data:`TILE_SPECS` crop of the photos in ``src`` to ``out`` with the notice."""
    src = real_indoor_dir() if src is None else Path(src)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in TILE_SPECS:
        path = out / f'{spec.name}.png'
        _write_rgb(path, crop_tile(_read_rgb(src / spec.source), spec, size))
        written.append(path)
    (out / 'LICENSE.txt').write_text(LICENSE_NOTICE.format(size=size), encoding='utf-8')
    return written


def mirror_tile(tile: np.ndarray) -> np.ndarray:
    """Mirror a tile into a 2x2 block that repeats without visible seams."""
    top = np.concatenate([tile, tile[:, ::-1]], axis=1)
    return np.ascontiguousarray(np.concatenate([top, top[::-1]], axis=0))


@functools.lru_cache(maxsize=1)
def load_tiles() -> Mapping[str, tuple[np.ndarray, ...]]:
    """Category -> seamless RGB uint8 tiles, from the shipped assets (or the photos if absent).

    Cached per process; callers must not modify the arrays.
    """
    tiles: dict[str, list[np.ndarray]] = {c: [] for c in CATEGORIES}
    photos: dict[str, np.ndarray] = {}
    for spec in TILE_SPECS:
        path = ASSET_DIR / f'{spec.name}.png'
        if path.exists():
            tile = _read_rgb(path)
        else:  # a source checkout without the assets: cut them from the photos in memory
            if spec.source not in photos:
                photos[spec.source] = _read_rgb(real_indoor_dir() / spec.source)
            tile = crop_tile(photos[spec.source], spec)
        tile = mirror_tile(tile)
        tile.setflags(write=False)
        tiles[spec.category].append(tile)
    return {c: tuple(v) for c, v in tiles.items()}


def procedural_texture(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """A random texture for domain randomisation: noise, stripes, checkers or blobs in colour.

    Deliberately unlike any photo: the randomised baseline must not see real textures.
    """
    kind = int(rng.integers(4))
    c0 = rng.uniform(0, 1, 3)
    c1 = rng.uniform(0, 1, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == 0:  # smooth value noise
        k = int(rng.integers(2, 9))
        coarse = rng.uniform(0, 1, (k, k)).astype(np.float32)
        coarse = np.concatenate([coarse, coarse[:1]], 0)
        coarse = np.concatenate([coarse, coarse[:, :1]], 1)
        t = cv2.resize(coarse, (size + size // k, size + size // k),
                       interpolation=cv2.INTER_CUBIC)[:size, :size]
    elif kind == 1:  # stripes
        f = int(rng.integers(1, 9))
        ang = rng.uniform(0, np.pi)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * f * (np.cos(ang) * xx + np.sin(ang) * yy))
    elif kind == 2:  # checkers
        f = int(rng.integers(1, 9))
        t = ((np.floor(xx * 2 * f) + np.floor(yy * 2 * f)) % 2).astype(np.float32)
    else:  # white noise, blurred
        t = cv2.GaussianBlur(rng.uniform(0, 1, (size, size)).astype(np.float32), (0, 0),
                             float(rng.uniform(0.5, 3.0)), borderType=cv2.BORDER_REFLECT)
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    t = np.clip(t, 0, 1)[:, :, None]
    img = c0 * (1 - t) + c1 * t
    img += rng.normal(0, 0.03, img.shape)
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def jitter_texture(tile: np.ndarray, rng: np.random.Generator, strength: float = 0.12,
                   ) -> np.ndarray:
    """Random flip/rotation and mild colour gain of a tile, so a few photos give many surfaces."""
    t = np.rot90(tile, int(rng.integers(4)))
    if rng.random() < 0.5:
        t = t[:, ::-1]
    gain = 1.0 + rng.uniform(-strength, strength, 3)
    return np.clip(t.astype(np.float32) * gain, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class CameraModel:
    """A cheap consumer-camera model applied to a rendered uint8 RGB frame.

    Per-episode parameters (drawn by :meth:`sample`) plus per-frame sensor noise drawn from the
    generator given to :meth:`apply`, so the output is a pure function of the seeds.
    """

    exposure: float = 1.0               # global gain
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel gains (RGB)
    gamma: float = 1.0                  # output = input ** (1 / gamma)
    contrast: float = 0.0               # S-curve strength in [0, 1)
    saturation: float = 1.0             # 1 keeps colours; < 1 washes them out
    vignetting: float = 0.0             # corner darkening fraction
    blur_sigma: float = 0.0             # Gaussian defocus in pixels
    noise_sigma: float = 0.0            # sensor noise std in [0, 255] units (at mid-grey)
    jpeg_quality: int = 100             # 100 disables JPEG

    @classmethod
    def sample(cls, rng: np.random.Generator, profile: str = 'real') -> CameraModel:
        """Draw a camera of ``profile`` 'real', 'randomized' or 'augment'.

        'real' is a dim, warm, noisy webcam; 'augment' is for policy training (see
        ``train_policy --camera-augment``).
        """
        if profile == 'real':
            return cls(
                exposure=float(rng.uniform(0.75, 1.15)),
                white_balance=tuple(float(v) for v in (rng.uniform(1.0, 1.18),
                                                       rng.uniform(0.92, 1.04),
                                                       rng.uniform(0.72, 0.92))),
                gamma=float(rng.uniform(0.85, 1.25)),
                contrast=float(rng.uniform(0.1, 0.45)),
                saturation=float(rng.uniform(0.65, 1.1)),
                vignetting=float(rng.uniform(0.25, 0.55)),
                blur_sigma=float(rng.uniform(0.35, 0.8)),
                noise_sigma=float(rng.uniform(3.0, 8.0)),
                jpeg_quality=int(rng.integers(30, 70)),
            )
        if profile == 'randomized':
            on = rng.random(6) < 0.5
            return cls(
                exposure=float(rng.uniform(0.7, 1.3)),
                white_balance=tuple(float(v) for v in rng.uniform(0.85, 1.15, 3)),
                gamma=float(rng.uniform(0.8, 1.25)) if on[0] else 1.0,
                contrast=float(rng.uniform(0.0, 0.4)) if on[1] else 0.0,
                saturation=float(rng.uniform(0.6, 1.3)),
                vignetting=float(rng.uniform(0.0, 0.5)) if on[2] else 0.0,
                blur_sigma=float(rng.uniform(0.2, 1.0)) if on[3] else 0.0,
                noise_sigma=float(rng.uniform(1.0, 8.0)) if on[4] else 0.0,
                jpeg_quality=int(rng.integers(30, 90)) if on[5] else 100,
            )
        if profile == 'augment':
            # Policy-training augmentation of the sim look (train_policy --camera-augment): the
            # defocus, noise and mild colour errors that translated frames carry, with the
            # sim textures untouched.
            return cls(
                exposure=float(rng.uniform(0.85, 1.15)),
                white_balance=tuple(float(v) for v in rng.uniform(0.92, 1.08, 3)),
                saturation=float(rng.uniform(0.75, 1.1)),
                blur_sigma=float(rng.uniform(0.3, 1.6)) if rng.random() < 0.7 else 0.0,
                noise_sigma=float(rng.uniform(1.0, 6.0)) if rng.random() < 0.5 else 0.0,
            )
        raise ValueError(f"profile: expected 'real', 'randomized' or 'augment', "
                         f"got {profile!r}")

    def apply(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Return the camera's version of ``img`` (uint8 RGB), drawing noise from ``rng``.

        Order: defocus blur, colour matrix (white balance, exposure, saturation), vignetting,
        tone curve (gamma and S-curve, as a lookup table), signal-dependent noise, JPEG.
        """
        h, w = img.shape[:2]
        x = img
        if self.blur_sigma > 0:
            x = cv2.GaussianBlur(x, (0, 0), self.blur_sigma)
        gain = self._gain_map(h, w)
        x = cv2.transform(x.astype(np.float32), self._color_matrix)
        x *= gain
        x = np.clip(x, 0.0, 255.0).astype(np.uint8)
        x = cv2.LUT(x, self._tone_lut)
        if self.noise_sigma > 0:  # shot-like noise: stronger in bright pixels
            sigma = self._noise_lut[x]
            noisy = x + sigma * rng.standard_normal(x.shape, dtype=np.float32)
            x = np.clip(noisy + 0.5, 0.0, 255.0).astype(np.uint8)
        if self.jpeg_quality < 100:
            ok, buf = cv2.imencode('.jpg', np.ascontiguousarray(x[:, :, ::-1]),
                                   [cv2.IMWRITE_JPEG_QUALITY, int(self.jpeg_quality)])
            if ok:
                x = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
        return np.ascontiguousarray(x)

    # Per-episode constants, computed on first use (cached_property bypasses frozen=True).

    @functools.cached_property
    def _color_matrix(self) -> np.ndarray:
        sat = np.float32(self.saturation)
        mix = sat * np.eye(3, dtype=np.float32) + (1 - sat) / 3 * np.ones((3, 3), np.float32)
        wb = np.diag(np.asarray(self.white_balance, np.float32) * np.float32(self.exposure))
        return (wb @ mix).astype(np.float32)

    @functools.cached_property
    def _gain_maps(self) -> dict[tuple[int, int], np.ndarray]:
        return {}

    def _gain_map(self, h: int, w: int) -> np.ndarray:
        g = self._gain_maps.get((h, w))
        if g is None:
            g = np.repeat(_vignette(h, w, self.vignetting)[:, :, None], 3, axis=2)
            self._gain_maps[(h, w)] = g = np.ascontiguousarray(g, dtype=np.float32)
        return g

    @functools.cached_property
    def _tone_lut(self) -> np.ndarray:
        v = np.arange(256, dtype=np.float64) / 255.0
        v = np.power(v, 1.0 / self.gamma)
        v = (1 - self.contrast) * v + self.contrast * (v * v * (3 - 2 * v))
        return np.clip(v * 255.0 + 0.5, 0, 255).astype(np.uint8)

    @functools.cached_property
    def _noise_lut(self) -> np.ndarray:
        v = np.arange(256, dtype=np.float32) / 255.0
        return (self.noise_sigma * np.sqrt(0.25 + v)).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _vignette_base(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - (w - 1) / 2) / (w / 2)) ** 2 + ((yy - (h - 1) / 2) / (h / 2)) ** 2
    return r2 / 2.0  # 0 at the centre, 1 in the corners


def _vignette(h: int, w: int, strength: float) -> np.ndarray:
    return 1.0 - strength * _vignette_base(h, w)


def high_frequency_energy(img: np.ndarray) -> float:
    """Mean absolute Laplacian of the grey image: a texture/noise statistic for look checks."""
    grey = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean())


def main(argv: list[str] | None = None) -> int:
    """Regenerate the shipped tiles from the real photos."""
    p = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    p.add_argument('--src', type=Path, default=None,
                   help=f'real_indoor folder (default: ${REAL_INDOOR_ENV} or ../shared)')
    p.add_argument('--out', type=Path, default=ASSET_DIR)
    p.add_argument('--size', type=int, default=TILE_SIZE)
    args = p.parse_args(argv)
    try:
        paths = extract_tiles(args.src, args.out, args.size)
    except RealIndoorMissingError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'wrote {len(paths)} tiles to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
