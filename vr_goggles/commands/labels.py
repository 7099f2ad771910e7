"""``vr-goggles labels import SRC... --out DIR/labels``: labelme / CVAT labels -> mono8 class ids.

labelme JSON polygons and rectangles, and CVAT "Segmentation mask 1.1" exports (folder or .zip),
through a class-name table (``--classes classes.json``, default the project's classes). An
unknown class name, an unknown colour or a mask of another size than its image (``--images``)
is refused with the file and the reason, and nothing is written. The conversion is
:mod:`sim_training.labels_import`, run in a subprocess: the robot runtime never imports training
code (import-linter contract).
"""

from __future__ import annotations

import argparse
import subprocess
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``labels`` (one action so far: ``import``)."""
    p = subparsers.add_parser('labels', help='import labels from labelme / CVAT as mono8 ids',
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('action', choices=['import'], help='import: convert labelling-tool exports')
    p.add_argument('args', nargs=argparse.REMAINDER,
                   help='SRC... --out DIR [--images DIR] [--classes JSON] [--background NAME]'
                        ' (see `vr-goggles labels import --help`)')
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Forward to ``python -m sim_training.labels_import``; its exit status is ours."""
    from vr_goggles.commands.reproduce import child_env

    return subprocess.call([sys.executable, '-m', 'sim_training.labels_import', *args.args],
                           env=child_env())
