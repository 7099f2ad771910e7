"""``vr-goggles bench``: latency, throughput and memory per backend x resolution x batch.

Every row: warm-up calls, then ``--iters`` timed calls; p50/p90/p99 latency per batch (ms),
throughput (images/s), peak memory added (CPU: resident-set high-water mark, reset through
/proc/self/clear_refs; CUDA: max_memory_allocated), the speed-up over eager torch fp32 measured in
the same run at the same size and batch, and the max abs output difference from it.

Backend specs: ``backend[-precision][-compile][-cl][-graphs]`` with backend torch, onnxruntime or
tensorrt, e.g. ``torch``, ``torch-bf16``, ``torch-compile-bf16``, ``torch-cl``, ``onnxruntime``,
``torch-fp16-graphs``, ``tensorrt-fp16``. Eager ``torch`` fp32 is always measured first.
A row's ``device`` is where its engine ran (``null`` when it did not run): TensorRT rows are
skipped with the reason under ``--device cpu``, never timed on the GPU under a cpu label. The
table is printed once, row by row as each size and batch finishes; the exit status is 1 when
none of the requested backends ran.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from typing import Any

from vr_goggles.engines.cli_support import add_model_arg, add_random_init_args

CPU_DEFAULT = ('torch', 'torch-cl', 'torch-bf16', 'onnxruntime', 'torch-compile',
               'torch-compile-bf16')
CUDA_DEFAULT = ('torch', 'torch-graphs', 'torch-fp16', 'torch-fp16-graphs', 'onnxruntime',
                'tensorrt-fp32', 'tensorrt-fp16')
#: Keys present in every result row (``None`` where not applicable or skipped).
ROW_FIELDS = ('backend', 'engine', 'device', 'precision', 'compile', 'channels_last',
              'cuda_graphs', 'size', 'batch', 'warmup', 'iters', 'status', 'error', 'setup_s',
              'p50_ms', 'p90_ms', 'p99_ms', 'mean_ms', 'throughput_ips', 'peak_mem_mb',
              'mem_kind', 'speedup_vs_eager_fp32', 'max_abs_diff_vs_eager_fp32')


def _int_list(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(',') if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'expected comma-separated integers, got {text!r}') from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f'expected positive integers, got {text!r}')
    return vals


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``bench``."""
    p = subparsers.add_parser('bench', help='benchmark inference backends',
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arg(p)
    add_random_init_args(p)
    p.add_argument('--json', required=True, help='write all results here')
    p.add_argument('--backends', nargs='+', default=None,
                   help=f'backend specs (CPU default: {" ".join(CPU_DEFAULT)}; '
                        f'CUDA default: {" ".join(CUDA_DEFAULT)})')
    p.add_argument('--sizes', type=_int_list, default=None,
                   help="square input sizes, e.g. 64,128 (default: the model card's size)")
    p.add_argument('--batches', type=_int_list, default=[1], help='batch sizes (default: 1)')
    p.add_argument('--iters', type=int, default=30, help='timed calls per row (default: 30)')
    p.add_argument('--warmup', type=int, default=3, help='untimed calls first (default: 3)')
    p.add_argument('--device', default='cpu', help='cpu or cuda[:N] (default: cpu)')
    p.add_argument('--threads', type=int, default=None,
                   help='torch/onnxruntime CPU threads (default: torch default)')
    p.set_defaults(func=run)
    return p


def _host_info(device: str) -> dict[str, Any]:
    import torch

    from vr_goggles.engines.factory import _cpu_model
    info = {'python': platform.python_version(), 'torch': torch.__version__,
            'cpu': _cpu_model(), 'threads': torch.get_num_threads(), 'device': device}
    try:
        import onnxruntime
        info['onnxruntime'] = onnxruntime.__version__
    except ImportError:
        info['onnxruntime'] = None
    if device.startswith('cuda') and torch.cuda.is_available():
        info['gpu'] = torch.cuda.get_device_name(device)
        info['cuda'] = torch.version.cuda
    return info


def setup_row(variant: Any, source: Any, *, device: str, batch: int, warmup: int,
              iters: int, x: Any) -> tuple[dict[str, Any], Any, Any]:
    """Build one variant and warm it up; returns (row, engine or None, output for ``x``).

    Peak memory covers building the engine and the warm-up calls (workspace, compiled kernels,
    CUDA graph pools); the timed calls reuse those allocations.
    """
    from vr_goggles.bench.engines import PeakMemory
    from vr_goggles.engines.base import EngineUnavailable
    from vr_goggles.engines.factory import create_engine

    row: dict[str, Any] = dict.fromkeys(ROW_FIELDS)
    row.update(backend=variant.label, device=device, precision=variant.precision,
               compile=variant.compile, channels_last=variant.channels_last,
               cuda_graphs=bool(variant.cuda_graphs), size=list(source.input_size),
               batch=batch, warmup=warmup, iters=iters)
    try:
        with PeakMemory(device) as mem:
            t0 = time.perf_counter()
            engine = create_engine(variant.backend, source, device=device,
                                   precision=variant.precision, compile=variant.compile,
                                   channels_last=variant.channels_last,
                                   cuda_graphs=bool(variant.cuda_graphs), batch_size=batch)
            out = engine(x)  # first call: includes torch.compile / graph capture
            row['setup_s'] = time.perf_counter() - t0
            for _ in range(max(0, warmup - 1)):
                engine(x)
        row.update(engine=engine.name, device=str(engine.device), peak_mem_mb=mem.peak_mb,
                   mem_kind=mem.kind, status='ok')
        return row, engine, out
    except EngineUnavailable as e:
        row.update(status='skipped', error=e.reason, device=None)
    except Exception as e:  # one failing backend must not lose the other rows
        row.update(status='error', error=f'{type(e).__name__}: {str(e)[:500]}', device=None)
    return row, None, None


def measure_grid(variants: list[Any], source: Any, *, device: str, batch: int, warmup: int,
                 iters: int, x: Any, rounds: int = 5) -> list[dict[str, Any]]:
    """All variants at one size and batch; timed calls interleaved in ``rounds`` rounds.

    Interleaving spreads load changes on a shared machine over every backend instead of
    penalising whichever happened to run while a neighbour was busy. The first variant is the
    eager fp32 baseline for speed-ups and output differences.
    """
    import numpy as np

    from vr_goggles.bench.engines import latency_stats
    from vr_goggles.engines.timing import time_engine

    setups = [setup_row(v, source, device=device, batch=batch, warmup=warmup, iters=iters, x=x)
              for v in variants]
    live = [(row, eng) for row, eng, _ in setups if eng is not None]
    times: dict[int, list[float]] = {id(row): [] for row, _ in live}
    per_round = [iters // rounds + (1 if i < iters % rounds else 0) for i in range(rounds)]
    for n in per_round:
        for row, eng in live:
            if n:
                times[id(row)].extend(time_engine(eng, x, warmup=0, iters=n))
    base_row, _, ref = setups[0]
    rows = []
    for row, eng, out in setups:
        if eng is not None:
            row.update(latency_stats(np.asarray(times[id(row)]), batch))
            if ref is not None:
                row['max_abs_diff_vs_eager_fp32'] = float(np.max(np.abs(out - ref)))
        rows.append(row)
    if base_row['status'] == 'ok':
        for row in rows:
            if row['status'] == 'ok':
                row['speedup_vs_eager_fp32'] = (row['throughput_ips']
                                                / base_row['throughput_ips'])
    return rows


def format_table(rows: list[dict[str, Any]], *, header: bool = True) -> str:
    """Fixed-width text table of the result rows (``header=False``: the rows only)."""
    head = (f'{"backend":<22} {"size":>7} {"batch":>5} {"p50 ms":>8} {"p90 ms":>8} '
            f'{"p99 ms":>8} {"img/s":>8} {"peak MB":>8} {"speedup":>8} {"max diff":>9}')
    lines = [head, '-' * len(head)] if header else []
    for r in rows:
        size = f'{r["size"][0]}x{r["size"][1]}'
        if r['status'] != 'ok':
            lines.append(f'{r["backend"]:<22} {size:>7} {r["batch"]:>5} {r["status"]}: '
                         f'{r["error"]}'[:240])
            continue
        diff = r['max_abs_diff_vs_eager_fp32']
        peak = r['peak_mem_mb']
        lines.append(
            f'{r["backend"]:<22} {size:>7} {r["batch"]:>5} {r["p50_ms"]:>8.2f} '
            f'{r["p90_ms"]:>8.2f} {r["p99_ms"]:>8.2f} {r["throughput_ips"]:>8.1f} '
            f'{"-" if peak is None else f"{peak:.1f}":>8} '
            f'{r["speedup_vs_eager_fp32"] or 0:>7.2f}x '
            f'{"-" if diff is None else f"{diff:.2g}":>9}')
    return '\n'.join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the grid, write JSON, print the table."""
    import numpy as np
    import torch

    from vr_goggles.engines.cli_support import load_source
    from vr_goggles.engines.factory import ModelSource, Variant
    from vr_goggles.weights import atomic_write_bytes

    if args.threads:
        torch.set_num_threads(int(args.threads))
    if args.iters < 1:
        raise ValueError(f'--iters must be >= 1, got {args.iters}')
    device = args.device
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise RuntimeError(f'--device {device}: torch {torch.__version__} sees no CUDA GPU')
    first_size = (args.sizes[0], args.sizes[0]) if args.sizes else None
    source, card = load_source(args, first_size)
    sizes = [(s, s) for s in args.sizes] if args.sizes else [source.input_size]
    stride = 2 ** int(card.kwargs.get('n_down', 2))
    bad = [s for s, _ in sizes if s % stride]
    if bad:
        raise ValueError(f'--sizes {bad}: must be multiples of {stride} for this generator')
    specs = args.backends or (CUDA_DEFAULT if device.startswith('cuda') else CPU_DEFAULT)
    variants = [Variant.parse(s) for s in specs]
    requested = {v.label for v in variants}
    baseline = Variant('torch', 'fp32', cuda_graphs=False)
    variants = [baseline] + [v for v in variants if v != baseline and v.label != 'torch']
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(0)
    for size in sizes:
        src = ModelSource(source.module, size, source.sha256, source.stem)
        for batch in args.batches:
            x = rng.uniform(-1, 1, size=(batch, 3, *size)).astype(np.float32)
            grid = measure_grid(variants, src, device=device, batch=batch, warmup=args.warmup,
                                iters=args.iters, x=x)
            print(format_table(grid, header=not rows), flush=True)
            rows += grid
    best = {}
    for r in rows:
        if r['status'] != 'ok':
            continue
        key = f'{r["size"][0]}x{r["size"][1]}/b{r["batch"]}'
        if key not in best or r['throughput_ips'] > best[key]['throughput_ips']:
            best[key] = {'backend': r['backend'], 'throughput_ips': r['throughput_ips'],
                         'speedup_vs_eager_fp32': r['speedup_vs_eager_fp32']}
    report = {'model': card.name, 'architecture': card.architecture, 'kwargs': card.kwargs,
              'random_init': bool(args.random_init), 'weights_sha256': source.sha256,
              'host': _host_info(device),
              'timestamp': datetime.datetime.now(datetime.timezone.utc).isoformat(),
              'sizes': [list(s) for s in sizes], 'batches': list(args.batches),
              'backends': [v.label for v in variants], 'iters': args.iters,
              'warmup': args.warmup, 'results': rows, 'best': best}
    atomic_write_bytes(args.json, (json.dumps(report, indent=2) + '\n').encode())
    print()
    for key, b in best.items():
        print(f'best at {key}: {b["backend"]} {b["throughput_ips"]:.1f} img/s '
              f'({(b["speedup_vs_eager_fp32"] or 0):.2f}x eager fp32)')
    print(f'wrote {args.json}')
    ran = {r['backend'] for r in rows if r['status'] == 'ok'} & requested
    if not ran:
        reasons = sorted({f'{r["backend"]}: {r["error"]}' for r in rows
                          if r['backend'] in requested and r['status'] != 'ok'})
        print(f'vr-goggles bench: none of the requested backends ran ({"; ".join(reasons)})',
              file=sys.stderr)
        return 1
    return 0
