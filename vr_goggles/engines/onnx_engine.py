"""ONNX export and the onnxruntime backend.

Export uses the legacy TorchScript-based exporter (``dynamo=False``): it handles the generator's
reflection padding and instance norm at opset 17 (see docs/engines.md). The graph has one input
``input`` float32 ``(N, 3, H, W)`` in [-1, 1] and one output ``output`` of the same shape and
range, both declared with static height and width (and a static batch unless
``dynamic_batch``, then the symbol ``batch``), so the file can be fed to ``trtexec --onnx=`` or
Isaac ROS ``isaac_ros_tensor_rt``. ``fp16=True`` exports the network with float16 weights and
arithmetic between a cast in and a cast out: the I/O stays float32 and the precision is in the
graph, which is what a strongly typed TensorRT build (the only kind in TensorRT 11) runs.
The policy's actor exports the same way (input ``(N, C, H, W)`` with the card's channels,
output the ``(N, n_actions)`` logits) and runs through :class:`OnnxModel`. Running a file needs
onnxruntime only: neither torch nor onnx is imported on that path.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
import sys
import tempfile
from typing import Any
import warnings

import numpy as np

from vr_goggles.engines.base import (
    EngineFileError,
    EngineUnavailable,
    cache_dir,
    check_batch,
    check_precision,
    make_readable,
)

log = logging.getLogger(__name__)

INPUT_NAME = 'input'
OUTPUT_NAME = 'output'
BATCH_SYMBOL = 'batch'
DEFAULT_OPSET = 17


def half_precision(module: Any) -> Any:
    """A float16 copy of ``module`` behind float32 I/O (cast in, run in fp16, cast out)."""
    import copy

    import torch

    class HalfPrecision(torch.nn.Module):
        """float32 -> float16 network -> float32, so callers and bindings keep float32."""

        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x.to(torch.float16)).to(torch.float32)

    return HalfPrecision(copy.deepcopy(module).eval().cpu().half()).eval()


def _declare_output_shape(model: Any, shape: tuple[int, ...], dynamic_batch: bool) -> None:
    """Write the output's true shape into the graph (the tracer leaves it symbolic).

    The legacy exporter traces the resize-conv's reshapes from ``x.shape``, so the declared
    output came out as ``['batch', 3, 'batch', 'Tanhoutput_dim_3']``: height named like the
    batch. The network maps ``(N, 3, H, W)`` to the same shape, H and W static.
    """
    (out,) = model.graph.output
    dims = out.type.tensor_type.shape.dim
    del dims[:]
    for i, size in enumerate(shape):
        d = dims.add()
        if i == 0 and dynamic_batch:
            d.dim_param = BATCH_SYMBOL
        else:
            d.dim_value = int(size)


def export_onnx(module: Any, path: str | os.PathLike, input_size: tuple[int, int], *,
                opset: int = DEFAULT_OPSET, batch: int = 1, dynamic_batch: bool = False,
                fp16: bool = False, in_channels: int = 3,
                metadata: dict[str, str] | None = None) -> Path:
    """Export ``module`` to ONNX at ``path`` (atomically, mode 0644) and check the graph.

    ``dynamic_batch`` makes the batch axis symbolic (``batch``); the default static shape is
    what TensorRT and Isaac ROS build fastest from. ``fp16`` exports :func:`half_precision`.
    The output shape is declared and then checked by onnx's strict shape inference.
    ``in_channels``: the input's channels (3 for a generator; the policy actor's card says how
    many frames and memory planes it stacks). ``metadata`` goes into the file's
    ``metadata_props`` (:mod:`vr_goggles.engines.onnx_files` records there which weights the
    graph came from).
    """
    import onnx
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = int(input_size[0]), int(input_size[1])
    dummy = torch.zeros(batch, int(in_channels), h, w, dtype=torch.float32)
    dynamic_axes = ({INPUT_NAME: {0: BATCH_SYMBOL}, OUTPUT_NAME: {0: BATCH_SYMBOL}}
                    if dynamic_batch else None)
    module = module.eval().cpu()
    net = half_precision(module) if fp16 else module
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix='.' + path.name, suffix='.tmp')
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            out_shape = tuple(net(dummy).shape)
            # The legacy exporter warns about constant folding of Slice, tracer constants and
            # instance norm "train=True" (InstanceNorm2d always uses input statistics: correct).
            warnings.simplefilter('ignore')
            torch.onnx.export(net, (dummy,), tmp, dynamo=False, opset_version=int(opset),
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes=dynamic_axes, do_constant_folding=True)
        model = onnx.load(tmp)
        _declare_output_shape(model, out_shape, dynamic_batch)
        for k, v in (metadata or {}).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = str(k), str(v)
        # types and static shapes must agree (the reshapes stay symbolic to onnx, so
        # verify_onnx checks the declared output shape against what onnxruntime computes)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        onnx.checker.check_model(model)
        onnx.save(model, tmp)
        make_readable(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def onnx_cache_path(key: str, stem: str, input_size: tuple[int, int],
                    opset: int = DEFAULT_OPSET) -> Path:
    """Cache file for the on-the-fly export of a weights file (``key``: its SHA-256)."""
    h, w = input_size
    return cache_dir() / 'onnx' / f'{stem}-{key[:16]}-{h}x{w}-op{opset}-dyn.onnx'


def ensure_onnx(module: Any, key: str, stem: str, input_size: tuple[int, int],
                opset: int = DEFAULT_OPSET, *, in_channels: int = 3,
                metadata: dict[str, str] | None = None) -> Path:
    """Return a cached dynamic-batch ONNX export of ``module``, exporting it if missing."""
    path = onnx_cache_path(key, stem, input_size, opset)
    if not path.exists():
        log.info('exporting %s to ONNX cache %s', stem, path)
        export_onnx(module, path, input_size, opset=opset, dynamic_batch=True,
                    in_channels=in_channels, metadata=metadata)
    return path


def default_threads() -> int:
    """Intra-op threads when none are asked for: torch's count if torch is loaded anyway.

    So backends are compared on equal terms in one process; without torch (the lean robot
    runtime) ``OMP_NUM_THREADS`` when set, else 0 (onnxruntime's default, one per core).
    """
    torch = sys.modules.get('torch')
    if torch is not None:
        return int(torch.get_num_threads())
    try:
        return max(0, int(os.environ.get('OMP_NUM_THREADS', '0')))
    except ValueError:
        return 0


class OnnxModel:
    """One onnxruntime session: float32 array in, float32 array out, any network.

    The policy's actor runs through this directly; :class:`OnnxRuntimeEngine` adds the image
    contract of the goggles. ``metadata`` is the file's ``metadata_props`` (which weights it was
    exported from, see :mod:`vr_goggles.engines.onnx_files`). ``threads``: intra-op threads
    (default :func:`default_threads`).
    """

    name = 'onnxruntime'

    def __init__(self, onnx_path: str | os.PathLike, *, device: str = 'cpu',
                 precision: str = 'fp32', threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise EngineUnavailable('onnxruntime', f'import onnxruntime failed: {e}') from None
        self.precision = check_precision(precision)
        if self.precision != 'fp32':
            raise EngineUnavailable('onnxruntime', f'precision {self.precision} not offered '
                                                   '(the exported graph is fp32)')
        available = ort.get_available_providers()
        if device == 'cpu':
            providers: list[Any] = ['CPUExecutionProvider']
        elif device.startswith('cuda'):
            if 'CUDAExecutionProvider' not in available:
                raise EngineUnavailable('onnxruntime', 'CUDAExecutionProvider not available '
                                                       f'(providers: {available})')
            idx = int(device.split(':')[1]) if ':' in device else 0
            providers = [('CUDAExecutionProvider', {'device_id': idx}), 'CPUExecutionProvider']
        else:
            raise ValueError(f'device: expected cpu or cuda[:N], got {device!r}')
        path = Path(onnx_path)
        if not path.exists():
            raise EngineFileError(path, 'ONNX file not found')
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(default_threads() if threads is None else threads)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self._sess = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own pybind exception types
            raise EngineFileError(path, f'not a loadable ONNX model ({type(e).__name__}: '
                                        f'{str(e).strip()[:300]}); re-export it with '
                                        '`vr-goggles export`') from None
        inputs, outputs = self._sess.get_inputs(), self._sess.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise EngineFileError(path, 'expected one input and one output, got inputs '
                                        f'{[(i.name, i.shape) for i in inputs]}, outputs '
                                        f'{[(o.name, o.shape) for o in outputs]}')
        self._in, self._out = inputs[0].name, outputs[0].name
        self.input_shape: list[int | str] = list(inputs[0].shape)
        self.metadata: dict[str, str] = dict(self._sess.get_modelmeta().custom_metadata_map)
        self.path = path
        self.device = device

    def run(self, arr: np.ndarray) -> np.ndarray:
        """float32 array in the graph's input layout -> its float32 output."""
        (out,) = self._sess.run([self._out], {self._in: np.ascontiguousarray(arr, np.float32)})
        return np.ascontiguousarray(out, dtype=np.float32)

    __call__ = run

    def __repr__(self) -> str:
        return f'{type(self).__name__}(path={str(self.path)!r}, device={self.device!r})'


