"""Build an engine by name, and the ``auto`` choice: TensorRT -> torch CUDA -> fastest CPU.

``auto`` on CPU times the candidate backends in-process at the card's input size (a few calls
each, well under a second for the shipped generator) and caches the winner per weights hash,
input size, precision, thread count, CPU model and library versions, so later starts pay nothing.
``torch.compile`` is a candidate only when ``compile=True``: its tens of seconds of compile time
must be an explicit choice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import json
import logging
import os
from pathlib import Path
import platform
from typing import Any

import numpy as np

from vr_goggles.engines.base import (
    Engine,
    EngineUnavailable,
    cache_dir,
    check_precision,
    model_key,
    torch_import_error,
)

log = logging.getLogger('vr_goggles.engines')

#: Backend names accepted by :func:`create_engine` (``auto`` picks among them).
BACKENDS = ('auto', 'tensorrt', 'torch', 'onnxruntime')


class ModelSource:
    """A generator or actor plus what engines need to cache derived artefacts for it.

    ``architecture`` and ``kwargs`` come from the model card; with them :attr:`key` (what the
    ONNX, TensorRT and ``auto`` caches are keyed on) changes when the card changes the network
    while the tensors stay the same. Without them the module's structure stands in.

    ``module`` may be given as ``loader`` instead: a callable that builds it on first use. The
    ONNX Runtime engine then runs from an ONNX file (beside the weights or cached) without ever
    building the torch module, so a robot without torch loads nothing of it.
    ``weights_path`` is the ``.safetensors`` file, where an ONNX export beside it is looked for.
    """

    def __init__(self, module: Any, input_size: tuple[int, int], sha256: str,
                 stem: str = 'model', architecture: str = '',
                 kwargs: dict[str, Any] | None = None, *,
                 loader: Callable[[], Any] | None = None,
                 weights_path: str | os.PathLike | None = None):
        if module is None and loader is None:
            raise ValueError('ModelSource: give the module or a loader that builds it')
        self._module = module
        self._loader = loader
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.sha256 = sha256
        self.stem = stem
        self.architecture = architecture
        self.kwargs = dict(kwargs or {})
        self.weights_path = Path(weights_path) if weights_path is not None else None

    @property
    def module(self) -> Any:
        """The torch module, built by the loader on first use (this imports torch)."""
        if self._module is None:
            self._module = self._loader()
        return self._module

    @module.setter
    def module(self, value: Any) -> None:
        self._module = value

    @property
    def built(self) -> bool:
        """Whether the torch module exists yet (False: nothing of torch was needed so far)."""
        return self._module is not None

    @property
    def in_channels(self) -> int:
        """Input channels of the network: the card's ``in_channels`` (3: an RGB image)."""
        return int(self.kwargs.get('in_channels', 3))

    @property
    def key(self) -> str:
        """SHA-256 of the tensors' hash, the architecture and its keyword sizes."""
        return model_key(self.sha256, self.architecture, self.kwargs,
                         module=None if self.architecture else self.module)

    def __repr__(self) -> str:
        return (f'ModelSource(stem={self.stem!r}, architecture={self.architecture!r}, '
                f'input_size={self.input_size}, sha256={self.sha256[:12]!r}, '
                f'built={self.built})')


