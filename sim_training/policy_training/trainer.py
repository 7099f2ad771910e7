"""PPO (Stable-Baselines3) on ChairNav: the network, the model setup and the learn loop.

One preprocessing path: the wrappers feed SB3 the output of
``vr_goggles.image.preprocess.normalize`` (float ``(3, 64, 64)`` in [-1, 1]) and the policy runs
with ``normalize_images=False``, so the exported :class:`vr_goggles.models.actor.NavActor` sees
the same tensors on the robot (``vr_goggles.policy.Policy``) as it did in training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
import os
from pathlib import Path
import sys
import time
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
import torch

from sim_training.export_policy import export
from sim_training.policy_training.args import Args, extra_planes, parse_channels
from sim_training.policy_training.checkpoints import (
    CHECKPOINT,
    CheckpointCallback,
    init_from_checkpoint,
    init_from_exported,
    init_is_checkpoint,
    load_checkpoint,
    read_state,
    refuse_removed,
    write_checkpoint,
)
from sim_training.policy_training.wrappers import make_env
from sim_training.run_control import (
    StopOnInterrupt,
    TrainingInterrupted,
    command_line,
    ignore_sigint_in_worker,
    refuse_existing_run,
)
from vr_goggles.models.actor import NavEncoder


class NavFeaturesExtractor(BaseFeaturesExtractor):
    """SB3 features extractor around :class:`NavEncoder`, so export is a state-dict copy.

    Checkpoints name this class by its import path; those saved before the policy training
    package name ``sim_training.train_policy.NavFeaturesExtractor``, which still resolves here.
    """

    def __init__(self, observation_space: gym.spaces.Box, channels: tuple[int, ...] = (16, 32, 32),
                 features_dim: int = 128):
        super().__init__(observation_space, features_dim)
        c, h, w = observation_space.shape
        self.nav_kwargs = {'in_channels': int(c), 'input_size': [int(h), int(w)],
                           'channels': [int(v) for v in channels],
                           'features_dim': int(features_dim)}
        self.encoder = NavEncoder(**self.nav_kwargs)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """Normalised observations ``(N, C, H, W)`` -> features ``(N, features_dim)``.

        The batch goes in channels-last: oneDNN's weight gradient of the first (8x8, stride 4)
        conv is then faster on CPU with 4 stacked frames, and that is the bulk of a PPO update.
        Same function, same weights.
        """
        return self.encoder(observations.contiguous(memory_format=torch.channels_last))


def make_vec_env(args: Args):
    """``args.n_envs`` training envs, seeded ``seed + rank`` on their first reset."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    fns = [make_env(args.domain, args.obs_size, args.max_episode_steps,
                    collision_penalty=args.collision_penalty, frame_stack=args.frame_stack,
                    progress_reward=args.progress_reward, turn_memory=args.turn_memory,
                    turn_window=args.turn_window, camera_augment=args.camera_augment)
           for _ in range(args.n_envs)]
    if args.vec_env == 'subproc' and args.n_envs > 1:
        # Ctrl-C is the main process's to handle (StopOnInterrupt), not each worker's
        venv = SubprocVecEnv([ignore_sigint_in_worker(f) for f in fns],
                             start_method='forkserver')
    else:
        venv = DummyVecEnv(fns)
    venv.seed(args.seed)
    return venv


class StopCallback(BaseCallback):
    """After a Ctrl-C, save at the next rollout start (right after a PPO update) and stop.

    That is the state :class:`CheckpointCallback` also saves, so ``--resume`` continues as if
    the run had never stopped; stopping mid-rollout would count steps no update trained on.
    """

    def __init__(self, stop: StopOnInterrupt, save: Callable[[], None]):
        super().__init__()
        self.stop = stop
        self.save = save
        self.saved_at: int | None = None  #: steps at the checkpoint written on Ctrl-C

    def _on_rollout_start(self) -> None:
        if self.stop.requested and self.saved_at is None:
            self.save()
            self.saved_at = self.model.num_timesteps

    def _on_step(self) -> bool:
        return self.saved_at is None


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


