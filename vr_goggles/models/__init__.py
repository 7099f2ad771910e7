"""Network definitions, built by name from a model card's ``architecture`` + ``kwargs``."""

from __future__ import annotations

import importlib

#: architecture name -> "module:Class". Modules import lazily so the registry costs nothing.
ARCHITECTURES: dict[str, str] = {
    'ResnetGenerator': 'vr_goggles.models.generator:ResnetGenerator',
    'PatchDiscriminator': 'vr_goggles.models.discriminator:PatchDiscriminator',
    'SegmentationNet': 'vr_goggles.models.segmenter:SegmentationNet',
    'NavActor': 'vr_goggles.models.actor:NavActor',
    'DomainScoreNet': 'vr_goggles.models.domain_score_net:DomainScoreNet',
}


def get_class(architecture: str):
    """Return the class registered under ``architecture`` (KeyError lists the known ones)."""
    try:
        target = ARCHITECTURES[architecture]
    except KeyError:
        raise KeyError(f'unknown architecture {architecture!r}; known: '
                       f'{sorted(ARCHITECTURES)}') from None
    module, cls = target.split(':')
    return getattr(importlib.import_module(module), cls)


def build(architecture: str, **kwargs):
    """Instantiate ``architecture`` with its keyword sizes."""
    return get_class(architecture)(**kwargs)