@dataclass(frozen=True)
class Variant:
    """One benchmarkable configuration, written ``backend[-precision][-compile][-cl][-graphs]``.

    E.g. ``torch`` (eager fp32, the baseline), ``torch-bf16``, ``torch-compile-bf16``,
    ``torch-cl``, ``onnxruntime``, ``tensorrt-fp16``, ``torch-fp16-graphs``.
    """

    backend: str
    precision: str = 'fp32'
    compile: bool = False
    channels_last: bool = False
    cuda_graphs: bool | None = None

    @classmethod
    def parse(cls, spec: str) -> Variant:
        """Parse ``torch-compile-bf16`` style names (order of the suffixes does not matter)."""
        parts = spec.strip().lower().split('-')
        backend = parts[0]
        if backend not in BACKENDS or backend == 'auto':
            raise ValueError(f'backend spec {spec!r}: unknown backend {backend!r} '
                             f'(expected torch, onnxruntime or tensorrt)')
        kw: dict[str, Any] = {}
        for p in parts[1:]:
            if p in ('fp32', 'fp16', 'bf16'):
                kw['precision'] = p
            elif p == 'compile':
                kw['compile'] = True
            elif p == 'cl':
                kw['channels_last'] = True
            elif p == 'graphs':
                kw['cuda_graphs'] = True
            elif p == 'nographs':
                kw['cuda_graphs'] = False
            else:
                raise ValueError(f'backend spec {spec!r}: unknown option {p!r} (expected '
                                 'fp32, fp16, bf16, compile, cl, graphs, nographs)')
        if backend != 'torch' and (kw.get('compile') or kw.get('channels_last')
                                   or kw.get('cuda_graphs')):
            raise ValueError(f'backend spec {spec!r}: compile/cl/graphs apply to torch only')
        return cls(backend, **kw)

    @property
    def label(self) -> str:
        """Canonical spelling of this variant."""
        parts = [self.backend]
        if self.compile:
            parts.append('compile')
        if self.channels_last:
            parts.append('cl')
        if self.cuda_graphs:
            parts.append('graphs')
        if self.precision != 'fp32' or self.backend == 'tensorrt':
            parts.append(self.precision)
        return '-'.join(parts)


def create_engine(backend: str, source: ModelSource, *, device: str = 'cpu',
                  precision: str = 'fp32', compile: bool = False, channels_last: bool = False,
                  cuda_graphs: bool | None = None, batch_size: int = 1,
                  engine_file_path: str | os.PathLike | None = None,
                  force_engine_update: bool = False) -> Engine:
    """Build one named backend; raises :class:`EngineUnavailable` if it cannot run here."""
    precision = check_precision(precision)
    if backend in ('torch', 'tensorrt'):
        require_torch(backend)
        source.module  # noqa: B018 (a lazy source builds here: a bad file fails as it did)
    if backend == 'auto':
        return select_engine(source, device=device, precision=precision, compile=compile,
                             engine_file_path=engine_file_path,
                             force_engine_update=force_engine_update)
    if backend == 'torch':
        from vr_goggles.engines.torch_engine import TorchEngine
        return TorchEngine(source.module, device=device, precision=precision,
                           channels_last=channels_last, compile=compile,
                           cuda_graphs=cuda_graphs, input_size=source.input_size)
    if backend == 'onnxruntime':
        from vr_goggles.engines.onnx_engine import OnnxRuntimeEngine
        from vr_goggles.engines.onnx_files import open_for_source
        if check_precision(precision) != 'fp32':
            raise EngineUnavailable('onnxruntime', f'precision {precision} not offered '
                                                   '(the exported graph is fp32)')
        engine = open_for_source(source, lambda p: OnnxRuntimeEngine(p, device=device))
        engine.input_size = source.input_size
        return engine
    if backend == 'tensorrt':
        from vr_goggles.engines.tensorrt_engine import TensorRTEngine
        # 'auto' lets it take the GPU; an explicit cpu stays cpu and is refused there, so a
        # benchmark row never labels GPU TensorRT as cpu.
        return TensorRTEngine(source.module, weights_sha256=source.sha256,
                              input_size=source.input_size, batch_size=batch_size,
                              precision=precision, device='cuda' if device == 'auto' else device,
                              engine_file_path=engine_file_path,
                              force_engine_update=force_engine_update, stem=source.stem,
                              key=source.key)
    raise ValueError(f'engine: expected one of {", ".join(BACKENDS)}, got {backend!r}')


def require_torch(backend: str) -> None:
    """Refuse a torch-based backend in one line when torch cannot be imported."""
    err = torch_import_error()
    if err:
        raise EngineUnavailable(backend, f'needs torch, which cannot be imported ({err}); '
                                         "install it (pip install 'vr_goggles[torch]') or use "
                                         'engine onnxruntime')


def _cpu_model() -> str:
    try:
        with open('/proc/cpuinfo', encoding='utf-8', errors='replace') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_cache_key(source: ModelSource, precision: str, compile: bool) -> str:
    import torch
    try:
        import onnxruntime
        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = 'none'
    h, w = source.input_size
    return (f'{source.key[:16]}|{h}x{w}|{precision}|compile={int(compile)}|'
            f'threads={torch.get_num_threads()}|{_cpu_model()}|torch={torch.__version__}|'
            f'ort={ort_version}')


