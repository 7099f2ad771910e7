"""Every setting of a policy training run: the typed ``Args`` and its command-line parser.

The field docstrings are the ``--help`` text (``sim_training.config_cli.add_config_flags``); they
say what a flag does. What each setting measured lives in ``docs/results.md`` and
``docs/results/policy_*.json``, and the shipped recipes in the cards' ``training_command``.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Any

from sim_training.config_cli import add_config_flags
from vr_goggles.policy.turn_memory import n_planes

DOMAINS = ('sim', 'real', 'randomized')


@dataclass
class Args:
    """Every hyper-parameter of a training run (CLI flags are the field names with dashes)."""

    domain: str = 'sim'
    """simulator look to train in: sim | randomized (| real, for experiments only)"""
    total_timesteps: int = 600_000
    """environment steps in total (over all envs), counted across --resume"""
    n_envs: int = 8
    """parallel environments"""
    vec_env: str = 'dummy'
    """dummy (every env in this process) or subproc (one process per env)"""
    seed: int = 0
    """seed of SB3, torch and the environments' first resets"""
    obs_size: int = 64
    """observation / network input size (square)"""
    frame_stack: int = 4
    """frames the policy sees, oldest first, one control step apart
    (vr_goggles.policy.frame_stack); 1 = memoryless. Memory lets the policy notice it is
    blocked and where it already looked"""
    turn_memory: int = 0
    """> 0: append one input plane counting the control steps since the last forward step,
    saturating at this many turns (24 x 15 degrees = a full turn; vr_goggles.policy.turn_memory),
    so the policy can know it has already looked all around; 0 = frames only"""
    turn_window: int = 0
    """> 0 (with --turn-memory): a second plane, the share of turns among the last this many
    control steps, which a single forward step does not reset; 0 = none"""
    max_episode_steps: int = 0
    """episode limit; 0 keeps the environment's default"""
    learning_rate: float = 3e-4
    """Adam learning rate (start value)"""
    lr_schedule: str = 'linear'
    """linear (anneal to lr_end_factor * learning_rate at total_timesteps) or constant"""
    lr_end_factor: float = 0.1
    """final learning rate / learning_rate of the linear schedule"""
    resume_learning_rate: float = 0.0
    """if > 0, a --resume run continues with this constant learning rate instead of the
    checkpoint's schedule (whose value jumps up again when total_timesteps grows)"""
    n_steps: int = 128
    """steps per env per rollout (rollout = n_steps * n_envs)"""
    batch_size: int = 256
    """minibatch size"""
    n_epochs: int = 4
    """PPO epochs per rollout"""
    gamma: float = 0.99
    """discount"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    clip_range: float = 0.2
    """PPO clip range"""
    ent_coef: float = 0.01
    """entropy bonus (a --resume run uses this value from then on)"""
    collision_penalty: float = 0.5
    """extra reward per refused (colliding) step on top of the env's -0.1, training only:
    deterministic argmax must not push into an obstacle forever (the image never changes)"""
    progress_reward: str = 'euclidean'
    """distance the per-step progress reward measures, training only: euclidean (the env's own,
    straight line) or geodesic (along the planned obstacle-free path, as Habitat's PointNav
    reward; a detour around an obstacle then counts as progress)"""
    camera_augment: float = 0.0
    """training only: share of episodes whose frames pass through a random per-episode camera
    (real_proxy.CameraModel profile 'augment': defocus blur up to sigma 1.6, sensor noise, mild
    exposure / white balance / saturation errors) over the unchanged sim textures, so the policy
    tolerates the blur and colour errors of translated frames; 0 = clean frames only"""
    vf_coef: float = 0.5
    """value loss weight"""
    max_grad_norm: float = 0.5
    """gradient clipping"""
    channels: str = '16,32,32'
    """conv channels of the encoder (three comma-separated ints)"""
    features_dim: int = 128
    """encoder output size (shared by actor and critic)"""
    torch_threads: int = 1
    """torch CPU threads"""
    run_dir: str = 'runs/policy_sim'
    """checkpoints, tensorboard logs and the training state go here"""
    checkpoint_freq: int = 40_000
    """environment steps between checkpoints"""
    keep_checkpoints: bool = False
    """also keep every periodic checkpoint as RUN_DIR/checkpoints/checkpoint_<steps>.zip (+
    .json), to choose one later on training-split layouts (evaluate_policy --split train)"""
    resume: bool = False
    """continue from RUN_DIR/checkpoint.zip with the same counters"""
    overwrite: bool = False
    """start again from step 0 in a RUN_DIR that holds a run (its checkpoint.zip is replaced at
    the first checkpoint); without it, or --resume, such a RUN_DIR is refused"""
    init_from: str = ''
    """start a fresh run from another run's checkpoint.zip (same encoder sizes): weights are
    copied and a narrower first conv (fewer stacked frames) is widened with zeros for the
    older frames, so the new policy starts out acting exactly like the old one. Or from an
    exported policy (a shipped name such as policy_sim, or its .safetensors) of this run's exact
    architecture: its actor is copied and the value head starts fresh, to fine-tune a shipped
    policy whose training checkpoint is not kept"""
    export: str = ''
    """write the exported NavActor here at the end (e.g. vr_goggles/weights/policy_sim)"""
    tensorboard: bool = True
    """log to RUN_DIR/tb"""
    progress: bool = True
    """tqdm progress bar"""
    verbose: int = 0
    """SB3 verbosity"""


def build_parser(description: str = '') -> argparse.ArgumentParser:
    """One ``--flag`` per ``Args`` field, its docstring as help."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_flags(p, Args)
    return p


