"""What makes a training command behave like a tool: Ctrl-C, reruns, small domains.

* :class:`StopOnInterrupt`: the first Ctrl-C (SIGINT) asks the loop to stop after the step it is
  in, so the checkpoint it then writes is a state an uninterrupted run also passes through (a
  ``KeyboardInterrupt`` raised inside ``backward()`` would leave a half-updated step); a second
  Ctrl-C interrupts at once, as usual.
* :class:`TrainingInterrupted`: raised by a loop that stopped that way after saving; the CLI
  prints it as one line and exits 130 (the shell's code for SIGINT).
* :func:`refuse_existing_run`: a rerun on an ``--out`` that holds a run neither restarts it
  silently at step 0 nor overwrites its checkpoint; it names the flags that resume or overwrite.
* :func:`small_domain_warning`: a domain of a handful of frames trains without error, and
  without learning anything that transfers; say so at the start.
* :func:`run_as_tool` / :func:`command_line`: what every trainer's ``main`` does with them.
"""

from __future__ import annotations

from collections.abc import Callable
import os
from pathlib import Path
import shlex
import signal
import sys
import threading
from typing import Any

#: Fewer frames than this in a domain gets a warning (a 3-frame --real trained without a word).
#: The shipped translators used 2,000 sim and 1,900 real frames (docs/results.md); a few
#: hundred distinct views is the least worth a long run.
MIN_DOMAIN_FRAMES = 200

EXIT_INTERRUPTED = 130


class TrainingInterrupted(Exception):
    """The run stopped on Ctrl-C after writing its checkpoint (the message says where)."""


class StopOnInterrupt:
    """Context manager: the first SIGINT sets :attr:`requested`, the second interrupts.

    Only installed in the main thread of a single-process run (``enabled``); under ``torchrun``
    the ranks would stop at different steps and wait for each other forever, so there Ctrl-C
    keeps its usual meaning.
    """

    def __init__(self, enabled: bool = True, what: str = 'training', unit: str = 'step'):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.what = what
        self.unit = unit  #: what is finished before stopping ('step'; PPO: a rollout + update)
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f'\nCtrl-C: stopping {self.what} after this {self.unit} and saving a checkpoint '
              '(Ctrl-C again to quit without saving)', file=sys.stderr, flush=True)

    def __enter__(self) -> StopOnInterrupt:
        if self.enabled:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            signal.signal(signal.SIGINT, self._previous)


def ignore_sigint_in_worker(make: Callable[[], Any]) -> Callable[[], Any]:
    """Wrap a worker's factory so the worker ignores SIGINT.

    A terminal's Ctrl-C reaches the whole process group: simulator workers would die with a
    ``KeyboardInterrupt`` traceback each while the main process is saving its checkpoint. The
    main process alone decides when to stop (:class:`StopOnInterrupt`) and then closes them.
    """
    def make_ignoring_sigint() -> Any:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return make()

    return make_ignoring_sigint


def refuse_existing_run(out: str | os.PathLike, checkpoint: str, *, resume_flag: str,
                        overwrite_flag: str = '--overwrite') -> None:
    """Raise ``ValueError`` when ``out/checkpoint`` exists: name the resume and overwrite flags."""
    path = Path(out) / checkpoint
    if path.exists():
        raise ValueError(f'{out} already holds a run ({path.name}); {resume_flag} continues it, '
                         f'{overwrite_flag} starts it again from step 0 (replacing '
                         f'{path.name} and its snapshots as the new run reaches them)')


def small_domain_warning(name: str, flag: str, n: int, minimum: int = MIN_DOMAIN_FRAMES) -> str:
    """Why ``n`` frames are too few to learn a domain from ('' when they are enough)."""
    if n >= minimum:
        return ''
    return (f'{flag} {name} has only {n} frame(s): a domain this small is memorised, not '
            f'learned (the shipped translators used about 2,000 per domain; at least {minimum} '
            'distinct views are advised)')


def command_line(module: str, argv: list[str] | None = None) -> str:
    """``python -m module ARGS`` as the user typed it (recorded on cards and checkpoints)."""
    return f'python -m {module} ' + shlex.join(sys.argv[1:] if argv is None else argv)


def run_as_tool(prog: str, work: Callable[[], object]) -> int:
    """Run a trainer's ``work``; its exit status as a command-line tool.

    0 when it finishes; :data:`EXIT_INTERRUPTED` with one line after a Ctrl-C that saved a
    checkpoint; 2 with one ``PROG: error: ...`` line, no traceback, for what the user has to fix
    (a bad setting, a missing folder, a run already in ``--out``).
    """
    try:
        work()
    except TrainingInterrupted as e:
        print(f'{prog}: {e}', file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, FileNotFoundError) as e:
        print(f'{prog}: error: {e}', file=sys.stderr)
        return 2
    return 0
