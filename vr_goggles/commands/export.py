"""``vr-goggles export``: weights -> ONNX for onnxruntime, ``trtexec`` or Isaac ROS TensorRT.

The graph has one input ``input``, float32 ``(N, 3, H, W)`` RGB in [-1, 1] (``x / 127.5 - 1``,
see :mod:`vr_goggles.image.preprocess`) and one output ``output`` of the same shape and range. The
batch is static (``--batch``, default 1) unless ``--dynamic-batch``. The file is checked by
re-running it in onnxruntime against torch; the max abs difference is printed.
"""

from __future__ import annotations

import argparse

from vr_goggles.engines.cli_support import add_model_arg


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``export``."""
    p = subparsers.add_parser('export', help='export a generator to ONNX',
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arg(p)
    p.add_argument('--onnx', required=True, help='output .onnx path')
    p.add_argument('--opset', type=int, default=17,
                   help='ONNX opset (default: %(default)s; 17 has InstanceNormalization and '
                        'reflect Pad, and is read by TensorRT 8.6+)')
    p.add_argument('--batch', type=int, default=1, help='static batch size (default: 1)')
    p.add_argument('--dynamic-batch', action='store_true', help='symbolic batch axis')
    p.add_argument('--tolerance', type=float, default=1e-3,
                   help='max abs diff vs torch accepted (default: %(default)s)')
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Export, verify with onnxruntime, print a summary."""
    from vr_goggles.engines.factory import source_from_weights
    from vr_goggles.engines.onnx_engine import INPUT_NAME, OUTPUT_NAME, export_onnx, verify_onnx

    if args.batch < 1:
        raise ValueError(f'--batch must be >= 1, got {args.batch}')
    source, card = source_from_weights(args.model)
    h, w = source.input_size
    path = export_onnx(source.module, args.onnx, source.input_size, opset=args.opset,
                       batch=args.batch, dynamic_batch=args.dynamic_batch)
    diff = verify_onnx(path, source.module, source.input_size,
                       batch=1 if args.dynamic_batch else args.batch)
    n = 'N' if args.dynamic_batch else str(args.batch)
    print(f'wrote {path} (opset {args.opset}, model {card.name})')
    print(f"  input  '{INPUT_NAME}':  ({n}, 3, {h}, {w}) float32 RGB in [-1, 1]")
    print(f"  output '{OUTPUT_NAME}': ({n}, 3, {h}, {w}) float32 RGB in [-1, 1]")
    print(f'  onnxruntime vs torch max abs diff: {diff:.3g}')
    if not diff <= args.tolerance:
        raise RuntimeError(f'{path}: onnxruntime output differs from torch by {diff:.3g} '
                           f'(> tolerance {args.tolerance})')
    return 0