class OnnxRuntimeEngine(OnnxModel):
    """onnxruntime session on CPU (or the CUDA execution provider when installed).

    Only fp32 graphs are exported, so only fp32 is offered; ``threads`` sets intra-op threads
    (default: torch's thread count when torch is loaded, so backends are compared on equal
    terms; see :func:`default_threads`).
    """

    def __init__(self, onnx_path: str | os.PathLike, *, device: str = 'cpu',
                 precision: str = 'fp32', threads: int | None = None):
        super().__init__(onnx_path, device=device, precision=precision, threads=threads)
        shape, path = self.input_shape, self.path
        if len(shape) != 4:
            raise EngineFileError(path, f'expected one 4-D input, got {shape}')
        if shape[1] != 3:
            raise EngineFileError(path, f'expected an (N, 3, H, W) input, got {shape}')
        self._static_batch = shape[0] if isinstance(shape[0], int) else None
        self.batch_size = self._static_batch
        self.input_size = ((shape[2], shape[3]) if all(isinstance(s, int) for s in shape[2:])
                           else (0, 0))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """float32 ``(N, 3, H, W)`` -> float32 ``(N, 3, H, W)``."""
        return self.run(check_batch(batch))


def verify_onnx(path: str | os.PathLike, module: Any, input_size: tuple[int, int], *,
                batch: int = 1, seed: int = 0, in_channels: int = 3) -> float:
    """Max abs difference between onnxruntime on ``path`` and torch fp32 on a random input.

    An ``fp16`` export runs here too (onnxruntime's CPU provider executes float16 graphs), so
    the difference includes the half-precision rounding. ``in_channels``: as exported.
    """
    import torch

    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(batch, in_channels, *input_size)).astype(np.float32)
    with torch.no_grad():
        ref = module.eval().cpu()(torch.from_numpy(x)).numpy()
    got = OnnxModel(path)(x)
    declared = declared_output_shape(path)
    if got.shape != ref.shape or len(declared) != got.ndim or any(
            isinstance(d, int) and d != g for d, g in zip(declared, got.shape)):
        raise EngineFileError(path, f'output shape {got.shape} (torch {ref.shape}) does not '
                                    f'match the declared {declared}')
    return float(np.max(np.abs(ref - got)))


def declared_output_shape(path: str | os.PathLike) -> list[int | str]:
    """The output dims the graph declares: ints, or symbol names (``batch``)."""
    import onnx

    (out,) = onnx.load(str(path), load_external_data=False).graph.output
    return [d.dim_param if d.HasField('dim_param') else int(d.dim_value)
            for d in out.type.tensor_type.shape.dim]
