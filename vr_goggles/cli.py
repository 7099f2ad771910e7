"""``vr-goggles <verb>``: the one user-facing command.

Each verb lives in ``vr_goggles/commands/<verb>.py`` and provides ``add_parser(subparsers)``,
which registers its arguments and sets ``func`` to a ``run(args) -> int``. Verb modules import
heavy dependencies (torch, simulator) inside ``run`` so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import shlex
import sys

from vr_goggles import __version__

#: verb -> module under vr_goggles.commands, in the order shown by --help.
VERBS = {
    'demo': 'demo',
    'translate': 'translate',
    'export': 'export',
    'compile': 'compile',
    'bench': 'bench',
    'replay': 'replay',
    'reproduce': 'reproduce',
    'labels': 'labels',
    'frames': 'frames',
    'collect': 'collect',
    'train': 'train',
    'select': 'select',
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every installed verb."""
    parser = argparse.ArgumentParser(
        prog='vr-goggles',
        description='Real-to-sim image translation for sim-trained robot policies.')
    parser.add_argument('--version', action='version', version=f'vr-goggles {__version__}')
    parser.add_argument('-v', '--verbose', action='store_true', help='debug logging')
    sub = parser.add_subparsers(dest='verb', metavar='VERB')
    for module in VERBS.values():
        name = f'vr_goggles.commands.{module}'
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vr-goggles`` console script."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    # The exact command, for reports and model cards (reproducibility).
    args.command_line = shlex.join(['vr-goggles', *argv])
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format='%(levelname)s %(name)s: %(message)s')
    if not getattr(args, 'func', None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        # Bad input is the user's to fix: one clear line, no traceback.
        print(f'vr-goggles {args.verb}: error: {e}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