def _cpu_candidates(precision: str, compile: bool) -> list[Variant]:
    cands = [Variant('torch', precision), Variant('torch', precision, channels_last=True)]
    if precision == 'fp32':
        cands.append(Variant('onnxruntime'))
    if compile:
        cands.append(Variant('torch', precision, compile=True))
    return cands


def _pick_cpu(source: ModelSource, precision: str, compile: bool,
              skipped: list[str]) -> tuple[Engine, str]:
    """Time the CPU candidates (or reuse a cached result); return the winner and why."""
    cache_file = cache_dir() / 'auto_cpu.json'
    key = _cpu_cache_key(source, precision, compile)
    try:
        cached = json.loads(cache_file.read_text(encoding='utf-8')).get(key)
    except (OSError, ValueError, AttributeError):
        cached = None
    cands = _cpu_candidates(precision, compile)
    if cached:
        for v in cands:
            if v.label == cached.get('winner'):
                try:
                    engine = create_engine(v.backend, source, device='cpu',
                                           precision=v.precision, compile=v.compile,
                                           channels_last=v.channels_last)
                except EngineUnavailable as e:
                    skipped.append(f'cached winner {v.label}: {e.reason}')
                    break
                timings = ', '.join(f'{k} {t:.2f} ms' for k, t in cached['ms'].items())
                skipped.extend(f'{k}: slower (cached)' for k in cached['ms'] if k != v.label)
                return engine, f'fastest CPU backend (cached timing: {timings})'
    from vr_goggles.engines.timing import time_engine

    h, w = source.input_size
    x = np.random.default_rng(0).uniform(-1, 1, size=(1, 3, h, w)).astype(np.float32)
    results: dict[str, float] = {}
    engines: dict[str, Engine] = {}
    for v in cands:
        try:
            engine = create_engine(v.backend, source, device='cpu', precision=v.precision,
                                   compile=v.compile, channels_last=v.channels_last)
            results[v.label] = float(np.median(time_engine(engine, x, warmup=2, iters=5))) * 1e3
            engines[v.label] = engine
        except EngineUnavailable as e:
            skipped.append(f'{v.label}: skipped ({e.reason})')
        except Exception as e:  # a broken candidate must not stop the robot from starting
            skipped.append(f'{v.label}: skipped ({type(e).__name__}: {e})')
    if not engines:
        raise EngineUnavailable('auto', 'no CPU backend could run: ' + '; '.join(skipped))
    winner = min(results, key=results.get)
    try:
        data = json.loads(cache_file.read_text(encoding='utf-8'))
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    data[key] = {'winner': winner, 'ms': results}
    try:
        from vr_goggles.weights import atomic_write_bytes
        atomic_write_bytes(cache_file, (json.dumps(data, indent=1) + '\n').encode())
    except OSError as e:
        log.debug('cannot write %s: %s', cache_file, e)
    timings = ', '.join(f'{k} {t:.2f} ms' for k, t in results.items())
    for k in results:
        if k != winner:
            skipped.append(f'{k}: slower')
    return engines[winner], f'fastest CPU backend (measured at batch 1, {h}x{w}: {timings})'


