"""``vr-goggles select SNAPSHOT... --json FILE``: rank translator snapshots by closed-loop driving.

Runs ``python -m sim_training.select_translator`` with ARGS as given (``vr-goggles select
--help`` of that script lists them): the sim policy drives behind each candidate generator in
the ChairNav simulator's training layouts, and ``--json`` ranks them, best first
(``ranking[0].model``). It needs the simulator: for a robot whose world ChairNav is not, pick a
snapshot on a held-out bag with ``vr-goggles replay`` instead (docs/your_robot.md).
"""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``select``."""
    p = subparsers.add_parser('select', help='rank translator snapshots by driving in the sim',
                              description=__doc__, add_help=False, prefix_chars='+',
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('args', nargs=argparse.REMAINDER,
                   help="select_translator's arguments (`vr-goggles select --help`)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Forward to select_translator; its exit status is ours."""
    from vr_goggles.commands.forward import forward

    return forward('sim_training.select_translator', args.args)
