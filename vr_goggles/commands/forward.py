"""Run a training module in a subprocess for a verb (``train``, ``select``, ``collect``).

The robot runtime never imports ``sim_training`` (import-linter contract): the verbs run
``python -m sim_training.X ARGS`` with this interpreter and this checkout first on
``PYTHONPATH`` (:func:`vr_goggles.commands.reproduce.child_env`), and return its exit status.

Ctrl-C in a terminal reaches the child and this process alike. The child handles it (the
trainers save a checkpoint and exit 130); this process only waits for it, so the user sees the
child's one line, not a second traceback from here. A Python handler, not ``SIG_IGN``, is what
this process installs: an ignored SIGINT would be inherited by the child and Ctrl-C would do
nothing.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from typing import Any


def add_forwarding_parser(subparsers: Any, name: str, module: str, *, help: str,
                          description: str) -> argparse.ArgumentParser:
    """A verb whose arguments all go to ``python -m module`` (its own ``--help`` included)."""
    p = subparsers.add_parser(name, help=help, description=description, add_help=False,
                              prefix_chars='+',
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('args', nargs=argparse.REMAINDER,
                   help=f"{module}'s arguments (`vr-goggles {name} --help`)")
    p.set_defaults(func=lambda args: forward(module, args.args))
    return p


def forward(module: str, argv: list[str]) -> int:
    """``python -m module *argv`` in a subprocess; its exit status (130 after a Ctrl-C)."""
    from vr_goggles.commands.reproduce import child_env

    def wait_for_child(signum: int, frame: Any) -> None:
        """The child got the same SIGINT and decides what to do; we wait for its exit."""

    previous = signal.signal(signal.SIGINT, wait_for_child)
    try:
        proc = subprocess.Popen([sys.executable, '-m', module, *argv], env=child_env())
        rc = proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    return 130 if rc == -signal.SIGINT else rc
