"""Every shipped network traces as torch-tensorrt and torch.compile trace it (issue #38).

torch-tensorrt's dynamo path (``torch_tensorrt.compile(..., ir='dynamo')``) starts with
``torch.export.export(module, inputs, strict=False)`` under ``torch.no_grad()``, with fake
tensors; ``torch.compile`` traces with fake tensors too. An inference cache keyed on
``data_ptr()`` (``ResizeConv2d._inference_phase_weight``) made both fail on the shipped
generator, so no TensorRT engine could ever be built. These run on CPU in seconds, without
TensorRT: the part of the TensorRT build that can be checked on any machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vr_goggles.weights import SHIPPED_DIR, build_module

#: Every shipped model card (generators, segmenters, policies).
CARDS = sorted(p.stem for p in Path(SHIPPED_DIR).glob('*.json'))


def _distinct_architectures() -> list[str]:
    """One card per (architecture, keyword sizes): what ``torch.compile`` needs to see."""
    seen: dict[str, str] = {}
    for name in CARDS:
        card = json.loads((Path(SHIPPED_DIR) / f'{name}.json').read_text(encoding='utf-8'))
        key = json.dumps([card['architecture'], card['kwargs']], sort_keys=True)
        seen.setdefault(key, name)
    return sorted(seen.values())


def _load(name: str):
    module, card = build_module(name)
    module.eval()
    h, w = (int(s) for s in card.input_size)
    channels = int(card.kwargs.get('in_channels', 3))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, channels, h, w, generator=g) * 2 - 1
    return module, x


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def test_every_shipped_card_is_covered():
    """The list is read from the weights folder, so a new shipped card is traced too."""
    assert len(CARDS) >= 9
    assert {'goggles_vr_goggles', 'goggles_cyclegan', 'goggles_cycada', 'segmenter',
            'policy_sim'} <= set(CARDS)


@pytest.mark.parametrize('name', CARDS)
def test_no_grad_non_strict_export(name):
    """``torch.export.export(strict=False)`` under no_grad, as torch-tensorrt traces, = eager.

    The eager call first fills the inference cache, as a running node would have done.
    """
    module, x = _load(name)
    with torch.no_grad():
        ref = module(x)
        program = torch.export.export(module, (x,), strict=False)
        got = program.module()(x)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', _distinct_architectures())
def test_no_grad_torch_compile_fullgraph(name):
    """``torch.compile(fullgraph=True)`` traces every architecture without a graph break.

    ``aot_eager`` runs dynamo and AOT autograd with fake tensors (what fails on a
    ``data_ptr()`` cache) without Inductor's C++ build; Inductor itself is covered by the
    torch engine's compile tests in test_engines.py.
    """
    torch._dynamo.reset()
    module, x = _load(name)
    with torch.no_grad():
        ref = module(x)  # fills the eager cache first, as in a running node
        compiled = torch.compile(module, fullgraph=True, backend='aot_eager')
        got = compiled(x)
        again = compiled(x)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(again, ref, rtol=1e-5, atol=1e-5)


def test_eager_no_grad_still_uses_the_cache():
    """Eager inference keeps the cached phase weight (the fix only bypasses it when tracing)."""
    from vr_goggles.models.generator import ResizeConv2d

    module, x = _load('goggles_vr_goggles')
    convs = [m for m in module.modules() if isinstance(m, ResizeConv2d)]
    assert convs
    with torch.no_grad():
        first = module(x)
        cached = [c._phase_cache[1] for c in convs]
        second = module(x)
    assert all(c._phase_cache[1] is w for c, w in zip(convs, cached))
    assert torch.equal(first, second)
