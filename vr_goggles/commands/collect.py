"""``vr-goggles collect --domain D --n N --out DIR``: frames and labels from the ChairNav sim.

Runs ``python -m sim_training.collect`` with ARGS as given (``vr-goggles collect --help`` of
that script lists them): ``DIR/images/*.png`` (RGB), ``DIR/labels/*.png`` (mono8 class ids),
``DIR/classes.json`` and ``DIR/meta.json``, the folder format every trainer reads. A user with
their own simulator writes the same folder from it instead (docs/your_robot.md).
"""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``collect``."""
    p = subparsers.add_parser('collect', help='sim frames + labels from the ChairNav simulator',
                              description=__doc__, add_help=False, prefix_chars='+',
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('args', nargs=argparse.REMAINDER,
                   help="sim_training.collect's arguments (`vr-goggles collect --help`)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Forward to the collector; its exit status is ours."""
    from vr_goggles.commands.forward import forward

    return forward('sim_training.collect', args.args)
