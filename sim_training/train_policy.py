"""Train the chair-navigation policy with PPO (Stable-Baselines3) in ``VrGoggles/ChairNav-v0``.

``python -m sim_training.train_policy`` trains in the clean simulator (``--domain sim``);
``--domain randomized --run-dir runs/policy_randomized --export vr_goggles/weights/
policy_randomized`` trains the domain-randomisation baseline with the same recipe.

One preprocessing path: :class:`NormalizeObservation` feeds SB3 the output of
``vr_goggles.image.preprocess.normalize`` (float ``(3, 64, 64)`` in [-1, 1]) and the policy runs
with
``normalize_images=False``, so the exported :class:`vr_goggles.models.actor.NavActor` sees the
same tensors on the robot (``vr_goggles.policy.Policy``) as it did in training.

Checkpoints (``RUN_DIR/checkpoint.zip`` + ``checkpoint.json``) are written atomically at rollout
boundaries, i.e. after a PPO update and before the next rollout, so ``--resume`` loses no
trained-on step and continues with the same step / update counters and learning-rate schedule.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
import io
import json
import math
import os
from pathlib import Path
import shlex
import sys
import time
from typing import Any

os.environ.setdefault('PYGLET_HEADLESS', '1')

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor  # noqa: E402
import torch  # noqa: E402

from sim_training.config_cli import add_config_flags  # noqa: E402
from vr_goggles.image.preprocess import normalize  # noqa: E402
from vr_goggles.models.actor import NavEncoder  # noqa: E402
from vr_goggles.policy.actions import FORWARD  # noqa: E402
from vr_goggles.policy.frame_stack import FrameStack, check_offsets, parse_offsets  # noqa: E402
from vr_goggles.policy.turn_memory import TurnMemory, n_planes  # noqa: E402
from vr_goggles.weights import atomic_write_bytes  # noqa: E402

ENV_ID = 'VrGoggles/ChairNav-v0'
CHECKPOINT = 'checkpoint.zip'
STATE = 'checkpoint.json'


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
    """dummy (all in this process; measured faster on 2 shared cores) or subproc"""
    seed: int = 0
    """seed of SB3, torch and the environments' first resets"""
    obs_size: int = 64
    """observation / network input size (square)"""
    frame_stack: int = 4
    """frames the policy sees, oldest first, one control step apart
    (vr_goggles.policy.frame_stack);
    1 = memoryless. Memory lets the policy notice it is blocked and where it already looked"""
    frame_offsets: str = ''
    """how many control steps back each stacked frame is, oldest first, comma-separated, one per
    --frame-stack frame and ending at 0, e.g. 18,12,6,1,0 (a dilated stack: four directions a
    quarter turn apart while turning, plus the last step); '' = the last frame_stack steps.
    Measured: 18,12,6,1,0 and 12,6,3,1,0 did not beat 4 contiguous frames on the detour
    layouts (docs/results/policy_dilated_stack.json)"""
    turn_memory: int = 0
    """> 0: append one input plane counting the control steps since the last forward step,
    saturating at this many turns (24 x 15 degrees = a full turn; vr_goggles.policy.turn_memory),
    so
    the policy can know it has already looked all around; 0 = frames only. Measured: alone it
    did not stop the turning in place; with --turn-window 48 it is the shipped recipe
    (docs/results/policy_turn_memory.json)"""
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
    reward; a detour around an obstacle then counts as progress). Measured: geodesic did not
    beat euclidean
    (docs/results/policy_geodesic_shaping.json), so the shipped recipe keeps euclidean"""
    detour_keep: float = 1.0
    """training only: probability of keeping a drawn layout whose planned path to the chair is
    less than detour_margin longer than the straight line (else it is redrawn); < 1 trains more
    often on layouts where an obstacle stands between robot and chair, where the 4-frame policy
    fails most. 1 = uniform layouts. Measured: 0.4 did not lift the 4-frame policy on them
    (docs/results/policy_detour_layouts.json)"""
    detour_margin: float = 0.3
    """extra planned-path length (m) over the straight line that makes a layout a detour"""
    camera_augment: float = 0.0
    """training only: share of episodes whose frames pass through a random per-episode camera
    (real_proxy.CameraModel profile 'augment': defocus blur up to sigma 1.6, sensor noise, mild
    exposure / white balance / saturation errors) over the unchanged sim textures, so the policy
    tolerates the blur and colour errors of translated frames; 0 = clean frames only.
    Measured: 0.7 lifted driving behind VR-Goggles from 36 % to 42-51 % but cost 1-4 points in
    sim, and 0.5 / 0.3 from the start of the turn-memory stage gave the same trade, so the
    shipped policy is trained without it (docs/results/policy_camera_augment.json)"""
    floor_augment: float = 0.0
    """training only, --domain sim: share of episodes whose floor is plain grey or the
    checkerboard at a random tile size, phase and brightness (ChairNavEnv floor_augment), so the
    policy does not steer by the checkerboard's phase, which no translator can read off a real
    floor (docs/results/translator_ceiling.json); 0 = the canonical floor only. Measured: 0.5 keeps
    the sim score and removes the floor dependence, but drives no better behind VR-Goggles
    (33 % vs 34.5 % on the evaluation layouts, docs/results/policy_floor_augment.json)"""
    spin_penalty: float = 0.0
    """reward per turn after spin_limit consecutive turns, training only: a memoryless argmax
    policy that cannot see the chair must not turn in place forever"""
    spin_limit: int = 24
    """consecutive turns allowed before spin_penalty applies (24 x 15 degrees = a full turn)"""
    lstm_hidden: int = 0
    """> 0: RecurrentPPO (sb3-contrib) with one LSTM layer of this size between the encoder and
    the heads, seeing one frame per step (--frame-stack 1); its state is the policy's memory.
    0: feed-forward PPO"""
    dagger_steps: int = 0
    """> 0: before PPO, fit the policy to the privileged Oracle by DAgger over this many
    expert-labelled env steps (sim_training.dagger; needs --vec-env dummy), then PPO fine-tunes
    it; 0: PPO from scratch (or from --init-from). Measured: not better than PPO alone on the
    detour layouts (docs/results/policy_dagger.json)"""
    dagger_iterations: int = 4
    """DAgger collect-then-fit rounds; round k follows the expert with probability
    dagger_beta_decay ** k, else the learner"""
    dagger_beta_decay: float = 0.5
    """see dagger_iterations"""
    dagger_epochs: int = 2
    """passes over the aggregated labels after each DAgger round"""
    dagger_learning_rate: float = 1e-3
    """Adam learning rate of the DAgger fit"""
    vf_coef: float = 0.5
    """value loss weight"""
    max_grad_norm: float = 0.5
    """gradient clipping"""
    channels: str = '16,32,32'
    """conv channels of the encoder (three comma-separated ints)"""
    features_dim: int = 128
    """encoder output size (shared by actor and critic)"""
    torch_threads: int = 1
    """torch CPU threads (1 holds up best on the shared 2-core machine, see FACTS.md)"""
    run_dir: str = 'runs/policy_sim'
    """checkpoints, tensorboard logs and the training state go here"""
    checkpoint_freq: int = 40_000
    """environment steps between checkpoints"""
    keep_checkpoints: bool = False
    """also keep every periodic checkpoint as RUN_DIR/checkpoints/checkpoint_<steps>.zip (+
    .json), to choose one later on training-split layouts (evaluate_policy --split train)"""
    resume: bool = False
    """continue from RUN_DIR/checkpoint.zip with the same counters"""
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


def parse_args(argv: list[str] | None = None) -> Args:
    """Build argparse from ``dataclasses.fields(Args)`` and parse ``argv``."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_flags(p, Args)
    ns = p.parse_args(argv)
    args = Args(**vars(ns))
    if args.domain not in ('sim', 'real', 'randomized'):
        p.error(f'--domain: expected sim, real or randomized, got {args.domain!r}')
    if args.vec_env not in ('subproc', 'dummy'):
        p.error(f'--vec-env: expected subproc or dummy, got {args.vec_env!r}')
    if args.progress_reward not in ('geodesic', 'euclidean'):
        p.error(f'--progress-reward: expected geodesic or euclidean, '
                f'got {args.progress_reward!r}')
    if not 0.0 <= args.floor_augment <= 1.0:
        p.error(f'--floor-augment: expected a share in [0, 1], got {args.floor_augment}')
    if args.floor_augment and args.domain != 'sim':
        p.error(f'--floor-augment: only with --domain sim, got {args.domain!r}')
    if not 0.0 <= args.camera_augment <= 1.0:
        p.error(f'--camera-augment: expected a share in [0, 1], got {args.camera_augment}')
    if not 0.0 < args.detour_keep <= 1.0:
        p.error(f'--detour-keep: expected a probability in (0, 1], got {args.detour_keep}')
    if args.lstm_hidden < 0 or (args.lstm_hidden and args.frame_stack != 1):
        p.error(f'--lstm-hidden {args.lstm_hidden}: expected 0, or > 0 with --frame-stack 1 '
                f'(the LSTM state is the memory), got --frame-stack {args.frame_stack}')
    if args.turn_memory < 0 or (args.turn_memory and args.lstm_hidden):
        p.error(f'--turn-memory {args.turn_memory}: expected 0, or > 0 with a feed-forward '
                f'policy (--lstm-hidden 0; the LSTM state is the memory)')
    if args.turn_window < 0 or (args.turn_window and not args.turn_memory):
        p.error(f'--turn-window {args.turn_window}: expected 0, or > 0 with --turn-memory')
    if args.lr_schedule not in ('linear', 'constant'):
        p.error(f'--lr-schedule: expected linear or constant, got {args.lr_schedule!r}')
    if (args.n_steps * args.n_envs) % args.batch_size:
        p.error(f'--batch-size {args.batch_size} must divide n_steps * n_envs = '
                f'{args.n_steps * args.n_envs}')
    try:
        check_offsets(parse_offsets(args.frame_offsets), args.frame_stack)
    except ValueError as e:
        p.error(f'--frame-offsets: {e} (one per --frame-stack {args.frame_stack} frame)')
    if args.dagger_steps and (args.vec_env != 'dummy' or args.lstm_hidden):
        p.error('--dagger-steps: needs --vec-env dummy (the expert reads the envs in this '
                'process) and a feed-forward policy (--lstm-hidden 0)')
    if args.dagger_steps < 0 or args.dagger_iterations < 1 or not (
            0.0 <= args.dagger_beta_decay <= 1.0):
        p.error(f'--dagger-*: expected steps >= 0, iterations >= 1, beta decay in [0, 1]; got '
                f'{args.dagger_steps}, {args.dagger_iterations}, {args.dagger_beta_decay}')
    parse_channels(args.channels)
    return args


