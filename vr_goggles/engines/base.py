"""The engine contract shared by every backend, plus the errors and cache folder they use.

Every engine takes and returns the network layout of :mod:`vr_goggles.image.preprocess`: float32
``(N, 3, H, W)`` in ``[-1, 1]``. Keeping numpy at the boundary lets the ROS node, replay and the
benchmarks swap backends without knowing whether torch, onnxruntime or TensorRT runs inside.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
import sys
from typing import Any, Protocol, runtime_checkable

import numpy as np

#: Precisions an engine may be asked for (what the arithmetic runs in; I/O stays float32).
PRECISIONS = ('fp32', 'fp16', 'bf16')


class EngineUnavailable(RuntimeError):
    """A backend cannot run here (library missing, no CUDA, version mismatch...).

    ``auto`` treats this as "skip and say why"; an explicitly requested backend turns it into a
    one-line error for the user.
    """

    def __init__(self, backend: str, reason: str):
        self.backend = backend
        self.reason = reason
        super().__init__(f'{backend}: {reason}')


class EngineParityError(RuntimeError):
    """A built or loaded engine does not reproduce torch on the fixed parity inputs.

    ``report`` holds the numbers (max/mean abs difference and the tolerances of the precision).
    """

    def __init__(self, backend: str, reason: str, report: dict[str, Any]):
        self.backend = backend
        self.reason = reason
        self.report = report
        super().__init__(f'{backend}: {reason}')


class EngineFileError(RuntimeError):
    """An engine/ONNX file is corrupt, truncated or built for something else; names the file."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f'{self.path}: {reason}')


@runtime_checkable
class Engine(Protocol):
    """What the goggles need from a backend.

    ``__call__`` maps float32 ``(N, 3, H, W)`` in [-1, 1] to the same layout. ``batch_size`` is
    ``None`` when any batch size works, else the one static batch size the engine was built for
    (callers split/pad); ``input_size`` is the (h, w) the engine was built or tuned for.
    """

    name: str
    device: str
    precision: str
    batch_size: int | None
    input_size: tuple[int, int]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """float32 ``(N, 3, H, W)`` -> float32 ``(N, 3, H, W)``."""
        ...


def check_batch(batch: Any, *, static_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Validate an engine input and return it as a C-contiguous float32 array.

    A wrong layout would otherwise surface as an opaque shape error deep in a backend.
    """
    arr = np.asarray(batch)
    if arr.ndim != 4 or arr.shape[1] != 3:
        raise ValueError(f'engine input: expected float32 (N, 3, H, W), got shape {arr.shape} '
                         '(use vr_goggles.image.preprocess.Preprocessor to build it)')
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f'engine input: expected float32 in [-1, 1], got dtype {arr.dtype}')
    if static_shape is not None and tuple(arr.shape) != tuple(static_shape):
        raise ValueError(f'engine input: this engine was built for the static shape '
                         f'{tuple(static_shape)}, got {tuple(arr.shape)}')
    return np.ascontiguousarray(arr, dtype=np.float32)


def check_precision(precision: str) -> str:
    """Normalise a precision name (``fp32``/``fp16``/``bf16``; also float32, half, bfloat16)."""
    aliases = {'float32': 'fp32', 'float': 'fp32', 'fp32': 'fp32', 'float16': 'fp16',
               'half': 'fp16', 'fp16': 'fp16', 'bfloat16': 'bf16', 'bf16': 'bf16'}
    p = aliases.get(str(precision).lower())
    if p is None:
        raise ValueError(f'precision: expected one of {", ".join(PRECISIONS)}, got {precision!r}')
    return p


def cache_dir() -> Path:
    """Where exported ONNX files, TensorRT engines and ``auto`` timings are cached.

    ``$VR_GOGGLES_CACHE_DIR``, else ``$XDG_CACHE_HOME/vr_goggles``, else ``~/.cache/vr_goggles``.
    """
    env = os.environ.get('VR_GOGGLES_CACHE_DIR')
    if env:
        return Path(env)
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return Path(base) / 'vr_goggles'


def torch_import_error() -> str | None:
    """Why ``import torch`` fails here, or ``None`` when torch is importable (and imports it).

    torch is optional on a robot that runs ONNX Runtime: whoever needs it for a fallback (an
    on-the-fly export, ``auto`` timing torch) asks here first and says what to do instead.
    """
    if 'torch' in sys.modules and sys.modules['torch'] is not None:
        return None
    try:
        import torch  # noqa: F401
    except ImportError as e:
        return f'{type(e).__name__}: {e}'
    return None


def state_dict_sha256(module: Any) -> str:
    """SHA-256 over a module's tensors: a cache key for models that have no weights file."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()


def model_key(weights_sha256: str, architecture: str = '', kwargs: dict[str, Any] | None = None,
              module: Any = None) -> str:
    """SHA-256 naming what an engine or ONNX file was derived from: tensors *and* architecture.

    The tensors alone are not enough: a card that changes ``antialias`` or ``upsample`` can keep
    every tensor (they have no parameters of their own) yet compute something else, and a cache
    keyed on the tensors would hand back the stale engine. Without a card (``architecture``
    empty) the module's printed structure stands in for the architecture and its sizes.
    """
    spec = {'weights_sha256': str(weights_sha256), 'architecture': str(architecture),
            'kwargs': kwargs or {}}
    if not architecture and module is not None:
        spec['architecture'] = type(module).__name__
        spec['structure'] = repr(module)
    text = json.dumps(spec, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def readable_file_mode() -> int:
    """``0o666`` less the process umask (0644 under the usual 022): what ``open()`` creates.

    ``tempfile.mkstemp`` creates 0600 files; an engine or ONNX file written through one and
    renamed into place would stay unreadable to an Isaac ROS container or another user.
    """
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def make_readable(path: str | os.PathLike) -> None:
    """Give a freshly written temp file the mode a plain ``open()`` would have given it."""
    os.chmod(path, readable_file_mode())
