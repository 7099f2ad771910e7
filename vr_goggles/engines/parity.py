"""Parity of a compiled engine with torch: fixed inputs, tolerances per precision, one rebuild.

A TensorRT engine is built once and then reused for months; nothing else compares its output
with the network it came from. So every engine freshly built or loaded is run on fixed inputs
next to the torch module in float32 on CPU (the reference), and refused when it differs by more
than the tolerance of its precision. Pure numpy around two callables, so the whole policy is
tested on machines without TensorRT, with a perturbed module standing in for a bad engine.

Tolerances, on the generator's [-1, 1] output scale. Measured on CPU for the three shipped
generators (torch 2.13, the whole network cast to the precision, 4 x 64 x 64 uniform-noise
inputs): fp16 max 0.0067 / mean 0.00022, bf16 max 0.055 / mean 0.0018 abs difference. The
tolerances leave 3-5x of that for other kernels (TensorRT picks its own convolution algorithms);
fp32 allows TF32, which torch-tensorrt uses for fp32 layers unless ``disable_tf32`` (same
10-bit mantissa as fp16). A wrong engine (stale weights, a broken layer, NaNs) is off by tenths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from vr_goggles.engines.base import EngineParityError, check_precision

#: Largest accepted max / mean abs difference from torch fp32, per engine precision.
PARITY_TOLERANCES: dict[str, dict[str, float]] = {
    'fp32': {'max_abs': 0.02, 'mean_abs': 0.002},
    'fp16': {'max_abs': 0.03, 'mean_abs': 0.002},
    'bf16': {'max_abs': 0.15, 'mean_abs': 0.01},
}

#: How :func:`parity_inputs` makes its inputs (recorded in the sidecar next to the numbers).
PARITY_INPUTS = ('uniform noise in [-1, 1] (numpy default_rng seed 0) and a smooth colour '
                 'ramp, each at the engine static shape')


def parity_inputs(shape: tuple[int, ...], seed: int = 0) -> list[np.ndarray]:
    """Two fixed float32 batches of ``shape`` (N, C, H, W) in [-1, 1].

    Noise drives every pixel through the whole range; the ramp is image-like (smooth, so the
    instance norms see a photo's statistics rather than noise's).
    """
    n, c, h, w = (int(s) for s in shape)
    noise = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n, c, h, w))
    yy, xx = np.meshgrid(np.linspace(-1.0, 1.0, h), np.linspace(-1.0, 1.0, w), indexing='ij')
    ramp = np.stack([np.sin(np.pi * (xx * (k + 1) + yy) / 2.0) for k in range(c)])
    ramp = np.broadcast_to(ramp, (n, c, h, w))
    return [np.ascontiguousarray(noise, dtype=np.float32),
            np.ascontiguousarray(ramp, dtype=np.float32)]


def parity_report(candidate: Callable[[np.ndarray], np.ndarray],
                  reference: Callable[[np.ndarray], np.ndarray], inputs: list[np.ndarray],
                  precision: str) -> dict[str, Any]:
    """Run both callables on ``inputs``; return the differences and whether they pass.

    A non-finite output or a shape mismatch fails with ``max_abs = inf``.
    """
    precision = check_precision(precision)
    tol = PARITY_TOLERANCES[precision]
    worst, total, count = 0.0, 0.0, 0
    for x in inputs:
        got = np.asarray(candidate(x), dtype=np.float64)
        ref = np.asarray(reference(x), dtype=np.float64)
        if got.shape != ref.shape or not np.all(np.isfinite(got)):
            worst, total, count = float('inf'), float('inf'), 1
            break
        diff = np.abs(got - ref)
        worst = max(worst, float(diff.max()))
        total += float(diff.sum())
        count += diff.size
    mean = total / max(count, 1)
    passed = worst <= tol['max_abs'] and mean <= tol['mean_abs']
    return {'precision': precision, 'max_abs': worst, 'mean_abs': mean,
            'tolerance': dict(tol), 'inputs': PARITY_INPUTS, 'passed': bool(passed)}


def describe(report: dict[str, Any]) -> str:
    """One line: the numbers against the tolerances."""
    tol = report['tolerance']
    return (f'max abs diff {report["max_abs"]:.3g} (tolerance {tol["max_abs"]:g}), mean '
            f'{report["mean_abs"]:.3g} (tolerance {tol["mean_abs"]:g}) vs torch fp32, '
            f'{report["precision"]}')


def checked_engine(*, build: Callable[[], Any], check: Callable[[Any], dict[str, Any]],
                   load: Callable[[], Any] | None = None, backend: str = 'tensorrt',
                   what: str = 'engine', log: Any = None) -> tuple[Any, dict[str, Any], str]:
    """Return ``(engine, report, how)`` for an engine that passed :func:`parity_report`.

    ``how`` is ``'loaded'``, ``'built'`` or ``'rebuilt'``. The saved engine (``load``) or a
    fresh build is checked first; a failing one is rebuilt once (TensorRT's tactic choice is
    timed, so a rebuild can differ) and checked again; a second failure raises
    :class:`EngineParityError` with both sets of numbers.
    """
    attempts: list[tuple[str, Callable[[], Any]]] = (
        [('loaded', load)] if load is not None else [('built', build)])
    attempts.append(('rebuilt', build))
    failures = []
    for how, make in attempts:
        engine = make()
        report = check(engine)
        if report['passed']:
            if log is not None:
                log.info('%s: %s %s passes parity: %s', backend, how, what, describe(report))
            return engine, report, how
        failures.append(f'{how}: {describe(report)}')
        if log is not None:
            log.warning('%s: %s %s fails parity (%s)%s', backend, how, what, describe(report),
                        '; rebuilding once' if how != 'rebuilt' else '')
    raise EngineParityError(backend, f'{what} refused: it does not reproduce torch on the fixed '
                                     f'parity inputs ({"; ".join(failures)})', report)
