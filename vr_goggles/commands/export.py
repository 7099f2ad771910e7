"""``vr-goggles export``: weights -> ONNX for onnxruntime, ``trtexec`` or Isaac ROS TensorRT.

A generator (the goggles), the policy's actor (``--model policy_sim``: input ``(N, C, H, W)``
with the channels of its card's frame stack and turn-memory planes, output the ``(N, 3)``
action logits) or the domain score (``--model domain_score``: output the ``(N,)`` scores).
The file records the SHA-256 of the weights it came from and their model key in its
``metadata_props``; written beside the weights as ``NAME.onnx``
(``--onnx vr_goggles/weights/NAME.onnx --dynamic-batch``) it is what the ONNX Runtime engine
of the nodes runs on a robot without torch, and a stale one is refused there.

The graph has one input ``input``, float32 ``(N, 3, H, W)`` RGB in [-1, 1] (``x / 127.5 - 1``,
see :mod:`vr_goggles.image.preprocess`; the actor's channels as above) and one output ``output``:
a generator's of the same shape and range, the actor's and the domain score's as above. The
batch is static (``--batch``, default 1) unless ``--dynamic-batch``; height and width are
static. ``--fp16`` stores float16 weights and runs the network in float16 between a cast in and
a cast out (I/O stays float32): a strongly typed TensorRT 11 build (``trtexec --onnx=FILE``, no
precision flag; TensorRT 10: ``--stronglyTyped``) then runs it in fp16. The file is checked by
re-running it in onnxruntime against torch fp32; the max abs difference is printed. The file is
written mode 0644 (less the umask) so a container or another user can read it.
"""

from __future__ import annotations

import argparse

from vr_goggles.engines.cli_support import add_model_arg


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``export``."""
    p = subparsers.add_parser('export',
                              help='export a generator, policy actor or domain score to ONNX',
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arg(p)
    p.add_argument('--onnx', required=True, help='output .onnx path')
    p.add_argument('--opset', type=int, default=17,
                   help='ONNX opset (default: %(default)s; 17 has InstanceNormalization and '
                        'reflect Pad, and is read by TensorRT 8.6+)')
    p.add_argument('--batch', type=int, default=1, help='static batch size (default: 1)')
    p.add_argument('--dynamic-batch', action='store_true', help='symbolic batch axis')
    p.add_argument('--fp16', action='store_true',
                   help='float16 weights and arithmetic inside, float32 I/O (for strongly '
                        'typed TensorRT builds; see docs/engines.md)')
    p.add_argument('--tolerance', type=float, default=None,
                   help='max abs diff vs torch fp32 accepted (default: 1e-3, with --fp16 the '
                        'fp16 engine tolerance 0.03)')
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Export, verify with onnxruntime, print a summary."""
    from vr_goggles.engines.factory import source_from_weights
    from vr_goggles.engines.onnx_engine import INPUT_NAME, OUTPUT_NAME, export_onnx, verify_onnx
    from vr_goggles.engines.parity import PARITY_TOLERANCES

    if args.batch < 1:
        raise ValueError(f'--batch must be >= 1, got {args.batch}')
    tolerance = args.tolerance
    if tolerance is None:
        tolerance = PARITY_TOLERANCES['fp16']['max_abs'] if args.fp16 else 1e-3
    from vr_goggles.engines.onnx_files import metadata_for

    source, card = source_from_weights(args.model)
    h, w = source.input_size
    c = source.in_channels
    path = export_onnx(source.module, args.onnx, source.input_size, opset=args.opset,
                       batch=args.batch, dynamic_batch=args.dynamic_batch, fp16=args.fp16,
                       in_channels=c, metadata=metadata_for(source))
    diff = verify_onnx(path, source.module, source.input_size,
                       batch=1 if args.dynamic_batch else args.batch, in_channels=c)
    n = 'batch' if args.dynamic_batch else str(args.batch)
    inside = 'float16 weights and arithmetic' if args.fp16 else 'float32 throughout'
    print(f'wrote {path} (opset {args.opset}, model {card.name}, {inside}, '
          f'{path.stat().st_size / 1e6:.2f} MB, weights SHA-256 {source.sha256[:12]}...)')
    if card.architecture == 'NavActor':
        n_actions = int(card.kwargs.get('n_actions', 3))
        print(f"  input  '{INPUT_NAME}':  ({n}, {c}, {h}, {w}) float32: the card's frame stack "
              'and turn-memory planes in [-1, 1]')
        print(f"  output '{OUTPUT_NAME}': ({n}, {n_actions}) float32 action logits")
    elif card.architecture == 'DomainScoreNet':
        threshold = (card.extra or {}).get('threshold')
        below = '' if threshold is None else f'; card threshold {float(threshold):.4g}'
        print(f"  input  '{INPUT_NAME}':  ({n}, 3, {h}, {w}) float32 RGB in [-1, 1]")
        print(f"  output '{OUTPUT_NAME}': ({n},) float32 domain scores (higher = more "
              f'in-domain{below})')
    else:
        print(f"  input  '{INPUT_NAME}':  ({n}, 3, {h}, {w}) float32 RGB in [-1, 1]")
        print(f"  output '{OUTPUT_NAME}': ({n}, 3, {h}, {w}) float32 RGB in [-1, 1]")
    print(f'  onnxruntime vs torch fp32 max abs diff: {diff:.3g} (tolerance {tolerance:g})')
    if not diff <= tolerance:
        raise RuntimeError(f'{path}: onnxruntime output differs from torch by {diff:.3g} '
                           f'(> tolerance {tolerance})')
    return 0