def parse_channels(text: str) -> tuple[int, int, int]:
    """``'32,64,64'`` -> ``(32, 64, 64)``."""
    vals = tuple(int(v) for v in text.split(','))
    if len(vals) != 3 or min(vals) < 1:
        raise ValueError(f'channels: expected three positive ints, got {text!r}')
    return vals  # type: ignore[return-value]


class NormalizeObservation(gym.ObservationWrapper):
    """uint8 RGB ``(H, W, 3)`` -> ``vr_goggles.image.preprocess.normalize`` float ``(3, H, W)``."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        h, w, c = env.observation_space.shape
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (c, h, w), np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """The shared normalisation, batch axis dropped."""
        return normalize(observation)[0]


class StackFrames(gym.ObservationWrapper):
    """Normalised ``(3, H, W)`` -> ``k`` frames ``(3k, H, W)`` via :class:`FrameStack`."""

    def __init__(self, env: gym.Env, k: int, offsets: tuple[int, ...] | None = None):
        super().__init__(env)
        c, h, w = env.observation_space.shape
        self.stack = FrameStack(k, offsets=offsets)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (c * k, h, w), np.float32)

    def reset(self, **kwargs):
        """New episode: the history restarts from its first frame."""
        self.stack.reset()
        return super().reset(**kwargs)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """Push one frame, return the stack."""
        return self.stack.push(observation)


class TurnMemoryPlane(gym.Wrapper):
    """Normalised ``(C, H, W)`` -> ``(C + n, H, W)``: the :class:`TurnMemory` planes appended."""

    def __init__(self, env: gym.Env, limit: int, window: int = 0):
        super().__init__(env)
        c, h, w = env.observation_space.shape
        self.memory = TurnMemory(limit, window=window)
        self.size = (int(h), int(w))
        self.observation_space = gym.spaces.Box(
            -1.0, 1.0, (c + self.memory.n_planes, h, w), np.float32)

    def _with_plane(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([obs, self.memory.planes(self.size, self.memory.observe())])

    def reset(self, **kwargs):
        """New episode: no turns so far."""
        obs, info = self.env.reset(**kwargs)
        self.memory.reset()
        return self._with_plane(obs), info

    def step(self, action):
        """Step the env, count the action, append the plane for the next decision."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.memory.record(int(action))
        return self._with_plane(obs), reward, terminated, truncated, info