class Trainer:
    """Owns the run directory, the model and the bookkeeping carried across ``--resume``."""

    def __init__(self, args: Args, argv: list[str] | None = None):
        self.args = args
        self.run_dir = Path(args.run_dir)
        self.command = command_line('sim_training.train_policy', argv)
        self.model = None
        self.state: dict[str, Any] = {'wall_s': 0.0, 'sessions': []}
        self._t0 = time.perf_counter()
        self._steps0 = 0
        self._load0 = list(os.getloadavg())

    # -- model ---------------------------------------------------------------------------------
    def build(self, venv):
        """A fresh PPO, or the checkpoint's attached to ``venv`` when resuming."""
        a = self.args
        tb = str(self.run_dir / 'tb') if a.tensorboard else None
        ckpt = self.run_dir / CHECKPOINT
        if a.resume and ckpt.exists():
            state = read_state(ckpt)
            refuse_removed(state.get('args', {}), ckpt)
            self.model = load_checkpoint(ckpt, env=venv, tensorboard_log=tb, force_reset=True)
            self.model.ent_coef = a.ent_coef
            if a.resume_learning_rate > 0:
                self.model.learning_rate = a.resume_learning_rate
                self.model._setup_lr_schedule()
            if state:
                self.state = state
            print(f'resumed {ckpt} at {self.model.num_timesteps} steps '
                  f'({self.model._n_updates} updates)', flush=True)
            return self.model
        if a.resume:
            print(f'--resume: no {ckpt} yet, starting from scratch', flush=True)
        from stable_baselines3 import PPO

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
        self.model = PPO('CnnPolicy', venv, learning_rate=lr, n_steps=a.n_steps,
                         batch_size=a.batch_size, n_epochs=a.n_epochs, gamma=a.gamma,
                         gae_lambda=a.gae_lambda, clip_range=a.clip_range, ent_coef=a.ent_coef,
                         vf_coef=a.vf_coef, max_grad_norm=a.max_grad_norm,
                         policy_kwargs=policy_kwargs, tensorboard_log=tb, seed=a.seed,
                         device='cpu', verbose=a.verbose)
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
        """Write ``checkpoint.zip`` and ``checkpoint.json`` (atomically; see checkpoints)."""
        write_checkpoint(self.run_dir, self.model, self.current_state(),
                         keep=self.args.keep_checkpoints)

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
                'args': asdict(self.args), 'sessions': [*prev, session]}

    # -- run -----------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Train to ``total_timesteps`` (continuing a checkpoint with ``--resume``)."""
        a = self.args
        if not a.resume and not a.overwrite:
            refuse_existing_run(self.run_dir, CHECKPOINT, resume_flag='--resume')
        torch.set_num_threads(a.torch_threads)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        venv = make_vec_env(a)
        stopper = StopCallback(StopOnInterrupt(what='PPO', unit='rollout and its update'),
                               self.save_checkpoint)
        try:
            model = self.build(venv)
            self._steps0 = model.num_timesteps
            self._t0 = time.perf_counter()
            self._load0 = list(os.getloadavg())
            remaining = a.total_timesteps - model.num_timesteps
            if remaining > 0:
                callbacks = [CheckpointCallback(self.save_checkpoint, a.checkpoint_freq),
                             stopper]
                if a.progress:
                    callbacks.append(TqdmCallback())
                with stopper.stop:
                    model.learn(remaining, callback=callbacks,
                                reset_num_timesteps=model.num_timesteps == 0,
                                tb_log_name='PPO', progress_bar=False)
            else:
                print(f'already at {model.num_timesteps} >= {a.total_timesteps} steps',
                      flush=True)
            if stopper.saved_at is None:
                self.save_checkpoint()
            state = self.current_state()
        finally:
            venv.close()
        if stopper.saved_at is not None:
            raise TrainingInterrupted(
                f'interrupted at {stopper.saved_at} of {a.total_timesteps} steps: checkpoint '
                f'{self.run_dir / CHECKPOINT} saved; rerun with --resume to continue')
        print(f'trained {state["num_timesteps"]} steps ({state["n_updates"]} updates) in '
              f'{state["wall_s"]:.0f} s total, {state["steps_per_s"]:.0f} steps/s; '
              f'checkpoint {self.run_dir / CHECKPOINT}', flush=True)
        if a.export:
            out = export(self.run_dir / CHECKPOINT, a.export)
            print(f'exported {out}', flush=True)
        return state
