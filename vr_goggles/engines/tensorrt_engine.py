"""TensorRT backend via torch-tensorrt's ahead-of-time dynamo path, with an engine-file cache.

Written against torch-tensorrt 2.13 (pairs with torch 2.13 and TensorRT 11); see
docs/engines.md for the documentation each call follows.

Build: ``torch_tensorrt.compile(model, ir='dynamo', inputs=[torch_tensorrt.Input(shape,
dtype)], device=device, require_full_compilation=True, min_block_size=1)`` at the model card's
static input size. The dynamo frontend traces the module with ``torch.export.export(...,
strict=False)`` and builds a strongly typed TensorRT network (the only kind TensorRT 11 has;
2.13 dropped ``enabled_precisions`` and ``use_explicit_typing`` from the dynamo path): the
precision is the model's and the input's dtype, so fp16/bf16 cast both. Save:
``torch_tensorrt.save(trt_gm, path, output_format='exported_program', arg_inputs=[example])``.
Load: ``import torch_tensorrt`` (registers the ``tensorrt::execute_engine`` op) then
``torch.export.load(path).module()``.

Every engine, freshly built or loaded, is compared with the torch module in fp32 on fixed inputs
(:mod:`vr_goggles.engines.parity`); a failing engine is rebuilt once, then refused with the
numbers. Building takes seconds to minutes, so the engine is written to ``engine_file_path``
with a JSON sidecar (``<engine>.json``) recording what it was built from (weights SHA-256,
architecture key, input shape, precision, GPU name, TensorRT / torch / torch-tensorrt versions)
and the parity numbers. A TensorRT engine is only valid for the exact GPU model and library
versions that built it, so it is reused only when every field matches and rebuilt otherwise,
or always with ``force_engine_update`` (names as in Isaac ROS ``isaac_ros_tensor_rt``).

Loading an engine file unpickles it (``torch.export.load``), which can run code. The sidecar
therefore also records the SHA-256 of the engine file as written (``engine_sha256``), and a file
is loaded only when its bytes still have that digest: a mismatch is refused
(:class:`EngineFileError` naming the file and both digests), never loaded and never silently
overwritten; a sidecar without the digest (written before it was recorded) means a rebuild.
This catches a swapped or damaged file, not someone who can rewrite both: engine caches belong
in a folder only the robot's user can write (docs/your_robot.md, "Which files must be trusted").

None of this can run without an NVIDIA GPU and the TensorRT libraries; every reason it cannot
(not installed, version pair, no CUDA, CPU device) is an :class:`EngineUnavailable`, which
``auto`` reports and skips.
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
    make_readable,
    model_key,
)

log = logging.getLogger(__name__)

#: Sidecar fields that must all match for a saved engine to be reused.
METADATA_KEYS = ('weights_sha256', 'model_key', 'input_shape', 'precision', 'gpu', 'tensorrt',
                 'torch', 'torch_tensorrt')
#: 2: adds ``model_key`` and ``parity`` (engines of version 1 are rebuilt and checked).
METADATA_VERSION = 2
#: Distribution names torch-tensorrt is published under (metadata lookups normalise them).
DISTRIBUTION = 'torch_tensorrt'


def installed_version(distribution: str = DISTRIBUTION) -> str | None:
    """Version of an installed distribution from its package metadata, without importing it."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def torch_tensorrt_problem(torch_version: str) -> str | None:
    """Why torch-tensorrt cannot be used with this torch, read from package metadata only.

    A mismatched pair usually fails *inside* ``import torch_tensorrt`` (undefined symbols in its
    C++ ops), so the advice must come before the import is tried.
    """
    version = installed_version()
    t = _major_minor(torch_version)
    want = f'{t[0]}.{t[1]}.*' if t else 'the same major.minor as torch'
    if version is None:
        return (f'torch-tensorrt is not installed (no package metadata); with torch '
                f'{torch_version} install torch-tensorrt=={want} (it pulls the TensorRT '
                'libraries; NVIDIA GPU and driver needed, see docs/engines.md)')
    return version_pair_problem(torch_version, version)


