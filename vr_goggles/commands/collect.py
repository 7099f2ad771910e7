"""``vr-goggles collect --domain D --n N --out DIR``: frames and labels from the ChairNav sim.

Runs ``python -m sim_training.collect`` with ARGS as given (``vr-goggles collect --help`` of
that script lists them): ``DIR/images/*.png`` (RGB), ``DIR/labels/*.png`` (mono8 class ids),
``DIR/classes.json`` and ``DIR/meta.json``, the folder format every trainer reads. A user with
their own simulator writes the same folder from it instead (docs/your_robot.md).
"""

from __future__ import annotations

import argparse

from vr_goggles.commands.forward import add_forwarding_parser


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``collect``."""
    return add_forwarding_parser(subparsers, 'collect', 'sim_training.collect',
                                 help='sim frames + labels from the ChairNav simulator',
                                 description=__doc__)
