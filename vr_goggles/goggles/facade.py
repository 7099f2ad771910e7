"""The goggles: camera image in, simulator-styled image out. One facade for node, replay, demo.

``Goggles`` ties together a weights file (via :mod:`vr_goggles.weights`), the shared
preprocessing (:class:`vr_goggles.image.preprocess.Preprocessor` at the card's input size) and an
inference engine (:mod:`vr_goggles.engines`), so every caller translates images identically
whichever backend runs underneath. It owns every step between the decoded camera frame and the
image to publish (:meth:`Goggles.frame`): translation, the floor prior or semantic paint at the
robot's odometry pose (:mod:`vr_goggles.goggles.floor_prior`), and the output size; a node is
then codec -> ``Goggles.frame`` -> codec.
"""

from __future__ import annotations

from collections.abc import Sequence
import os
import re
from typing import Any

import numpy as np

from vr_goggles.engines import Engine, ModelSource, create_engine, source_from_weights
from vr_goggles.engines.base import state_dict_sha256
from vr_goggles.image.preprocess import Preprocessor, resize, to_rgb

DEFAULT_MODEL = 'goggles_vr_goggles'
#: Architectures that map an RGB image to an RGB image in [-1, 1].
GENERATOR_ARCHITECTURES = ('ResnetGenerator',)
#: ``output_size``: the model's size, the camera frame's size, or ``(height, width)``.
OutputSize = str | tuple[int, int]
Pose = tuple[float, float, float]
_SIZE_RE = re.compile(r'^\s*(\d+)\s*[xX]\s*(\d+)\s*$')


