"""Inference engines (ROS-free): torch, onnxruntime, TensorRT, and ``auto`` selection.

All engines share one contract (:class:`Engine`): float32 ``(N, 3, H, W)`` in [-1, 1] in, the
same layout out, as produced by :mod:`vr_goggles.image.preprocess`. Backend libraries are imported
lazily, so importing this package costs nothing and a missing backend is a clean
:class:`EngineUnavailable` rather than an import error.
"""

from vr_goggles.engines.base import (
    PRECISIONS,
    Engine,
    EngineFileError,
    EngineParityError,
    EngineUnavailable,
    cache_dir,
)
from vr_goggles.engines.factory import (
    BACKENDS,
    ModelSource,
    Variant,
    create_engine,
    select_engine,
    source_from_weights,
)

__all__ = ['BACKENDS', 'PRECISIONS', 'Engine', 'EngineFileError', 'EngineParityError',
           'EngineUnavailable', 'ModelSource', 'Variant', 'cache_dir', 'create_engine',
           'select_engine', 'source_from_weights']
