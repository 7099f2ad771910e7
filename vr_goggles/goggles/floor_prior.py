"""Floor prior: repaint the floor of a goggled frame with the simulator's floor, in perspective.

Why: the sim policy steers by the black/white floor tiles flowing under its camera as it moves.
No unpaired generator paints them from a real floor (it has no tiles, and one frame does not
say how the camera moved), and that is the largest single cost of the goggles: with the true
sim floor pasted into the floor pixels, ``policy_sim`` drives 63 % instead of 26 %
(``docs/results/translator_ceiling.json``). This module renders that floor from what a robot knows
anyway: the camera's calibration (height, pitch, field of view), its odometry, and where the
floor is, from a segmenter trained on randomised sim looks (``segmenter_dr``). The phase of
the tiles does not matter; their motion does: a floor that stays put while the robot drives
(no odometry) stops the policy (``docs/results/floor_prior.json``).

Poses are ``(x, y, yaw)`` in a ground frame in metres and radians, REP 103 style: ``x``
forward at yaw 0, ``y`` to the left, yaw counter-clockwise (``nav_msgs/Odometry``'s pose).
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any

import numpy as np

from vr_goggles.goggles.semantic_paint import paint, paint_table


@dataclass(frozen=True)
class CameraGeometry:
    """A pinhole camera on a ground robot: square image, no roll."""

    fov_y_deg: float = 60.0   #: vertical (= horizontal, square image) field of view
    pitch_deg: float = -8.0   #: negative looks down
    height_m: float = 0.9     #: optical centre above the floor

    def __post_init__(self) -> None:
        if not 0.0 < self.fov_y_deg < 180.0:
            raise ValueError(f'fov_y_deg: expected (0, 180), got {self.fov_y_deg}')
        if not -90.0 < self.pitch_deg < 90.0:
            raise ValueError(f'pitch_deg: expected (-90, 90), got {self.pitch_deg}')
        if self.height_m <= 0.0:
            raise ValueError(f'height_m: expected > 0, got {self.height_m}')

    def horizon_row(self, size: int) -> float:
        """Image row (from the top, continuous) where the floor plane meets the horizon."""
        tf = math.tan(math.radians(self.fov_y_deg) / 2)
        # ray up-component zero: sin(p) + y tf cos(p) = 0 with y = 1 - 2 (row + 0.5) / size
        y = -math.tan(math.radians(self.pitch_deg)) / tf
        return (1.0 - y) * size / 2.0 - 0.5


#: The simulator's robot camera (``sim_training.envs.chair_nav`` uses these values).
SIM_CAMERA = CameraGeometry()


@dataclass(frozen=True)
class FloorLook:
    """The sim floor texture, procedurally: square black and white tiles with grout lines."""

    square_m: float = 0.25    #: tile edge (miniworld's floor_tiles_bw: 4 x 4 tiles per metre)
    dark: float = 46.0        #: mean grey level of the dark tiles
    light: float = 220.0      #: of the light tiles
    grout: float = 90.0       #: of the grout lines
    grout_frac: float = 0.0625  #: grout width as a share of the tile edge


class FloorRenderer:
    """Renders an endless tiled floor as the camera sees it, anti-aliased by supersampling.

    At the simulator's pose (``info['agent_pos']``, ``info['agent_dir']``) it reproduces the
    sim floor pixel for pixel (mean error about 13 of 255: lighting and texture detail).

    The ground offsets of every sub-pixel are computed once; a frame is then a rotation, a
    translation and a tile lookup. Pixels above the horizon are not floor (``valid`` False).
    """

    def __init__(self, size: int = 64, camera: CameraGeometry = SIM_CAMERA,
                 look: FloorLook = FloorLook(), supersample: int = 4) -> None:
        if size < 1 or supersample < 1:
            raise ValueError(f'size and supersample must be >= 1, got {size}, {supersample}')
        self.size, self.camera, self.look, self.ss = size, camera, look, supersample
        n = size * supersample
        c = (np.arange(n) + 0.5) / n * 2.0 - 1.0
        x, y = np.meshgrid(c, -c)  # x to the right, y up; row 0 is the top
        tf = math.tan(math.radians(camera.fov_y_deg) / 2.0)
        p = math.radians(camera.pitch_deg)
        ahead = math.cos(p) - y * tf * math.sin(p)   # ray's horizontal forward component
        up = math.sin(p) + y * tf * math.cos(p)
        hit = up < -1e-9
        t = np.where(hit, camera.height_m / np.where(hit, -up, 1.0), 0.0)
        self._ahead = (t * ahead).astype(np.float64)  # metres ahead of the camera
        self._left = (-t * x * tf).astype(np.float64)  # metres to its left
        self._hit = hit
        #: pixels whose every sub-pixel sees the floor
        self.valid = hit.reshape(size, supersample, size, supersample).all(axis=(1, 3))

    def render(self, pose: tuple[float, float, float]) -> np.ndarray:
        """uint8 RGB ``(size, size, 3)`` of the floor from camera pose ``(x, y, yaw)``.

        ``(x, y)`` is the camera's point on the ground (the robot's odometry plus the camera's
        mounting offset), ``yaw`` its heading.
        """
        px, py, yaw = (float(v) for v in pose)
        c, s = math.cos(yaw), math.sin(yaw)
        gx = px + self._ahead * c - self._left * s
        gy = py + self._ahead * s + self._left * c
        lk = self.look
        u, v = gx / lk.square_m, gy / lk.square_m
        iu, iv = np.floor(u), np.floor(v)
        grey = np.where((iu + iv) % 2 == 0, lk.dark, lk.light)  # the simulator's phase
        fu, fv = u - iu, v - iv
        g = lk.grout_frac / 2.0
        on_grout = (fu < g) | (fu > 1 - g) | (fv < g) | (fv > 1 - g)
        grey = np.where(on_grout, lk.grout, grey)
        grey = np.where(self._hit, grey, lk.grout)
        k, ss = self.size, self.ss
        grey = grey.reshape(k, ss, k, ss).mean(axis=(1, 3))
        return np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=2)


class FloorPrior:
    """Paste the rendered sim floor into the floor pixels of a goggled frame.

    ``segment(frames) -> (N, H, W) class ids`` finds the floor on the *camera* frame (not the
    goggled one: the generator's floor is the very thing being replaced). ``floor_class`` is
    its id of the floor. ``paint`` maps further class ids to a flat RGB filled in where the
    same pass finds them (:mod:`vr_goggles.goggles.semantic_paint`).
    """

    def __init__(self, segment: Any, floor_class: int, renderer: FloorRenderer,
                 paint: dict[int, tuple[int, int, int]] | None = None) -> None:
        self.segment, self.floor_class, self.renderer = segment, int(floor_class), renderer
        self.paint = {int(k): np.asarray(v, np.uint8) for k, v in (paint or {}).items()}
        if self.floor_class in self.paint:
            raise ValueError(f'paint: class {self.floor_class} is the floor, which is rendered')

    def labels(self, camera_frame: np.ndarray) -> np.ndarray:
        """``(H, W)`` class ids of the camera frame at the renderer's size.

        A segmenter working at another size is resampled (nearest pixel centre): its input
        size need not be the goggles'.
        """
        labels = np.asarray(self.segment(camera_frame[None]))[0]
        if labels.ndim != 2:
            raise ValueError(f'segmenter output: expected (1, H, W) class ids, got '
                             f'{(1, *labels.shape)}')
        h, w = self.renderer.valid.shape
        if labels.shape != (h, w):
            rows = ((np.arange(h) + 0.5) * labels.shape[0] / h).astype(int)
            cols = ((np.arange(w) + 0.5) * labels.shape[1] / w).astype(int)
            labels = labels[rows[:, None], cols[None, :]]
        return labels

    def floor_mask(self, camera_frame: np.ndarray, labels: np.ndarray | None = None
                   ) -> np.ndarray:
        """Boolean ``(H, W)``: pixels the segmenter calls floor and the camera can see floor.

        ``labels``: this frame's :meth:`labels`, when the caller already has them.
        """
        if labels is None:
            labels = self.labels(camera_frame)
        return (labels == self.floor_class) & self.renderer.valid

    def __call__(self, camera_frame: np.ndarray, goggled: np.ndarray,
                 pose: tuple[float, float, float]) -> np.ndarray:
        """``goggled`` with its floor pixels replaced by the sim floor seen from ``pose``.

        ``camera_frame`` may have any size (the segmenter takes it to its input size, the
        goggles' crop); ``goggled`` must be at the renderer's size.
        """
        if goggled.shape[:2] != self.renderer.valid.shape:
            raise ValueError(f'goggled frame {goggled.shape[:2]} != renderer size '
                             f'{self.renderer.valid.shape}')
        labels = self.labels(camera_frame)
        mask = self.floor_mask(camera_frame, labels)
        out = goggled.copy()
        out[mask] = self.renderer.render(pose)[mask]
        return paint(out, labels, self.paint)


class SegmenterRunner:
    """A shipped segmenter as ``frames (N, H, W, 3) uint8 RGB -> (N, H, W) class ids``.

    Frames go through the one preprocessing module at the card's input size; the labels come
    back at that size (the floor prior works at the goggles' size, the same 64 x 64).
    """

    def __init__(self, name_or_path: str = 'segmenter_dr') -> None:
        import torch

        from vr_goggles.image.preprocess import Preprocessor
        from vr_goggles.weights import build_module

        self.module, card = build_module(name_or_path)
        self.pre = Preprocessor(tuple(card.input_size))
        self.name = str(name_or_path)
        self._torch = torch

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """``(N, H, W, 3)`` uint8 RGB frames -> ``(N, h, w)`` uint8 class ids."""
        torch = self._torch
        with torch.inference_mode():
            logits = self.module(torch.from_numpy(self.pre(list(frames))))
        return logits.argmax(dim=1).numpy().astype(np.uint8)


def make_floor_prior(segmenter: str = 'segmenter_dr', size: int = 64,
                     camera: CameraGeometry = SIM_CAMERA,
                     paint: tuple[str, ...] = ()) -> FloorPrior:
    """The floor prior for ``camera`` (default the simulator's), with a shipped segmenter.

    ``paint`` names classes of :mod:`vr_goggles.image.semantics` to fill with their
    :data:`~vr_goggles.goggles.semantic_paint.SIM_CLASS_RGB` where ``segmenter`` finds them.
    A segmenter that learned from labelled camera frames (``segmenter_real``) does every
    class: ``segmenter='segmenter_real'``, ``paint=SEMANTIC_PAINT`` (the semantic goggles).
    """
    from vr_goggles.image.semantics import FLOOR

    table = paint_table(paint)
    return FloorPrior(SegmenterRunner(segmenter), FLOOR, FloorRenderer(size, camera), table)


def yaw_from_quaternion(x: float, y: float, z: float, w: float) -> float:
    """Heading (rad, CCW about z) of an orientation quaternion, as odometry reports it."""
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
