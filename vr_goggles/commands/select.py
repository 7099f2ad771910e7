"""``vr-goggles select SNAPSHOT... --json FILE``: rank translator snapshots by closed-loop driving.

Runs ``python -m sim_training.select_translator`` with ARGS as given (``vr-goggles select
--help`` of that script lists them): the sim policy drives behind each candidate generator in
the ChairNav simulator's training layouts, and ``--json`` ranks them, best first
(``ranking[0].model``). It needs the simulator: for a robot whose world ChairNav is not, pick a
snapshot on a held-out bag with ``vr-goggles replay`` instead (docs/your_robot.md).
"""

from __future__ import annotations

import argparse

from vr_goggles.commands.forward import add_forwarding_parser


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``select``."""
    return add_forwarding_parser(subparsers, 'select', 'sim_training.select_translator',
                                 help='rank translator snapshots by driving in the sim',
                                 description=__doc__)
