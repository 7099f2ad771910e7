"""Tiny random-init weights for engine, goggles and CLI tests (fast, no shipped files)."""

from __future__ import annotations

from pathlib import Path

import torch

from vr_goggles.models import build
from vr_goggles.weights import ModelCard, save

#: Input size and generator sizes of the tiny test model.
SIZE = (32, 32)
KWARGS = {'ngf': 4, 'n_blocks': 1, 'n_down': 2}


def save_tiny_generator(stem: Path, seed: int = 0) -> Path:
    """Save a seeded tiny ResnetGenerator with its card at ``stem``; return the tensors path."""
    torch.manual_seed(seed)
    module = build('ResnetGenerator', **KWARGS)
    card = ModelCard(name=stem.name, architecture='ResnetGenerator', kwargs=dict(KWARGS),
                     input_size=list(SIZE))
    return save(stem, module.state_dict(), card)
