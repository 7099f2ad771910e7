"""``vr-goggles compile``: build and save a TensorRT engine (torch-tensorrt, NVIDIA GPU only).

Writes ENGINE (a torch.export program holding the serialized TensorRT engine) and
``ENGINE.json`` (weights SHA-256, architecture key, input shape, precision, GPU,
TensorRT/torch/torch-tensorrt versions, and the parity numbers against torch on fixed inputs).
``Goggles.from_model(engine='tensorrt', engine_file_path=ENGINE)`` reuses it while all of those
match and rebuilds it otherwise. An engine that does not reproduce torch within the tolerance of
its precision is rebuilt once, then refused. Without torch-tensorrt (of torch's major.minor), a
CUDA GPU or with a cpu device this exits 1 with the reason: it never falls back to another
backend.
"""

from __future__ import annotations

import argparse

from vr_goggles.engines.cli_support import add_model_arg


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``compile``."""
    p = subparsers.add_parser('compile', help='build a TensorRT engine (GPU)',
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arg(p)
    p.add_argument('--precision', default='fp16', choices=('fp32', 'fp16', 'bf16'),
                   help='engine precision (default: %(default)s)')
    p.add_argument('--out', required=True, help='engine file to write (e.g. goggles.ep)')
    p.add_argument('--batch', type=int, default=1, help='static batch size (default: 1)')
    p.add_argument('--device', default='cuda', help='CUDA device (default: %(default)s)')
    p.add_argument('--force', action='store_true',
                   help='rebuild even if OUT matches (force_engine_update)')
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Build (or confirm) the engine; exit 1 with the reason when TensorRT cannot run here."""
    from vr_goggles.engines.base import EngineUnavailable
    from vr_goggles.engines.factory import source_from_weights
    from vr_goggles.engines.parity import describe
    from vr_goggles.engines.tensorrt_engine import import_torch_tensorrt, metadata_path

    if args.batch < 1:
        raise ValueError(f'--batch must be >= 1, got {args.batch}')
    try:
        if not str(args.device).startswith('cuda'):
            raise EngineUnavailable('tensorrt', f'--device {args.device}: TensorRT runs on '
                                                'NVIDIA GPUs only')
        import_torch_tensorrt()  # fail fast, before loading anything
        source, card = source_from_weights(args.model)
        from vr_goggles.engines.tensorrt_engine import TensorRTEngine
        engine = TensorRTEngine(source.module, weights_sha256=source.sha256,
                                input_size=source.input_size, batch_size=args.batch,
                                precision=args.precision, device=args.device,
                                engine_file_path=args.out, force_engine_update=args.force,
                                stem=source.stem, key=source.key)
    except EngineUnavailable as e:
        raise RuntimeError(f'cannot build a TensorRT engine here: {e.reason}. TensorRT needs '
                           'an NVIDIA GPU with CUDA and torch-tensorrt of the same major.minor as '
                           'torch (see docs/engines.md); on CPU use `vr-goggles export` and '
                           '--engine onnxruntime') from None
    print(f'engine {engine.path} ({engine.precision}, input {engine.shape}, '
          f'{engine.metadata["gpu"]}); metadata {metadata_path(engine.path)}; model {card.name}')
    print(f'  parity: {describe(engine.parity)}')
    return 0