class CameraAugment(gym.Wrapper):
    """Training only: a random per-episode camera over the frames of ``p`` of the episodes.

    Randomness comes from a generator seeded by the reset seed (and continued across the
    seedless resets that follow), so a seeded run is reproducible.
    """

    def __init__(self, env: gym.Env, p: float):
        super().__init__(env)
        if not 0.0 < p <= 1.0:
            raise ValueError(f'camera_augment: expected a share in (0, 1], got {p!r}')
        self.p = float(p)
        self.rng: np.random.Generator | None = None
        self.camera = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """New episode: maybe a new camera."""
        from sim_training.envs.real_proxy import CameraModel

        if seed is not None or self.rng is None:
            self.rng = np.random.default_rng([0 if seed is None else seed, 0x617567])
        obs, info = self.env.reset(seed=seed, options=options)
        self.camera = (CameraModel.sample(self.rng, 'augment') if self.rng.random() < self.p
                       else None)
        return self._apply(obs), info

    def step(self, action):
        """One step; the frame through this episode's camera."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._apply(obs), reward, terminated, truncated, info

    def _apply(self, obs: np.ndarray) -> np.ndarray:
        return obs if self.camera is None else self.camera.apply(obs, self.rng)


class CollisionPenalty(gym.Wrapper):
    """Subtract ``penalty`` per new collision (``info['collisions']`` increments)."""

    def __init__(self, env: gym.Env, penalty: float):
        super().__init__(env)
        self.penalty = float(penalty)
        self._collisions = 0

    def reset(self, **kwargs):
        """Reset the env and the collision count."""
        obs, info = self.env.reset(**kwargs)
        self._collisions = int(info.get('collisions', 0))
        return obs, info

    def step(self, action):
        """Step the env; penalise the collisions this step added."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        n = int(info.get('collisions', 0))
        reward = float(reward) - self.penalty * max(0, n - self._collisions)
        self._collisions = n
        return obs, reward, terminated, truncated, info