def parse_args(argv: list[str] | None = None, description: str = '') -> Args:
    """Parse ``argv`` into ``Args``; a bad value or combination exits with the flag's name."""
    p = build_parser(description)
    args = Args(**vars(p.parse_args(argv)))
    problem = check(args)
    if problem:
        p.error(problem)
    return args


def check(args: Args) -> str:
    """What is wrong with ``args`` (``''`` when nothing), naming the flag."""
    if args.domain not in DOMAINS:
        return f'--domain: expected sim, real or randomized, got {args.domain!r}'
    if args.vec_env not in ('subproc', 'dummy'):
        return f'--vec-env: expected subproc or dummy, got {args.vec_env!r}'
    if args.progress_reward not in ('geodesic', 'euclidean'):
        return f'--progress-reward: expected geodesic or euclidean, got {args.progress_reward!r}'
    if not 0.0 <= args.camera_augment <= 1.0:
        return f'--camera-augment: expected a share in [0, 1], got {args.camera_augment}'
    if args.frame_stack < 1:
        return f'--frame-stack: expected >= 1, got {args.frame_stack}'
    if args.turn_memory < 0:
        return f'--turn-memory: expected >= 0, got {args.turn_memory}'
    if args.turn_window < 0 or (args.turn_window and not args.turn_memory):
        return f'--turn-window {args.turn_window}: expected 0, or > 0 with --turn-memory'
    if args.lr_schedule not in ('linear', 'constant'):
        return f'--lr-schedule: expected linear or constant, got {args.lr_schedule!r}'
    if (args.n_steps * args.n_envs) % args.batch_size:
        return (f'--batch-size {args.batch_size} must divide n_steps * n_envs = '
                f'{args.n_steps * args.n_envs}')
    try:
        parse_channels(args.channels)
    except ValueError as e:
        return f'--channels: {e}'
    return ''


def parse_channels(text: str) -> tuple[int, int, int]:
    """``'32,64,64'`` -> ``(32, 64, 64)``."""
    try:
        vals = tuple(int(v) for v in text.split(','))
    except ValueError:
        vals = ()
    if len(vals) != 3 or min(vals) < 1:
        raise ValueError(f'channels: expected three positive ints, got {text!r}')
    return vals  # type: ignore[return-value]


def extra_planes(args: dict[str, Any] | Args) -> int:
    """Input planes after the stacked frames: the turn memory's (0, 1, or 2 with a window).

    Takes ``Args`` or the ``args`` dict of a run's ``checkpoint.json``, so the exporter and
    ``--init-from`` read a saved run's input layout the way training built it.
    """
    a = asdict(args) if isinstance(args, Args) else args
    return n_planes(a.get('turn_memory', 0), a.get('turn_window', 0))
