"""Argument helpers shared by the engine verbs (export, compile, translate, bench)."""

from __future__ import annotations

import argparse
from typing import Any

from vr_goggles.engines.base import PRECISIONS


def add_model_arg(parser: argparse.ArgumentParser) -> None:
    """``--model``: shipped model name or weights path (``X``, ``X.safetensors``, ``X.json``)."""
    parser.add_argument('--model', default='goggles_vr_goggles',
                        help='shipped model name or weights path (default: %(default)s)')


def add_random_init_args(parser: argparse.ArgumentParser) -> None:
    """``--random-init`` and the generator sizes: benchmark without trained weights."""
    g = parser.add_argument_group('random-init model (instead of --model)')
    g.add_argument('--random-init', action='store_true',
                   help='use a randomly initialised ResnetGenerator (speed does not depend on '
                        'the weights)')
    g.add_argument('--ngf', type=int, default=16, help='generator width (default: %(default)s)')
    g.add_argument('--n-blocks', type=int, default=6,
                   help='residual blocks (default: %(default)s)')
    g.add_argument('--n-down', type=int, default=2,
                   help='stride-2 downsamplings (default: %(default)s)')


def add_engine_args(parser: argparse.ArgumentParser, *, default_device: str = 'cpu') -> None:
    """``--engine``, ``--device``, ``--precision``, ``--compile``, engine-file options."""
    parser.add_argument('--engine', default='auto',
                        choices=('auto', 'tensorrt', 'torch', 'onnxruntime'),
                        help='inference backend (default: %(default)s)')
    parser.add_argument('--device', default=default_device,
                        help='cpu, cuda[:N] or auto (default: %(default)s)')
    parser.add_argument('--precision', default='fp32', choices=PRECISIONS,
                        help='arithmetic precision (default: %(default)s)')
    parser.add_argument('--compile', action='store_true',
                        help='allow torch.compile (tens of seconds at start-up)')
    parser.add_argument('--engine-file-path', default=None,
                        help='TensorRT engine file (default: in the cache folder)')
    parser.add_argument('--force-engine-update', action='store_true',
                        help='rebuild the TensorRT engine even if the saved one matches')


def random_source(args: Any, input_size: tuple[int, int], seed: int = 0):
    """A random-init generator as (ModelSource, ModelCard) for ``--random-init``."""
    import torch

    from vr_goggles.engines.base import state_dict_sha256
    from vr_goggles.engines.factory import ModelSource
    from vr_goggles.models import build
    from vr_goggles.weights import ModelCard

    kwargs = {'ngf': int(args.ngf), 'n_blocks': int(args.n_blocks), 'n_down': int(args.n_down)}
    torch.manual_seed(seed)
    module = build('ResnetGenerator', **kwargs).eval()
    name = f'random_ngf{args.ngf}_b{args.n_blocks}_d{args.n_down}'
    card = ModelCard(name=name, architecture='ResnetGenerator', kwargs=kwargs,
                     input_size=[int(input_size[0]), int(input_size[1])])
    sha = state_dict_sha256(module)
    card.sha256 = sha
    return ModelSource(module, (int(input_size[0]), int(input_size[1])), sha, name,
                       architecture='ResnetGenerator', kwargs=dict(kwargs)), card


def load_source(args: Any, input_size: tuple[int, int] | None = None):
    """``--model`` or ``--random-init`` -> (ModelSource, ModelCard)."""
    if getattr(args, 'random_init', False):
        return random_source(args, input_size or (64, 64))
    from vr_goggles.engines.factory import source_from_weights
    from vr_goggles.weights import WeightsError

    try:
        return source_from_weights(args.model)
    except WeightsError as e:
        hint = (' (pass --random-init to benchmark an untrained generator of the same size)'
                if hasattr(args, 'random_init') else '')
        raise ValueError(f'{e}{hint}') from None