class GeodesicProgress(gym.Wrapper):
    """Swap the env's straight-line progress term for progress along the planned path.

    The reward keeps the env's step cost, collision and success terms; its
    ``PROGRESS_REWARD * (d_prev - d)`` with ``d`` the straight-line distance to the chair is
    replaced by the same with ``d`` the geodesic distance to the success region
    (:meth:`sim_training.envs.oracle.Oracle.geodesic_distance`). Both reward the drop of a
    distance to the goal; only the geodesic one calls a detour progress. Uses true positions,
    so it exists in training only, never at evaluation.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        from sim_training.envs.chair_nav import PROGRESS_REWARD
        from sim_training.envs.oracle import Oracle

        self.oracle = Oracle(env, margin=0.0)
        self.weight = PROGRESS_REWARD
        self._euclid = 0.0
        self._geo: float | None = None

    def reset(self, **kwargs):
        """Reset and remember both distances (the plan is rebuilt for the new layout)."""
        obs, info = self.env.reset(**kwargs)
        self._euclid = float(info['distance'])
        self._geo = self.oracle.geodesic_distance()
        return obs, info

    def step(self, action):
        """The env's step, its straight-line progress term swapped for the geodesic one."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        euclid = float(info['distance'])
        geo = self.oracle.geodesic_distance()
        if geo is not None and self._geo is not None:  # else (no path): keep straight-line
            reward = (float(reward) - self.weight * (self._euclid - euclid)
                      + self.weight * (self._geo - geo))
        self._euclid, self._geo = euclid, geo
        return obs, reward, terminated, truncated, info


class DetourLayouts(gym.Wrapper):
    """Draw detour layouts more often: redraw other layouts with probability ``1 - keep``.

    A layout is a detour when the oracle's planned path from the start to the success region
    is at least ``margin`` m longer than the straight-line shortest path. The plan is on a
    0.1 m grid (about 3.5 ms per layout; 8-neighbour paths read ~0.2 m long even in a free
    room, so margins well below that select everything). Redraws come from the env's own
    seeded stream; an explicit ``seed`` is used for the first draw only.
    """

    def __init__(self, env: gym.Env, keep: float, margin: float):
        super().__init__(env)
        if not 0.0 < keep <= 1.0:
            raise ValueError(f'keep: expected a probability in (0, 1], got {keep!r}')
        from sim_training.envs.oracle import Oracle

        self.keep = float(keep)
        self.margin = float(margin)
        self.oracle = Oracle(env, resolution=0.1, margin=0.0)
        self.redraws = 0

    def detour(self, info: dict[str, Any]) -> float:
        """Planned minus straight-line path length (m) of the current layout (inf if none)."""
        from sim_training.envs.chair_nav import SUCCESS_DISTANCE

        geo = self.oracle.geodesic_distance()
        if geo is None:
            return math.inf
        return geo - max(float(info['start_distance']) - SUCCESS_DISTANCE, 0.0)

    def reset(self, **kwargs):
        """Reset; redraw a non-detour layout with probability ``1 - keep``."""
        obs, info = self.env.reset(**kwargs)
        kwargs.pop('seed', None)
        rng = self.env.unwrapped.np_random
        while (self.keep < 1.0 and rng.random() >= self.keep
               and self.detour(info) < self.margin):
            self.redraws += 1
            obs, info = self.env.reset(**kwargs)
        return obs, info


