"""``vr-goggles reproduce``: retrain a shipped model from the commands on its card.

A card's ``reproduce`` section (:data:`vr_goggles.weights.REPRODUCE_FIELDS`) lists the commands
of three steps: ``data`` (collect the datasets), ``train``, and ``select`` (pick the shipped
checkpoint). This verb runs them in that order, each as an argument list without a shell, from
one working folder (``--out``) so that ``data/`` and ``runs/`` land there, and stops at the first
command that fails with its exit code. A leading ``python`` is this interpreter.

The card also names the commit whose code trained the weights (``trained_at``): two runs on the
same code and data are bit-identical, so that checkout is the one expected to give back the
shipped bytes; the card's ``note`` says where today's code is known to differ. At the end the
result (the card's ``output``) is compared with the shipped file's SHA-256.

The training code runs in subprocesses, never imported here: the robot runtime does not import
``sim_training`` (pyproject.toml's import-linter contracts).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import shlex
import subprocess
import sys

import vr_goggles
from vr_goggles import weights


def parse_steps(text: str) -> tuple[str, ...]:
    """``'data,train'`` -> the named steps, in the order they run (argparse ``type``)."""
    names = [s.strip() for s in text.split(',') if s.strip()]
    unknown = sorted(set(names) - set(weights.REPRODUCE_STEPS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f'steps are a comma-separated subset of {",".join(weights.REPRODUCE_STEPS)}, '
            f'got {text!r}')
    return tuple(s for s in weights.REPRODUCE_STEPS if s in names)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``reproduce`` verb."""
    p = sub.add_parser(
        'reproduce', help='retrain a shipped model from the commands on its card',
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('model', metavar='NAME',
                   help='shipped model name (e.g. goggles_vr_goggles) or a card path')
    p.add_argument('--out', default=None,
                   help='working folder the commands run in (default: reproduce/NAME)')
    p.add_argument('--dry-run', action='store_true',
                   help='print the commands (a shell script) and run nothing')
    p.add_argument('--steps', type=parse_steps, default=weights.REPRODUCE_STEPS,
                   help='comma-separated subset of data,train,select (default: all three)')
    p.set_defaults(func=run)
    return p


def plan(card: weights.ModelCard, steps: tuple[str, ...]) -> list[tuple[str, str]]:
    """The card's commands of ``steps`` as ``(step, command)``, in the order they run."""
    if not card.reproduce:
        raise ValueError(f'card {card.name!r} records no reproduce section (only its '
                         f'training_command: {card.training_command or "none"})')
    return [(step, cmd) for step in steps for cmd in card.reproduce.get(step, [])]


def argv_for(command: str) -> list[str]:
    """A card command as an argument list; ``python`` means this interpreter."""
    argv = shlex.split(command)
    if argv and argv[0] == 'python':
        argv[0] = sys.executable
    return argv


def child_env() -> dict[str, str]:
    """The environment for the commands: ours, with this checkout first on PYTHONPATH.

    The folder holding ``vr_goggles`` (and ``sim_training``) goes first, so ``python -m
    sim_training.X`` runs this checkout's code from any working folder.
    """
    root = str(Path(vr_goggles.__file__).resolve().parents[1])
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(p for p in (root, env.get('PYTHONPATH', '')) if p)
    return env


def check_out_dir(out: Path) -> None:
    """Refuse a working folder in which ``vr_goggles/weights`` is the shipped weights folder.

    Some card commands write there (relative to the working folder), and the shipped files must
    never change.
    """
    target = (out / 'vr_goggles' / 'weights').resolve()
    if target == weights.SHIPPED_DIR.resolve():
        raise ValueError(f'--out {out} would let the card commands overwrite the shipped weights '
                         f'in {weights.SHIPPED_DIR}; choose another folder')


def _header(card: weights.ModelCard, out: Path) -> list[str]:
    r = card.reproduce
    lines = [f'# {card.name}: trained at {r["trained_at"]}'
             + (f' ({r["trained_at_basis"]})' if r.get('trained_at_basis') else ''),
             f'# shipped in {r.get("shipped_in", "?")}; sha256 {card.sha256 or "?"}']
    if r.get('note'):
        lines.append(f'# note: {r["note"]}')
    lines.append(f'cd {shlex.quote(str(out))}')
    return lines


def _compare(card: weights.ModelCard, out: Path) -> None:
    """Say whether the result is the shipped file, bit for bit."""
    output = card.reproduce.get('output')
    if not output or not (out / output).exists():
        return
    digest = weights.sha256_file(out / output)
    if digest == card.sha256:
        print(f'{out / output}: identical to the shipped {card.name} (sha256 {digest})')
    else:
        print(f'{out / output}: differs from the shipped {card.name} (sha256 {digest[:12]}... vs '
              f'{card.sha256[:12]}...); the shipped bytes are expected from the code at '
              f'{card.reproduce["trained_at"][:12]} (see the card\'s reproduce.note)')


def run(args: argparse.Namespace) -> int:
    """Print or run the card's commands in order; the first failure's exit code ends it."""
    card = weights.load_card(weights.resolve(args.model))
    commands = plan(card, args.steps)
    out = Path(args.out if args.out is not None else Path('reproduce') / card.name)
    if args.dry_run:
        print('\n'.join(_header(card, out)))
        step = None
        for s, cmd in commands:
            if s != step:
                print(f'# {s}')
                step = s
            print(cmd)
        return 0
    check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    print('\n'.join(_header(card, out)), flush=True)
    env = child_env()
    for k, (step, cmd) in enumerate(commands, 1):
        print(f'[{k}/{len(commands)} {step}] {cmd}', flush=True)
        try:
            rc = subprocess.run(argv_for(cmd), cwd=out, env=env, check=False).returncode
        except OSError as e:  # the program itself is missing or not executable
            rc, why = 127, f'cannot start: {e}'
        else:
            why = f'exit code {rc}'
        if rc != 0:
            print(f'vr-goggles reproduce: {step} command {k}/{len(commands)} failed ({why}): '
                  f'{cmd}', file=sys.stderr)
            return rc if rc > 0 else 128 - rc  # a signal -N exits as 128 + N, like a shell
    print(f'{card.name}: {len(commands)} command(s) done in {out}')
    _compare(card, out)
    return 0
