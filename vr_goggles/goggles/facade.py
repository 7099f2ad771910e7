"""The goggles: camera image in, simulator-styled image out. One facade for node, replay, demo.

``Goggles`` ties together a weights file (via :mod:`vr_goggles.weights`), the shared
preprocessing (:class:`vr_goggles.image.preprocess.Preprocessor` at the card's input size) and an
inference engine (:mod:`vr_goggles.engines`), so every caller translates images identically
whichever backend runs underneath.
"""

from __future__ import annotations

from collections.abc import Sequence
import os
from typing import Any

import numpy as np

from vr_goggles.engines import Engine, ModelSource, create_engine, source_from_weights
from vr_goggles.engines.base import state_dict_sha256
from vr_goggles.image.preprocess import Preprocessor

DEFAULT_MODEL = 'goggles_vr_goggles'
#: Architectures that map an RGB image to an RGB image in [-1, 1].
GENERATOR_ARCHITECTURES = ('ResnetGenerator',)


class Goggles:
    """Translate real camera images into the look of the simulator the policy was trained in."""

    def __init__(self, engine: Engine, card: Any, preprocessor: Preprocessor):
        self.engine = engine
        self.card = card
        self.preprocessor = preprocessor

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
        source, card = source_from_weights(model)
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
        """One camera image (any size, ``color_order``) -> uint8 RGB ``(h, w, 3)`` sim-style."""
        return self.translate_batch([image], color_order)[0]

    def translate_batch(self, images: Sequence[np.ndarray] | np.ndarray,
                        color_order: str = 'rgb') -> np.ndarray:
        """Several images -> uint8 RGB ``(N, h, w, 3)`` at the model size."""
        if len(images) == 0:
            h, w = self.input_size
            return np.zeros((0, h, w, 3), np.uint8)
        x = self.preprocessor(images, color_order)
        return self.preprocessor.postprocess(self.run(x))

    def __repr__(self) -> str:
        return (f'Goggles(model={self.card.name!r}, engine={self.engine.name!r}, '
                f'device={self.engine.device!r}, precision={self.engine.precision!r}, '
                f'input_size={self.input_size})')


def _default_device() -> str:
    try:
        import torch
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    except ImportError:
        return 'cpu'