class SpinPenalty(gym.Wrapper):
    """Subtract ``penalty`` for every turn beyond ``limit`` consecutive turns."""

    def __init__(self, env: gym.Env, penalty: float, limit: int):
        super().__init__(env)
        self.penalty = float(penalty)
        self.limit = int(limit)
        self._turns = 0

    def reset(self, **kwargs):
        """Reset the env and the run of consecutive turns."""
        self._turns = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        """Step the env; penalise turning in place past the limit."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._turns = 0 if int(action) == FORWARD else self._turns + 1
        if self._turns > self.limit:
            reward = float(reward) - self.penalty
        return obs, reward, terminated, truncated, info


class SuccessInfo(gym.Wrapper):
    """Copy ``info['success']`` to SB3's ``is_success`` so rollouts log a success rate."""

    def step(self, action):
        """Step the env; on the last step add ``is_success``."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info['is_success'] = bool(info.get('success', False))
        return obs, reward, terminated, truncated, info


class NavFeaturesExtractor(BaseFeaturesExtractor):
    """SB3 features extractor around :class:`NavEncoder`, so export is a state-dict copy."""

    def __init__(self, observation_space: gym.spaces.Box, channels: tuple[int, ...] = (16, 32, 32),
                 features_dim: int = 128):
        super().__init__(observation_space, features_dim)
        c, h, w = observation_space.shape
        self.nav_kwargs = {'in_channels': int(c), 'input_size': [int(h), int(w)],
                           'channels': [int(v) for v in channels],
                           'features_dim': int(features_dim)}
        self.encoder = NavEncoder(**self.nav_kwargs)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """Normalised observations ``(N, 3, H, W)`` -> features ``(N, features_dim)``.

        The batch goes in channels-last: oneDNN's weight gradient of the first (8x8, stride 4)
        conv is then faster on CPU with 4 stacked frames (116 vs 158 ms forward + backward
        at batch 256, one thread), the bulk of a PPO update: 278 vs 236 training steps/s
        (one thread, 28k steps after a warm start). Same function, same weights.
        """
        return self.encoder(observations.contiguous(memory_format=torch.channels_last))


def make_env(domain: str, obs_size: int, max_episode_steps: int = 0, split: str = 'train',
             collision_penalty: float = 0.0, spin_penalty: float = 0.0, spin_limit: int = 24,
             frame_stack: int = 1, progress_reward: str = 'euclidean',
             detour_keep: float = 1.0, detour_margin: float = 0.3,
             frame_offsets: tuple[int, ...] | None = None, turn_memory: int = 0,
             turn_window: int = 0, camera_augment: float = 0.0, floor_augment: float = 0.0):
    """Env factory (picklable for ``SubprocVecEnv``): ChairNav, wrappers, stack, turn plane."""

    def thunk() -> gym.Env:
        os.environ.setdefault('PYGLET_HEADLESS', '1')
        from stable_baselines3.common.monitor import Monitor

        import sim_training  # noqa: F401  (registers the environment)

        kwargs: dict[str, Any] = {'domain': domain, 'obs_size': obs_size, 'split': split}
        if max_episode_steps:
            kwargs['max_episode_steps'] = max_episode_steps
        if floor_augment:
            kwargs['floor_augment'] = floor_augment
        env = gym.make(ENV_ID, **kwargs)
        if detour_keep < 1.0:
            env = DetourLayouts(env, detour_keep, detour_margin)
        if progress_reward == 'geodesic':
            env = GeodesicProgress(env)
        if collision_penalty:
            env = CollisionPenalty(env, collision_penalty)
        if spin_penalty:
            env = SpinPenalty(env, spin_penalty, spin_limit)
        if camera_augment:
            env = CameraAugment(env, camera_augment)
        env = NormalizeObservation(Monitor(SuccessInfo(env)))
        if frame_stack > 1:
            env = StackFrames(env, frame_stack, frame_offsets)
        return TurnMemoryPlane(env, turn_memory, turn_window) if turn_memory else env

    return thunk


def make_vec_env(args: Args):
    """``args.n_envs`` training envs, seeded ``seed + rank`` on their first reset."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    fns = [make_env(args.domain, args.obs_size, args.max_episode_steps,
                    collision_penalty=args.collision_penalty, spin_penalty=args.spin_penalty,
                    spin_limit=args.spin_limit, frame_stack=args.frame_stack,
                    progress_reward=args.progress_reward, detour_keep=args.detour_keep,
                    detour_margin=args.detour_margin,
                    frame_offsets=parse_offsets(args.frame_offsets),
                    turn_memory=args.turn_memory, turn_window=args.turn_window,
                    camera_augment=args.camera_augment, floor_augment=args.floor_augment)
           for _ in range(args.n_envs)]
    if args.vec_env == 'subproc' and args.n_envs > 1:
        venv = SubprocVecEnv(fns, start_method='forkserver')
    else:
        venv = DummyVecEnv(fns)
    venv.seed(args.seed)
    return venv


def algorithm_class(recurrent: bool):
    """SB3 ``PPO``, or sb3-contrib ``RecurrentPPO`` for an LSTM policy."""
    if recurrent:
        from sb3_contrib import RecurrentPPO

        return RecurrentPPO
    from stable_baselines3 import PPO

    return PPO


def is_recurrent_checkpoint(path: str | os.PathLike) -> bool:
    """Whether an SB3 checkpoint zip holds a RecurrentPPO (its policy class is sb3-contrib's).

    Read from the zip's ``data`` JSON, so the right class loads it without trying both.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            data = json.loads(z.read('data'))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f'{path}: not a stable-baselines3 checkpoint ({e})') from None
    return str(data.get('policy_class', {}).get('__module__', '')).startswith('sb3_contrib')


def load_checkpoint(path: str | os.PathLike, **kwargs):
    """Load a checkpoint with the class that saved it (PPO or RecurrentPPO), on CPU."""
    return algorithm_class(is_recurrent_checkpoint(path)).load(path, device='cpu', **kwargs)


def extra_planes(args: dict[str, Any] | Args) -> int:
    """Input planes after the stacked frames: the turn memory's (0, 1, or 2 with a window)."""
    a = asdict(args) if isinstance(args, Args) else args
    return n_planes(a.get('turn_memory', 0), a.get('turn_window', 0))


