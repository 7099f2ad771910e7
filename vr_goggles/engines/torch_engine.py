"""PyTorch backend: CPU or CUDA, fp32/fp16/bf16 autocast, channels_last, torch.compile, graphs.

The reference backend (eager fp32 is the baseline every benchmark speed-up is measured against)
and the fallback that always works. On CPU, bf16 autocast plus ``torch.compile`` (C++ wrapper,
frozen weights) is the fastest option measured on CPUs with AVX512-bf16/AMX; ``compile`` costs
tens of seconds of C++ compile at the first call per input shape, so it is opt-in.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from typing import Any

import numpy as np

from vr_goggles.engines.base import EngineUnavailable, check_batch, check_precision

log = logging.getLogger(__name__)


def cuda_unavailable_reason() -> str | None:
    """Why torch cannot use CUDA here, or ``None`` when it can."""
    import torch

    if torch.version.cuda is None and not getattr(torch.version, 'hip', None):
        return f'torch {torch.__version__} is a CPU-only build'
    if not torch.cuda.is_available():
        return 'torch.cuda.is_available() is False (no GPU or driver visible)'
    return None


class TorchEngine:
    """Run a torch module on numpy batches.

    ``precision`` other than fp32 uses ``torch.autocast`` (weights stay fp32, so quality loss is
    bounded to activations). ``channels_last`` converts module and input to NHWC memory format,
    which oneDNN/cuDNN convolutions prefer. ``cuda_graphs`` (default: on for CUDA without
    ``compile``) captures one CUDA graph per input shape into a static input buffer, removing
    the per-kernel launch overhead that dominates small generators.
    """

    def __init__(self, module: Any, *, device: str = 'cpu', precision: str = 'fp32',
                 channels_last: bool = False, compile: bool = False,
                 cuda_graphs: bool | None = None, input_size: tuple[int, int] = (64, 64)):
        import torch

        self.precision = check_precision(precision)
        dev = torch.device(device)
        if dev.type == 'cuda':
            reason = cuda_unavailable_reason()
            if reason:
                raise EngineUnavailable('torch', f'device {device!r}: {reason}')
        elif dev.type != 'cpu':
            raise ValueError(f'device: expected cpu or cuda[:N], got {device!r}')
        self._torch = torch
        self._dev = dev
        self.device = str(dev)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.batch_size: int | None = None
        self.channels_last = bool(channels_last)
        self.compiled = bool(compile)
        module = copy.deepcopy(module).eval().to(dev)
        for p in module.parameters():
            p.requires_grad_(False)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self._module = module
        # On CPU, the C++ wrapper removes the per-call Python overhead that dominates a small
        # generator at 64x64, and freezing folds the (never-changing) weights into constants so
        # oneDNN can prepack them.
        options = {'cpp_wrapper': True, 'freezing': True} if dev.type == 'cpu' else None
        self._fn = (torch.compile(module, dynamic=False, options=options) if compile
                    else module)
        self._autocast_dtype = {'fp32': None, 'fp16': torch.float16,
                                'bf16': torch.bfloat16}[self.precision]
        self.cuda_graphs = (dev.type == 'cuda' and not compile) if cuda_graphs is None \
            else bool(cuda_graphs)
        if self.cuda_graphs and dev.type != 'cuda':
            raise ValueError('cuda_graphs needs a CUDA device')
        self._graphs: dict[tuple[int, ...], tuple[Any, Any, Any]] = {}
        parts = ['torch'] + (['compile'] if compile else []) + \
            (['cl'] if channels_last else []) + (['graphs'] if self.cuda_graphs else [])
        self.name = '-'.join(parts)

    def _autocast(self, *, cache: bool = True):
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return self._torch.autocast(self._dev.type, dtype=self._autocast_dtype,
                                    cache_enabled=cache)

    def _forward(self, x):
        with self._autocast(cache=not self.cuda_graphs):
            return self._fn(x)

    def _graph_forward(self, x):
        torch = self._torch
        key = tuple(x.shape)
        entry = self._graphs.get(key)
        if entry is None:
            static_in = x.clone()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):  # warm-up off the capture stream, as documented
                for _ in range(3):
                    self._forward(static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._forward(static_in)
            entry = self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = entry
        static_in.copy_(x)
        graph.replay()
        return static_out

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """float32 ``(N, 3, H, W)`` -> float32 ``(N, 3, H, W)``."""
        torch = self._torch
        arr = check_batch(batch)
        with torch.no_grad():
            x = torch.from_numpy(arr).to(self._dev, non_blocking=False)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = self._graph_forward(x) if self.cuda_graphs else self._forward(x)
            y = y.float().contiguous()
            out = y.cpu().numpy()
        return np.ascontiguousarray(out)

    def __repr__(self) -> str:
        return f'TorchEngine(name={self.name!r}, device={self.device!r}, ' \
               f'precision={self.precision!r})'
