"""TensorRT backend via torch-tensorrt's ahead-of-time dynamo path, with an engine-file cache.

Build: ``torch_tensorrt.compile(model, ir='dynamo', inputs=[torch_tensorrt.Input(shape,
dtype)], enabled_precisions={dtype}, require_full_compilation=True)`` at the model card's static
input size, then ``torch_tensorrt.save(trt_gm, path, arg_inputs=[example])`` (an ExportedProgram
holding the serialized TensorRT engine). Load: ``import torch_tensorrt`` (registers the
``tensorrt::execute_engine`` op) then ``torch.export.load(path).module()``.

Building takes seconds to minutes, so the engine is written to ``engine_file_path`` with a JSON
sidecar (``<engine>.json``) recording what it was built from: weights SHA-256, input shape,
precision, GPU name and the TensorRT / torch / torch-tensorrt versions. A TensorRT engine is only
valid for the exact GPU model and library versions that built it, so it is reused only when every
field matches and rebuilt otherwise, or always with ``force_engine_update`` (names as in Isaac
ROS ``isaac_ros_tensor_rt``).

None of this can run without an NVIDIA GPU and the TensorRT libraries; the import failure is
turned into :class:`EngineUnavailable`, which ``auto`` reports and skips.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
import re
import tempfile
from typing import Any

import numpy as np

from vr_goggles.engines.base import (
    EngineFileError,
    EngineUnavailable,
    cache_dir,
    check_batch,
    check_precision,
)

log = logging.getLogger(__name__)

#: Sidecar fields that must all match for a saved engine to be reused.
METADATA_KEYS = ('weights_sha256', 'input_shape', 'precision', 'gpu', 'tensorrt', 'torch',
                 'torch_tensorrt')
METADATA_VERSION = 1


def import_torch_tensorrt():
    """``import torch_tensorrt`` or :class:`EngineUnavailable` carrying the real error.

    Besides ``ModuleNotFoundError``, a half-installed stack fails with ``OSError``/``ImportError``
    such as ``Could not find libnvinfer.so.11``; the message is passed through verbatim.
    """
    try:
        import torch_tensorrt
    except Exception as e:  # ImportError, OSError (missing libnvinfer), RuntimeError
        raise EngineUnavailable('tensorrt', f'import torch_tensorrt failed: {e}') from None
    return torch_tensorrt


def _major_minor(version: str) -> tuple[int, int] | None:
    m = re.match(r'\s*(\d+)\.(\d+)', str(version))
    return (int(m.group(1)), int(m.group(2))) if m else None


def version_pair_problem(torch_version: str, torch_tensorrt_version: str) -> str | None:
    """Explain why these torch and torch-tensorrt versions cannot work together, or ``None``.

    torch-tensorrt ships C++ ops compiled against one torch release; its version tracks torch's
    (torch-tensorrt 2.13.x <-> torch 2.13.x), and a different major.minor fails at import or,
    worse, at run time with undefined symbols.
    """
    t, trt = _major_minor(torch_version), _major_minor(torch_tensorrt_version)
    if t is None or trt is None:
        return (f'cannot parse versions torch {torch_version!r} / torch-tensorrt '
                f'{torch_tensorrt_version!r}')
    if t == trt:
        return None
    return (f'torch-tensorrt {torch_tensorrt_version} is built for torch {trt[0]}.{trt[1]}.x but '
            f'torch {torch_version} is installed; torch-tensorrt must have the same major.minor '
            f'as torch (its C++ runtime is compiled against one torch ABI). Install '
            f'torch-tensorrt=={t[0]}.{t[1]}.* or torch=={trt[0]}.{trt[1]}.*')


def build_metadata(*, weights_sha256: str, input_shape: tuple[int, ...], precision: str,
                   gpu: str, versions: dict[str, str]) -> dict[str, Any]:
    """The sidecar written next to an engine file (and compared before reusing it)."""
    return {'metadata_version': METADATA_VERSION, 'weights_sha256': weights_sha256,
            'input_shape': [int(s) for s in input_shape], 'precision': precision, 'gpu': gpu,
            'tensorrt': versions.get('tensorrt', ''), 'torch': versions.get('torch', ''),
            'torch_tensorrt': versions.get('torch_tensorrt', '')}


def metadata_path(engine_path: str | os.PathLike) -> Path:
    """``model.ep`` -> ``model.ep.json``."""
    p = Path(engine_path)
    return p.with_name(p.name + '.json')


def decide_engine_action(engine_path: str | os.PathLike, expected: dict[str, Any], *,
                         force_engine_update: bool = False) -> tuple[str, str]:
    """Return ``('reuse' | 'build', reason)`` for a saved engine and the expected metadata.

    Pure file logic (no TensorRT needed), so it is unit-tested on machines without a GPU.
    """
    engine_path = Path(engine_path)
    meta_path = metadata_path(engine_path)
    if force_engine_update:
        return 'build', 'force_engine_update is set'
    if not engine_path.exists():
        return 'build', f'no engine file at {engine_path}'
    if not meta_path.exists():
        return 'build', f'no metadata sidecar {meta_path} (cannot tell what built the engine)'
    try:
        found = json.loads(meta_path.read_text(encoding='utf-8'))
        if not isinstance(found, dict):
            raise ValueError(f'a JSON {type(found).__name__}, expected an object')
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return 'build', f'metadata sidecar {meta_path} unreadable: {e}'
    diffs = [f'{k}: engine {found.get(k)!r} != wanted {expected.get(k)!r}'
             for k in METADATA_KEYS if found.get(k) != expected.get(k)]
    if diffs:
        return 'build', 'engine is stale (' + '; '.join(diffs) + ')'
    return 'reuse', f'metadata of {engine_path} matches'


def default_engine_path(stem: str, weights_sha256: str, input_shape: tuple[int, ...],
                        precision: str) -> Path:
    """Cache location used when no ``engine_file_path`` is given."""
    n, _, h, w = input_shape
    return (cache_dir() / 'tensorrt'
            / f'{stem}-{weights_sha256[:12]}-b{n}-{h}x{w}-{precision}.ep')


def current_versions(torch_tensorrt: Any) -> dict[str, str]:
    """Versions that make a TensorRT engine (in)valid."""
    import torch

    try:
        import tensorrt
        trt_version = tensorrt.__version__
    except Exception as e:  # the bindings may be missing while torch-tensorrt imports
        trt_version = f'unknown ({type(e).__name__})'
    return {'tensorrt': trt_version, 'torch': torch.__version__,
            'torch_tensorrt': getattr(torch_tensorrt, '__version__', 'unknown')}


def _check_fully_compiled(trt_gm: Any) -> None:
    """Fail if any part of the graph was left to PyTorch.

    ``require_full_compilation=True`` asks for this; the dynamo partitioner names TensorRT
    submodules ``_run_on_acc_*`` and PyTorch fallbacks ``_run_on_gpu_*``, so check explicitly.
    """
    names = [n for n, _ in getattr(trt_gm, 'named_children', lambda: [])()]
    fallback = [n for n in names if n.startswith('_run_on_gpu')]
    if fallback:
        raise RuntimeError(f'TensorRT left {len(fallback)} subgraph(s) to PyTorch ({fallback}); '
                           'the generator should compile fully: check the TensorRT logs')


class TensorRTEngine:
    """A static-shape TensorRT engine built (or loaded) from a torch generator."""

    def __init__(self, module: Any, *, weights_sha256: str, input_size: tuple[int, int],
                 batch_size: int = 1, precision: str = 'fp16', device: str = 'cuda',
                 engine_file_path: str | os.PathLike | None = None,
                 force_engine_update: bool = False, stem: str = 'model'):
        torch_tensorrt = import_torch_tensorrt()
        import torch

        problem = version_pair_problem(torch.__version__,
                                       getattr(torch_tensorrt, '__version__', '?'))
        if problem:
            raise EngineUnavailable('tensorrt', problem)
        if not torch.cuda.is_available():
            raise EngineUnavailable('tensorrt', 'torch.cuda.is_available() is False (TensorRT '
                                                'needs an NVIDIA GPU)')
        if not str(device).startswith('cuda'):
            raise EngineUnavailable('tensorrt', f'device {device!r}: TensorRT runs on cuda only')
        self.precision = check_precision(precision)
        self._dtype = {'fp32': torch.float32, 'fp16': torch.float16,
                       'bf16': torch.bfloat16}[self.precision]
        self._torch = torch
        self._dev = torch.device(device)
        self.device = str(self._dev)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.batch_size = int(batch_size)
        self.shape = (self.batch_size, 3, *self.input_size)
        self.name = 'tensorrt'
        gpu = torch.cuda.get_device_name(self._dev)
        self.metadata = build_metadata(weights_sha256=weights_sha256, input_shape=self.shape,
                                       precision=self.precision, gpu=gpu,
                                       versions=current_versions(torch_tensorrt))
        self.path = Path(engine_file_path) if engine_file_path else default_engine_path(
            stem, weights_sha256, self.shape, self.precision)
        action, reason = decide_engine_action(self.path, self.metadata,
                                              force_engine_update=force_engine_update)
        if action == 'reuse':
            log.info('tensorrt: loading %s (%s)', self.path, reason)
            self._fn = self._load(self.path)
        else:
            log.info('tensorrt: building %s, %s (%s)', self.path, self.precision, reason)
            self._fn = self._build(torch_tensorrt, module)

    def _build(self, torch_tensorrt: Any, module: Any) -> Any:
        torch = self._torch
        model = copy.deepcopy(module).eval().to(self._dev)
        if self._dtype != torch.float32:
            # torch-tensorrt >= 2.12 builds strongly typed networks (use_explicit_typing) and
            # its dynamo path ignores enabled_precisions, so the low precision must be in the
            # model and input dtypes themselves; older releases honour enabled_precisions too.
            model = model.to(self._dtype)
        inputs = [torch_tensorrt.Input(self.shape, dtype=self._dtype)]
        with torch.no_grad():
            trt_gm = torch_tensorrt.compile(model, ir='dynamo', inputs=inputs,
                                            enabled_precisions={self._dtype},
                                            require_full_compilation=True, min_block_size=1)
        _check_fully_compiled(trt_gm)
        example = torch.zeros(self.shape, dtype=self._dtype, device=self._dev)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix='.' + self.path.name,
                                   suffix='.ep')
        os.close(fd)
        try:
            try:
                torch_tensorrt.save(trt_gm, tmp, output_format='exported_program',
                                    arg_inputs=[example])
            except TypeError:  # torch-tensorrt < 2.5 names it ``inputs``
                torch_tensorrt.save(trt_gm, tmp, output_format='exported_program',
                                    inputs=[example])
            # Drop the old sidecar first: a crash between the two writes must leave an engine
            # without metadata (rebuilt next time), never new bytes under old metadata.
            metadata_path(self.path).unlink(missing_ok=True)
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        from vr_goggles.weights import atomic_write_bytes
        atomic_write_bytes(metadata_path(self.path),
                           (json.dumps(self.metadata, indent=2) + '\n').encode())
        return trt_gm

    def _load(self, path: Path) -> Any:
        try:
            return self._torch.export.load(str(path)).module()
        except Exception as e:
            raise EngineFileError(path, f'cannot load TensorRT program ({type(e).__name__}: '
                                        f'{str(e)[:300]}); delete it or set '
                                        'force_engine_update to rebuild') from None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """float32 ``(B, 3, H, W)`` at the static build shape -> float32, same shape."""
        torch = self._torch
        arr = check_batch(batch, static_shape=self.shape)
        with torch.no_grad():
            x = torch.from_numpy(arr).to(self._dev, dtype=self._dtype)
            y = self._fn(x)
            if isinstance(y, (tuple, list)):
                y = y[0]
            out = y.float().cpu().numpy()
        return np.ascontiguousarray(out)