def init_is_checkpoint(init: str | os.PathLike) -> bool:
    """Whether ``--init-from`` names a training checkpoint (``.zip``), not an exported policy."""
    return str(init).endswith('.zip')


def init_from_checkpoint(model, path: str | os.PathLike, extra: int = 0) -> None:
    """Copy a checkpoint's policy weights into ``model`` (see ``Args.init_from``).

    Every tensor must match in shape, except input-channel-widened convolutions: the old
    frame weights go to the newest frames' channels (the last of the stack), the old extra
    planes' (``extra_planes``, read from the checkpoint's ``.json``) to the first of this
    model's ``extra`` planes after the stack, and the rest are zero. A recurrent model started
    from a feed-forward checkpoint takes its encoder only (the LSTM and the heads behind it
    start fresh).
    """
    state_path = Path(path).with_suffix('.json')
    old_extra = (extra_planes(json.loads(state_path.read_text(encoding='utf-8')).get('args', {}))
                 if state_path.exists() else 0)
    source = load_checkpoint(path).policy
    old = source.state_dict()
    new = model.policy.state_dict()
    encoder_only = hasattr(model.policy, 'lstm_actor') and not hasattr(source, 'lstm_actor')
    if encoder_only:
        old = {k: v for k, v in old.items() if k.startswith('features_extractor.')}
        new_keys = {k for k in new if k.startswith('features_extractor.')}
        if set(old) != new_keys:
            raise ValueError(f'{path}: encoder parameter names differ from this run\'s '
                             f'({sorted(set(old) ^ new_keys)[:4]}...)')
        new = {k: v for k, v in new.items() if k in new_keys}
    if set(old) != set(new):
        raise ValueError(f'{path}: parameter names differ from this run\'s '
                         f'({sorted(set(old) ^ set(new))[:4]}...)')
    for key, w in old.items():
        target = new[key]
        if w.shape == target.shape:
            new[key] = w.clone()
        elif (w.ndim == 4 and target.ndim == 4 and w.shape[0] == target.shape[0]
              and w.shape[2:] == target.shape[2:] and old_extra <= extra
              and (w.shape[1] - old_extra) % 3 == 0 and (target.shape[1] - extra) % 3 == 0
              and w.shape[1] - old_extra <= target.shape[1] - extra):
            frames, old_frames = target.shape[1] - extra, w.shape[1] - old_extra
            widened = torch.zeros_like(target)
            widened[:, frames - old_frames:frames] = w[:, :old_frames]
            widened[:, frames:frames + old_extra] = w[:, old_frames:]
            new[key] = widened
        else:
            raise ValueError(f'{path}: {key} has shape {tuple(w.shape)}, this run needs '
                             f'{tuple(target.shape)}')
    model.policy.load_state_dict(new, strict=not encoder_only)


def init_from_exported(model, name_or_path: str) -> None:
    """Copy an exported :class:`NavActor` (encoder + action head) into ``model``'s policy.

    The value head keeps its fresh initialisation (an export has none), so the first updates
    learn values for a policy that already acts like the exported one. The architecture must
    match exactly: same input planes (frame stack, turn memory), channels and features.
    """
    from vr_goggles.weights import build_module, resolve

    path = resolve(name_or_path)
    actor, card = build_module(path)
    if card.architecture != 'NavActor':
        raise ValueError(f'{path}: --init-from takes a NavActor export, this is a '
                         f'{card.architecture}')
    policy = model.policy
    if hasattr(policy, 'lstm_actor'):
        raise ValueError(f'{path}: a recurrent run starts from a checkpoint.zip, not from an '
                         'exported feed-forward actor')
    pairs = ((actor.features, policy.features_extractor.encoder, 'encoder'),
             (actor.action_net, policy.action_net, 'action head'))

    def shapes(module) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in module.state_dict().items()}

    for src, dst, what in pairs:
        if shapes(src) != shapes(dst):
            raise ValueError(f'{path}: its {what} ({card.kwargs}) does not match this run\'s '
                             'architecture (frame stack, turn memory, channels, features)')
    for src, dst, _ in pairs:
        dst.load_state_dict(src.state_dict())