class Goggles:
    """Translate real camera images into the look of the simulator the policy was trained in."""

    def __init__(self, engine: Engine | None, card: Any, preprocessor: Preprocessor,
                 floor_prior: Any = None) -> None:
        self.engine = engine
        self.card = card
        self.preprocessor = preprocessor
        #: :class:`vr_goggles.goggles.floor_prior.FloorPrior` applied by :meth:`frame`, or None
        self.floor_prior = floor_prior
        if floor_prior is not None and floor_prior.renderer.valid.shape != preprocessor.size:
            raise ValueError(f'floor prior size {floor_prior.renderer.valid.shape} != goggles '
                             f'size {preprocessor.size}')

    @classmethod
    def paint_only(cls, floor_prior: Any, keep_aspect: bool = True) -> Goggles:
        """The semantic goggles: no generator, every pixel rendered or painted by the prior.

        The camera frame is only resized (the one preprocessing, centre crop) to the prior's
        size; pixels the segmenter calls void keep the camera's.
        """
        size = tuple(int(v) for v in floor_prior.renderer.valid.shape)
        return cls(None, None, Preprocessor(size=size, keep_aspect=keep_aspect), floor_prior)

    def with_floor_prior(self, floor_prior: Any) -> Goggles:
        """The same engine and preprocessing, followed by ``floor_prior`` in :meth:`frame`."""
        return type(self)(self.engine, self.card, self.preprocessor, floor_prior)

    @classmethod
    def from_model(cls, model: str | os.PathLike = DEFAULT_MODEL, engine: str = 'auto',
                   device: str = 'cpu', precision: str = 'fp32',
                   engine_file_path: str | os.PathLike | None = None,
                   force_engine_update: bool = False, compile: bool = False,
                   keep_aspect: bool = True) -> Goggles:
        """Load a shipped model name or weights path and build ``engine`` for it.

        ``engine``: ``auto`` | ``tensorrt`` | ``torch`` | ``onnxruntime``. ``device``: ``cpu``,
        ``cuda[:N]`` or ``auto`` (with ``engine='auto'``, ``cpu`` keeps the choice on CPU and
        ``auto`` lets it take TensorRT or CUDA when present). A bad weights file raises
        :class:`vr_goggles.weights.WeightsError` naming the file.
        """
        source, card = source_from_weights(model, engine=engine)
        return cls.from_source(source, card, engine=engine, device=device, precision=precision,
                               engine_file_path=engine_file_path,
                               force_engine_update=force_engine_update, compile=compile,
                               keep_aspect=keep_aspect)

    @classmethod
    def from_module(cls, module: Any, card: Any, **kwargs: Any) -> Goggles:
        """Wrap an in-memory generator (e.g. during training or random-init benchmarks)."""
        h, w = card.input_size
        source = ModelSource(module, (int(h), int(w)), card.sha256 or state_dict_sha256(module),
                             getattr(card, 'name', 'model') or 'model')
        return cls.from_source(source, card, **kwargs)

    @classmethod
    def from_source(cls, source: ModelSource, card: Any, *, engine: str = 'auto',
                    device: str = 'cpu', precision: str = 'fp32',
                    engine_file_path: str | os.PathLike | None = None,
                    force_engine_update: bool = False, compile: bool = False,
                    keep_aspect: bool = True) -> Goggles:
        """Build from a :class:`ModelSource` (shared by the other constructors)."""
        if card.architecture not in GENERATOR_ARCHITECTURES:
            raise ValueError(f'model {card.name!r} is a {card.architecture}, not an image '
                             f'generator ({", ".join(GENERATOR_ARCHITECTURES)})')
        if engine != 'auto' and device == 'auto':
            device = _default_device()
        eng = create_engine(engine, source, device=device, precision=precision,
                            compile=compile, engine_file_path=engine_file_path,
                            force_engine_update=force_engine_update)
        pre = Preprocessor(size=source.input_size, keep_aspect=keep_aspect)
        return cls(eng, card, pre)

    @property
    def input_size(self) -> tuple[int, int]:
        """The model's (height, width); outputs have this size."""
        return self.preprocessor.size

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Normalised float32 ``(N, 3, h, w)`` -> same; splits/pads for static-batch engines."""
        bs = getattr(self.engine, 'batch_size', None)
        n = batch.shape[0]
        if not bs or bs == n:
            return self.engine(batch)
        outs = []
        for i in range(0, n, bs):
            chunk = batch[i:i + bs]
            k = chunk.shape[0]
            if k < bs:  # pad the tail to the engine's static batch
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], bs - k, axis=0)])
            outs.append(self.engine(chunk)[:k])
        return np.concatenate(outs)

    def __call__(self, image: np.ndarray, color_order: str = 'rgb') -> np.ndarray:
        """One camera image (any size, ``color_order``) -> uint8 RGB ``(h, w, 3)`` sim-style.

        The translation alone (no floor prior); :meth:`frame` is the whole path.
        """
        if self.engine is None:
            return self.preprocessor.image(image, color_order)
        return self.translate_batch([image], color_order)[0]

    def frame(self, image: np.ndarray, *, pose: Pose | None = None,
              output_size: OutputSize = 'model', color_order: str = 'rgb') -> np.ndarray:
        """A decoded camera frame -> the uint8 RGB image to publish.

        Translation, then the floor prior (and its paint) at ``pose`` = ``(x, y, yaw)`` from
        odometry when the goggles have one and a pose is known (without a pose the frame goes
        out translated only: :attr:`needs_pose` tells the caller to say so), then a resize to
        ``output_size`` (``'model'``, ``'input'`` = the camera frame's size, or ``(h, w)``).
        """
        rgb = to_rgb(image, color_order)  # the floor prior's segmenter reads RGB too
        out = self(rgb)
        if self.floor_prior is not None and pose is not None:
            out = self.floor_prior(rgb, out, pose)
        hw = target_size(output_size, image.shape[:2], out.shape[:2])
        return out if tuple(out.shape[:2]) == hw else resize(out, hw)

    @property
    def needs_pose(self) -> bool:
        """True when :meth:`frame` uses the odometry pose (a floor prior is attached)."""
        return self.floor_prior is not None

    def translate_batch(self, images: Sequence[np.ndarray] | np.ndarray,
                        color_order: str = 'rgb') -> np.ndarray:
        """Several images -> uint8 RGB ``(N, h, w, 3)`` at the model size."""
        if len(images) == 0:
            h, w = self.input_size
            return np.zeros((0, h, w, 3), np.uint8)
        x = self.preprocessor(images, color_order)
        return self.preprocessor.postprocess(self.run(x))

    def __repr__(self) -> str:
        if self.engine is None:
            return f'Goggles(paint_only, input_size={self.input_size})'
        return (f'Goggles(model={self.card.name!r}, engine={self.engine.name!r}, '
                f'device={self.engine.device!r}, precision={self.engine.precision!r}, '
                f'input_size={self.input_size}, floor_prior={self.floor_prior is not None})')


def parse_output_size(value: str) -> OutputSize:
    """``'model'`` | ``'input'`` | ``'WxH'`` -> ``'model'``, ``'input'`` or ``(h, w)``."""
    text = str(value).strip().lower()
    if text in ('model', 'input'):
        return text
    m = _SIZE_RE.match(text)
    if m is None:
        raise ValueError(f"output_size: expected 'model', 'input' or 'WxH' (e.g. '128x96'), "
                         f'got {value!r}')
    w, h = int(m.group(1)), int(m.group(2))
    if not (1 <= w <= 16384 and 1 <= h <= 16384):
        raise ValueError(f'output_size: width and height must be in [1, 16384], got {value!r}')
    return h, w


def target_size(output_size: OutputSize, input_hw: tuple[int, int],
                model_hw: tuple[int, int]) -> tuple[int, int]:
    """The (h, w) to publish, given the parsed ``output_size`` and the two candidate sizes."""
    if output_size == 'model':
        return tuple(model_hw)
    if output_size == 'input':
        return tuple(input_hw)
    return tuple(output_size)


def _default_device() -> str:
    try:
        import torch
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    except ImportError:
        return 'cpu'