def import_torch_tensorrt():
    """``import torch_tensorrt`` after the metadata checks, or :class:`EngineUnavailable`.

    Besides ``ModuleNotFoundError``, a half-installed stack fails with ``OSError``/``ImportError``
    such as ``Could not find libnvinfer.so.11``; that message is passed through verbatim.
    """
    import torch

    problem = torch_tensorrt_problem(torch.__version__)
    if problem:
        raise EngineUnavailable('tensorrt', problem)
    try:
        import torch_tensorrt
    except Exception as e:  # ImportError, OSError (missing libnvinfer), RuntimeError
        raise EngineUnavailable('tensorrt', f'import torch_tensorrt failed: {e} (torch-tensorrt '
                                            f'{installed_version()} is installed for torch '
                                            f'{torch.__version__})') from None
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
                   gpu: str, versions: dict[str, str], model_key: str = '') -> dict[str, Any]:
    """The sidecar written next to an engine file (and compared before reusing it)."""
    return {'metadata_version': METADATA_VERSION, 'weights_sha256': weights_sha256,
            'model_key': model_key or weights_sha256,
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
    Raises :class:`EngineFileError` when the sidecar matches but the file's SHA-256 does not
    (:func:`verify_engine_file`).
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
    if not found.get('engine_sha256'):
        return 'build', (f'metadata sidecar {meta_path} records no engine_sha256 (written '
                         'before engine files were verified), so the file is not loaded')
    verify_engine_file(engine_path, found['engine_sha256'])
    return 'reuse', f'metadata of {engine_path} matches, SHA-256 verified'


def verify_engine_file(engine_path: str | os.PathLike, expected_sha256: str) -> None:
    """Raise :class:`EngineFileError` unless the file's SHA-256 is the sidecar's.

    Called before the file is unpickled by ``torch.export.load``; no TensorRT needed.
    """
    from vr_goggles.weights import sha256_file

    found = sha256_file(engine_path)
    if found != expected_sha256:
        raise EngineFileError(engine_path, f'SHA-256 {found} differs from {expected_sha256} '
                                           f'recorded in {metadata_path(engine_path)} when it '
                                           'was built: the file was changed or replaced, so it '
                                           'is not loaded (loading unpickles it); delete it or '
                                           'set force_engine_update to rebuild')


def default_engine_path(stem: str, key: str, input_shape: tuple[int, ...],
                        precision: str) -> Path:
    """Cache location used when no ``engine_file_path`` is given (``key``: the model key)."""
    n, _, h, w = input_shape
    return cache_dir() / 'tensorrt' / f'{stem}-{key[:12]}-b{n}-{h}x{w}-{precision}.ep'


def current_versions(torch_tensorrt: Any) -> dict[str, str]:
    """Versions that make a TensorRT engine (in)valid."""
    import torch

    try:
        import tensorrt
        trt_version = tensorrt.__version__
    except Exception as e:  # the bindings may be missing while torch-tensorrt imports
        trt_version = installed_version('tensorrt') or f'unknown ({type(e).__name__})'
    return {'tensorrt': trt_version, 'torch': torch.__version__,
            'torch_tensorrt': getattr(torch_tensorrt, '__version__', 'unknown')}


def compile_kwargs(torch_tensorrt: Any, shape: tuple[int, ...], dtype: Any,
                   device: Any) -> dict[str, Any]:
    """Keyword arguments of ``torch_tensorrt.compile`` for one static-shape engine.

    ``device`` places the traced example inputs and the engine (without it ``cuda:1`` would
    trace on ``cuda:0``). No ``enabled_precisions``: the 2.13 dynamo path ignores it, the
    dtype of the model and of ``Input`` is the precision.
    """
    return {'ir': 'dynamo', 'inputs': [torch_tensorrt.Input(tuple(shape), dtype=dtype)],
            'device': device, 'require_full_compilation': True, 'min_block_size': 1}


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
    """A static-shape TensorRT engine built (or loaded) from a torch generator, parity-checked."""

    def __init__(self, module: Any, *, weights_sha256: str, input_size: tuple[int, int],
                 batch_size: int = 1, precision: str = 'fp16', device: str = 'cuda',
                 engine_file_path: str | os.PathLike | None = None,
                 force_engine_update: bool = False, stem: str = 'model',
                 key: str | None = None):
        if not str(device).startswith('cuda'):
            raise EngineUnavailable('tensorrt', f'device {device!r}: TensorRT runs on NVIDIA '
                                                'GPUs only (use a cuda device)')
        torch_tensorrt = import_torch_tensorrt()
        import torch

        if not torch.cuda.is_available():
            raise EngineUnavailable('tensorrt', 'torch.cuda.is_available() is False (TensorRT '
                                                'needs an NVIDIA GPU)')
        from vr_goggles.engines.parity import checked_engine, parity_inputs

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
        key = key or model_key(weights_sha256, module=module)
        gpu = torch.cuda.get_device_name(self._dev)
        self.metadata = build_metadata(weights_sha256=weights_sha256, input_shape=self.shape,
                                       precision=self.precision, gpu=gpu, model_key=key,
                                       versions=current_versions(torch_tensorrt))
        self.path = Path(engine_file_path) if engine_file_path else default_engine_path(
            stem, key, self.shape, self.precision)
        action, reason = decide_engine_action(self.path, self.metadata,
                                              force_engine_update=force_engine_update)
        log.info('tensorrt: %s %s, %s (%s)', 'loading' if action == 'reuse' else 'building',
                 self.path, self.precision, reason)
        reference = _cpu_reference(module)
        inputs = parity_inputs(self.shape)
        try:
            fn, self.parity, how = checked_engine(
                load=(lambda: self._load(self.path)) if action == 'reuse' else None,
                build=lambda: self._build(torch_tensorrt, module),
                check=lambda f: self._parity(f, reference, inputs), what=str(self.path),
                log=log)
        except Exception:
            # A refused (or unloadable) engine must not be reused at the next start.
            metadata_path(self.path).unlink(missing_ok=True)
            raise
        self._fn = fn
        if how != 'loaded':
            self._save(torch_tensorrt, fn)

    def _parity(self, fn: Any, reference: Any, inputs: list[np.ndarray]) -> dict[str, Any]:
        from vr_goggles.engines.parity import parity_report

        return parity_report(lambda x: self._run(fn, x), reference, inputs, self.precision)

    def _build(self, torch_tensorrt: Any, module: Any) -> Any:
        torch = self._torch
        model = copy.deepcopy(module).eval().to(self._dev)
        if self._dtype != torch.float32:
            model = model.to(self._dtype)  # strongly typed: the precision is in the graph
        kwargs = compile_kwargs(torch_tensorrt, self.shape, self._dtype, self._dev)
        with torch.no_grad():  # traced with fake tensors: see test/test_export_tracing.py
            trt_gm = torch_tensorrt.compile(model, **kwargs)
        _check_fully_compiled(trt_gm)
        return trt_gm

    def _save(self, torch_tensorrt: Any, trt_gm: Any) -> None:
        """Write the program (readable, atomically), then its sidecar with the parity numbers."""
        example = self._torch.zeros(self.shape, dtype=self._dtype, device=self._dev)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix='.' + self.path.name,
                                   suffix='.ep')
        os.close(fd)
        try:
            torch_tensorrt.save(trt_gm, tmp, output_format='exported_program',
                                arg_inputs=[example])
            make_readable(tmp)
            from vr_goggles.weights import sha256_file

            engine_sha256 = sha256_file(tmp)  # what a later start must find before loading
            # Drop the old sidecar first: a crash between the two writes must leave an engine
            # without metadata (rebuilt next time), never new bytes under old metadata.
            metadata_path(self.path).unlink(missing_ok=True)
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        from vr_goggles.weights import atomic_write_bytes
        sidecar = dict(self.metadata, engine_sha256=engine_sha256, parity=self.parity)
        atomic_write_bytes(metadata_path(self.path),
                           (json.dumps(sidecar, indent=2) + '\n').encode())

    def _load(self, path: Path) -> Any:
        try:
            return self._torch.export.load(str(path)).module()
        except Exception as e:
            raise EngineFileError(path, f'cannot load TensorRT program ({type(e).__name__}: '
                                        f'{str(e)[:300]}); delete it or set '
                                        'force_engine_update to rebuild') from None

    def _run(self, fn: Any, arr: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.no_grad():
            x = torch.from_numpy(arr).to(self._dev, dtype=self._dtype)
            y = fn(x)
            if isinstance(y, (tuple, list)):
                y = y[0]
            out = y.float().cpu().numpy()
        return np.ascontiguousarray(out)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """float32 ``(B, 3, H, W)`` at the static build shape -> float32, same shape."""
        return self._run(self._fn, check_batch(batch, static_shape=self.shape))


def _cpu_reference(module: Any):
    """The torch module in float32 on CPU as a numpy callable: the parity reference."""
    import torch

    ref = copy.deepcopy(module).eval().float().cpu()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return ref(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()
    return run