class TqdmCallback(BaseCallback):
    """tqdm bar over environment steps (SB3's own bar needs ``rich``, not installed here)."""

    def __init__(self, every: int = 16):
        super().__init__()
        self.every = every
        self.bar = None

    def _on_training_start(self) -> None:
        from tqdm import tqdm

        tty = sys.stderr.isatty()
        self.bar = tqdm(total=self.model._total_timesteps, initial=self.model.num_timesteps,
                        unit='step', unit_scale=True, dynamic_ncols=True, smoothing=0.05,
                        mininterval=0.5 if tty else 60.0)

    def _on_step(self) -> bool:
        if self.n_calls % self.every == 0 and self.bar is not None:
            self.bar.update(self.model.num_timesteps - self.bar.n)
            succ = self.model.ep_success_buffer
            if succ:
                self.bar.set_postfix(success=f'{np.mean(succ):.2f}', refresh=False)
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.update(self.model.num_timesteps - self.bar.n)
            self.bar.close()


class CheckpointCallback(BaseCallback):
    """Atomic checkpoint every ``freq`` steps, at rollout start (right after a PPO update)."""

    def __init__(self, trainer: Trainer, freq: int):
        super().__init__()
        self.trainer = trainer
        self.freq = freq
        self.last = 0

    def _on_training_start(self) -> None:
        self.last = self.model.num_timesteps

    def _on_rollout_start(self) -> None:
        if self.model.num_timesteps - self.last >= self.freq:
            self.trainer.save_checkpoint()
            self.last = self.model.num_timesteps

    def _on_step(self) -> bool:
        return True


