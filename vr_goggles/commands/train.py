"""``vr-goggles train segmenter|translator|policy|domain-score ARGS``: the trainers.

``segmenter`` runs ``python -m sim_training.train_segmenter``, ``translator``
``sim_training.train_translator`` and ``policy`` ``sim_training.train_policy``, with ARGS as
given (``vr-goggles train translator --help`` lists them). Each trainer refuses an output that
holds a run unless ``--resume`` or ``--overwrite``, and on Ctrl-C saves a checkpoint and exits
130. The training code runs in a subprocess: the robot runtime never imports it.
"""

from __future__ import annotations

import argparse

#: what -> the module it runs
TRAINERS = {
    'segmenter': 'sim_training.train_segmenter',
    'domain-score': 'sim_training.train_domain_score',
    'translator': 'sim_training.train_translator',
    'policy': 'sim_training.train_policy',
}


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``train``."""
    p = subparsers.add_parser('train', help='train a segmenter, translator or policy',
                              description=__doc__, add_help=True,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('what', choices=sorted(TRAINERS), help='what to train')
    p.add_argument('args', nargs=argparse.REMAINDER,
                   help="the trainer's flags (see `vr-goggles train WHAT --help`)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Forward to the trainer; its exit status is ours."""
    from vr_goggles.commands.forward import forward

    return forward(TRAINERS[args.what], args.args)
