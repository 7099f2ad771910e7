"""The one definition of image preprocessing shared by simulator, training, nodes and replay.

Divergent preprocessing between training and deployment is the classic real-to-sim bug, so every
resize, colour-order change and normalisation in this project goes through this module.

Conventions:
- images at the edges are ``uint8`` arrays ``(H, W, 3)`` in RGB order (``(N, H, W, 3)`` batches);
- network tensors are ``float32`` ``(N, 3, H, W)`` in ``[-1, 1]`` (``x / 127.5 - 1``);
- sizes are ``(height, width)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np

#: Normalisation recorded in every model card: ``x_norm = (x / 255 - mean) / std``.
NORMALIZATION = {'color_order': 'rgb', 'layout': 'NCHW', 'range': [-1.0, 1.0],
                 'mean': [0.5, 0.5, 0.5], 'std': [0.5, 0.5, 0.5]}


def _check_image(img: np.ndarray, name: str = 'image') -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f'{name}: expected (H, W), (H, W, 1|3|4), got shape {img.shape}')
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f'{name}: empty image of shape {img.shape}')
    return img


def to_rgb(img: np.ndarray, color_order: str = 'rgb') -> np.ndarray:
    """Return a 3-channel RGB view/copy of ``img`` given its channel order.

    ``color_order`` is one of ``rgb``, ``bgr``, ``rgba``, ``bgra``, ``gray``.
    """
    img = _check_image(img)
    c = img.shape[2]
    order = color_order.lower()
    if order == 'gray' or c == 1:
        return np.repeat(img[:, :, :1], 3, axis=2)
    if order in ('rgb', 'rgba'):
        return img[:, :, :3]
    if order in ('bgr', 'bgra'):
        return np.ascontiguousarray(img[:, :, 2::-1])
    raise ValueError(f'color_order: unsupported value {color_order!r} '
                     "(expected rgb, bgr, rgba, bgra or gray)")


def center_crop_to_aspect(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Crop the centre of ``img`` to the aspect ratio of ``size`` (h, w), losing no scale."""
    h, w = img.shape[:2]
    th, tw = size
    if h * tw > w * th:  # too tall
        nh = max(1, round(w * th / tw))
        y0 = (h - nh) // 2
        return img[y0:y0 + nh]
    nw = max(1, round(h * tw / th))
    x0 = (w - nw) // 2
    return img[:, x0:x0 + nw]


def resize(img: np.ndarray, size: tuple[int, int], *, keep_aspect: bool = False) -> np.ndarray:
    """Resize ``img`` to ``size`` = (height, width).

    Area interpolation when shrinking (no aliasing), bilinear when enlarging. With
    ``keep_aspect`` the centre is cropped to the target aspect first, so nothing is stretched.
    """
    img = _check_image(img)
    th, tw = int(size[0]), int(size[1])
    if th < 1 or tw < 1:
        raise ValueError(f'size: expected positive (height, width), got {size}')
    if keep_aspect:
        img = center_crop_to_aspect(img, (th, tw))
    h, w = img.shape[:2]
    if (h, w) == (th, tw):
        return np.ascontiguousarray(img)
    interp = cv2.INTER_AREA if th * tw < h * w else cv2.INTER_LINEAR
    out = cv2.resize(np.ascontiguousarray(img), (tw, th), interpolation=interp)
    if out.ndim == 2:
        out = out[:, :, None]
    return out


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W, 3)`` or ``(N, H, W, 3)`` RGB -> float32 ``(N, 3, H, W)`` in [-1, 1]."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[3] != 3:
        raise ValueError(f'images: expected (N, H, W, 3) RGB, got shape {arr.shape}')
    if arr.dtype != np.uint8:
        raise ValueError(f'images: expected dtype uint8, got {arr.dtype}')
    out = arr.transpose(0, 3, 1, 2).astype(np.float32)
    out *= 1.0 / 127.5
    out -= 1.0
    return np.ascontiguousarray(out)


def denormalize(tensor: np.ndarray) -> np.ndarray:
    """Float ``(N, 3, H, W)`` or ``(3, H, W)`` in [-1, 1] -> uint8 ``(N, H, W, 3)`` RGB.

    Inverse of :func:`normalize` up to rounding (exact on uint8 inputs).
    """
    arr = np.asarray(tensor, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1] != 3:
        raise ValueError(f'tensor: expected (N, 3, H, W), got shape {arr.shape}')
    out = np.rint((np.clip(arr, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    return np.ascontiguousarray(out.transpose(0, 2, 3, 1))


@dataclass(frozen=True)
class Preprocessor:
    """Camera image of any size/colour order -> the network's normalised input, and back.

    ``size`` is the model card's input size (h, w); ``keep_aspect`` crops the centre to that
    aspect instead of stretching.
    """

    size: tuple[int, int]
    keep_aspect: bool = True

    def image(self, img: np.ndarray, color_order: str = 'rgb') -> np.ndarray:
        """Any camera image -> uint8 RGB ``(h, w, 3)`` at the model's size."""
        return resize(to_rgb(img, color_order), self.size, keep_aspect=self.keep_aspect)

    def __call__(self, images: np.ndarray | Sequence[np.ndarray],
                 color_order: str = 'rgb') -> np.ndarray:
        """One image or a sequence of images -> float32 ``(N, 3, h, w)`` in [-1, 1]."""
        if isinstance(images, np.ndarray) and images.ndim in (2, 3):
            images = [images]
        return normalize(np.stack([self.image(im, color_order) for im in images]))

    def postprocess(self, tensor: np.ndarray,
                    output_size: tuple[int, int] | None = None) -> np.ndarray:
        """Network output -> uint8 RGB ``(N, H, W, 3)``, optionally resized to ``output_size``."""
        out = denormalize(tensor)
        if output_size is None or tuple(output_size) == out.shape[1:3]:
            return out
        return np.stack([resize(im, output_size) for im in out])

    def card(self) -> dict:
        """The preprocessing fields recorded in a model card."""
        d = asdict(self)
        d['size'] = list(self.size)
        return {**d, 'normalization': NORMALIZATION}