class Trainer:
    """Owns the run directory, the model and the bookkeeping carried across ``--resume``."""

    def __init__(self, args: Args, argv: list[str] | None = None):
        self.args = args
        self.run_dir = Path(args.run_dir)
        self.command = 'python -m sim_training.train_policy ' + shlex.join(
            sys.argv[1:] if argv is None else argv)
        self.model = None
        self.state: dict[str, Any] = {'wall_s': 0.0, 'sessions': []}
        self._t0 = time.perf_counter()
        self._steps0 = 0
        self._load0 = list(os.getloadavg())

    # -- model ---------------------------------------------------------------------------------
    def build(self, venv):
        """A fresh (Recurrent)PPO, or the checkpoint's attached to ``venv`` when resuming."""
        a = self.args
        algo = algorithm_class(a.lstm_hidden > 0)
        tb = str(self.run_dir / 'tb') if a.tensorboard else None
        ckpt = self.run_dir / CHECKPOINT
        if a.resume and ckpt.exists():
            if is_recurrent_checkpoint(ckpt) != (a.lstm_hidden > 0):
                raise ValueError(f'{ckpt}: checkpoint is '
                                 f'{"" if a.lstm_hidden == 0 else "not "}recurrent, this run '
                                 f'has --lstm-hidden {a.lstm_hidden}')
            self.model = algo.load(ckpt, env=venv, device='cpu', tensorboard_log=tb,
                                   force_reset=True)
            self.model.ent_coef = a.ent_coef
            if a.resume_learning_rate > 0:
                self.model.learning_rate = a.resume_learning_rate
                self.model._setup_lr_schedule()
            state_path = self.run_dir / STATE
            if state_path.exists():
                self.state = json.loads(state_path.read_text(encoding='utf-8'))
            print(f'resumed {ckpt} at {self.model.num_timesteps} steps '
                  f'({self.model._n_updates} updates)', flush=True)
            return self.model
        if a.resume:
            print(f'--resume: no {ckpt} yet, starting from scratch', flush=True)
        lr: Any = a.learning_rate
        if a.lr_schedule == 'linear':
            from stable_baselines3.common.utils import LinearSchedule

            lr = LinearSchedule(a.learning_rate, a.learning_rate * a.lr_end_factor, 1.0)
        policy_kwargs = {
            'features_extractor_class': NavFeaturesExtractor,
            'features_extractor_kwargs': {'channels': parse_channels(a.channels),
                                          'features_dim': a.features_dim},
            'net_arch': [],
            'normalize_images': False,
            'share_features_extractor': True,
        }
        if a.lstm_hidden:
            policy_kwargs.update(lstm_hidden_size=a.lstm_hidden, n_lstm_layers=1,
                                 shared_lstm=False, enable_critic_lstm=True)
        self.model = algo('CnnLstmPolicy' if a.lstm_hidden else 'CnnPolicy', venv,
                          learning_rate=lr, n_steps=a.n_steps, batch_size=a.batch_size,
                          n_epochs=a.n_epochs, gamma=a.gamma, gae_lambda=a.gae_lambda,
                          clip_range=a.clip_range, ent_coef=a.ent_coef, vf_coef=a.vf_coef,
                          max_grad_norm=a.max_grad_norm, policy_kwargs=policy_kwargs,
                          tensorboard_log=tb, seed=a.seed, device='cpu', verbose=a.verbose)
        if a.init_from:
            if init_is_checkpoint(a.init_from):
                init_from_checkpoint(self.model, a.init_from, extra_planes(a))
            else:
                init_from_exported(self.model, a.init_from)
            print(f'initialised from {a.init_from}', flush=True)
        return self.model

    # -- bookkeeping ---------------------------------------------------------------------------
    def _session_wall(self) -> float:
        return time.perf_counter() - self._t0

    def save_checkpoint(self) -> None:
        """Write ``checkpoint.zip`` then ``checkpoint.json``, each atomically.

        The zip goes first so the json's step count never runs ahead of the weights.
        """
        buf = io.BytesIO()
        self.model.save(buf)
        atomic_write_bytes(self.run_dir / CHECKPOINT, buf.getvalue())
        state = self.current_state()
        text = (json.dumps(state, indent=1) + '\n').encode()
        atomic_write_bytes(self.run_dir / STATE, text)
        if self.args.keep_checkpoints:
            kept = self.run_dir / 'checkpoints' / f'checkpoint_{self.model.num_timesteps}'
            kept.parent.mkdir(exist_ok=True)
            atomic_write_bytes(kept.with_suffix('.zip'), buf.getvalue())
            atomic_write_bytes(kept.with_suffix('.json'), text)

    def current_state(self) -> dict[str, Any]:
        """Training figures so far: steps, updates, wall time and throughput over sessions."""
        m = self.model
        wall = self._session_wall()
        steps = m.num_timesteps - self._steps0
        session = {'start_steps': self._steps0, 'end_steps': m.num_timesteps,
                   'wall_s': round(wall, 1), 'steps_per_s': round(steps / max(wall, 1e-9), 1),
                   'loadavg_start': self._load0, 'loadavg_now': list(os.getloadavg()),
                   'command': self.command}
        prev = self.state.get('sessions', [])
        total_wall = sum(s['wall_s'] for s in prev) + wall
        return {'num_timesteps': m.num_timesteps, 'n_updates': int(m._n_updates),
                'total_timesteps_target': self.args.total_timesteps,
                'wall_s': round(total_wall, 1),
                'steps_per_s': round(m.num_timesteps / max(total_wall, 1e-9), 1),
                'ep_success_mean': float(np.mean(m.ep_success_buffer))
                if m.ep_success_buffer else None,
                'ep_len_mean': float(np.mean([e['l'] for e in m.ep_info_buffer]))
                if m.ep_info_buffer else None,
                'args': asdict(self.args), 'sessions': [*prev, session],
                **({'dagger': self.state['dagger']} if 'dagger' in self.state else {})}

    # -- run -----------------------------------------------------------------------------------
    def run_dagger(self, venv) -> dict[str, Any]:
        """The DAgger warm start (``--dagger-steps``) of the fresh model's policy."""
        from sim_training.dagger import DaggerConfig, pretrain

        a = self.args
        cfg = DaggerConfig(steps=a.dagger_steps, iterations=a.dagger_iterations,
                           beta_decay=a.dagger_beta_decay, epochs=a.dagger_epochs,
                           learning_rate=a.dagger_learning_rate, batch_size=a.batch_size,
                           gamma=a.gamma, max_grad_norm=a.max_grad_norm, seed=a.seed)
        result = pretrain(self.model, venv, cfg, progress=a.progress)
        print(f'DAgger: {result["steps"]} expert labels in {result["wall_s"]:.0f} s', flush=True)
        return result

    def train(self) -> dict[str, Any]:
        """Train to ``total_timesteps`` (continuing a checkpoint with ``--resume``)."""
        a = self.args
        torch.set_num_threads(a.torch_threads)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        venv = make_vec_env(a)
        try:
            model = self.build(venv)
            self._steps0 = model.num_timesteps
            self._t0 = time.perf_counter()
            self._load0 = list(os.getloadavg())
            if a.dagger_steps and model.num_timesteps == 0 and 'dagger' not in self.state:
                self.state['dagger'] = self.run_dagger(venv)
                self.save_checkpoint()
            remaining = a.total_timesteps - model.num_timesteps
            if remaining > 0:
                callbacks = [CheckpointCallback(self, a.checkpoint_freq)]
                if a.progress:
                    callbacks.append(TqdmCallback())
                model.learn(remaining, callback=callbacks,
                            reset_num_timesteps=model.num_timesteps == 0,
                            tb_log_name='PPO', progress_bar=False)
            else:
                print(f'already at {model.num_timesteps} >= {a.total_timesteps} steps',
                      flush=True)
            self.save_checkpoint()
            state = self.current_state()
        finally:
            venv.close()
        print(f'trained {state["num_timesteps"]} steps ({state["n_updates"]} updates) in '
              f'{state["wall_s"]:.0f} s total, {state["steps_per_s"]:.0f} steps/s; '
              f'checkpoint {self.run_dir / CHECKPOINT}', flush=True)
        if a.export:
            from sim_training.export_policy import export

            out = export(self.run_dir / CHECKPOINT, a.export)
            print(f'exported {out}', flush=True)
        return state


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    args = parse_args(argv)
    Trainer(args, argv).train()
    return 0


if __name__ == '__main__':
    # Import by module name so SB3 pickles NavFeaturesExtractor by reference, not from __main__.
    from sim_training.train_policy import main as _main

    sys.exit(_main())