def select_engine(source: ModelSource, *, device: str = 'auto', precision: str = 'fp32',
                  compile: bool = False, engine_file_path: str | os.PathLike | None = None,
                  force_engine_update: bool = False) -> Engine:
    """``auto``: TensorRT, else torch on CUDA, else the fastest measured CPU backend.

    ``device='cpu'`` restricts the choice to CPU backends; ``'auto'`` or ``'cuda[:N]'`` allows
    GPUs. Logs one line naming the choice and why every other option was skipped; a warning
    when a GPU is present but TensorRT was not taken, so a GPU robot never falls back silently.
    """
    precision = check_precision(precision)
    no_torch = torch_import_error()
    if no_torch:
        return _without_torch(source, device, precision, no_torch)
    import torch

    from vr_goggles.engines.torch_engine import cuda_unavailable_reason

    source.module  # noqa: B018 (a lazy source builds here: every candidate but one needs it)
    skipped: list[str] = []
    engine: Engine | None = None
    why = ''
    tensorrt_failed = False
    gpu_allowed = device == 'auto' or device.startswith('cuda')
    cuda_device = device if device.startswith('cuda') else 'cuda'
    if not gpu_allowed:
        skipped.append(f'tensorrt: skipped (device={device!r} requested)')
        skipped.append(f'torch-cuda: skipped (device={device!r} requested)')
    else:
        try:
            engine = create_engine('tensorrt', source, device=cuda_device,
                                   precision=precision, engine_file_path=engine_file_path,
                                   force_engine_update=force_engine_update)
            why = 'TensorRT available'
        except EngineUnavailable as e:
            skipped.append(f'tensorrt: skipped ({e.reason})')
        except Exception as e:  # a failed build falls back rather than keeping a robot down
            skipped.append(f'tensorrt: skipped (build/load failed: {type(e).__name__}: {e})')
        tensorrt_failed = engine is None
        if engine is None:
            reason = cuda_unavailable_reason()
            if reason:
                skipped.append(f'torch-cuda: skipped ({reason})')
            else:
                engine = create_engine('torch', source, device=cuda_device, precision=precision,
                                       compile=compile)
                why = f'CUDA available ({torch.cuda.get_device_name(cuda_device)})'
    if engine is None:
        engine, why = _pick_cpu(source, precision, compile, skipped)
    # On a machine with a GPU, not getting TensorRT is worth a warning (ROS shows INFO lines
    # of library loggers only when asked); on a CPU-only machine it is the expected path.
    level = (logging.WARNING if tensorrt_failed and engine.device.startswith('cuda')
             else logging.INFO)
    log.log(level, 'engine auto: chose %s (%s, %s): %s; %s', engine.name, engine.device,
            engine.precision, why, '; '.join(skipped) or 'nothing skipped')
    engine.auto_report = {'chosen': engine.name, 'why': why, 'skipped': list(skipped)}
    return engine


def _without_torch(source: ModelSource, device: str, precision: str,
                   why_not: str) -> Engine:
    """``auto`` where torch cannot be imported: ONNX Runtime is the one backend left."""
    if precision != 'fp32':
        raise EngineUnavailable('auto', f'precision {precision} needs torch, which cannot be '
                                        f'imported ({why_not}); use fp32 (ONNX Runtime)')
    engine = create_engine('onnxruntime', source, device='cpu' if device == 'auto' else device)
    skipped = [f'{b}: skipped (torch cannot be imported: {why_not})'
               for b in ('tensorrt', 'torch')]
    why = 'the one backend without torch'
    log.info('engine auto: chose %s (%s, %s): %s; %s', engine.name, engine.device,
             engine.precision, why, '; '.join(skipped))
    engine.auto_report = {'chosen': engine.name, 'why': why, 'skipped': skipped}
    return engine


def source_from_weights(path: str | os.PathLike, *, verify_hash: bool = True,
                        engine: str | None = None) -> tuple[ModelSource, Any]:
    """Load a weights file into a :class:`ModelSource` (and return its card).

    The file and its card are checked here (hash, format) without torch. The torch module is
    built here too, so a state dict that does not fit the card fails at once, unless
    ``engine='onnxruntime'`` or torch cannot be imported: then it is built on first use (an
    ONNX export), and an ONNX file beside the weights or in the cache runs with no torch.
    """
    from vr_goggles.weights import build_module, load, resolve, sha256_file

    tensors = resolve(path)
    _, card = load(tensors, verify_hash=verify_hash)
    sha = card.sha256 or sha256_file(tensors)

    def build() -> Any:
        return build_module(tensors, verify_hash=verify_hash)[0]

    lazy = engine == 'onnxruntime' or torch_import_error() is not None
    return ModelSource(None if lazy else build(),
                       (int(card.input_size[0]), int(card.input_size[1])), sha,
                       Path(tensors).stem, architecture=card.architecture,
                       kwargs=dict(card.kwargs), loader=build, weights_path=tensors), card
