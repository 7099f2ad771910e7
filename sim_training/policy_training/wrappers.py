"""The training environment: ChairNav plus the Gymnasium wrappers that shape what PPO sees.

Reward shaping (collision penalty, geodesic progress) and the camera augmentation act on the
raw env and exist in training only. The observation wrappers after them build the input exactly
as the robot's :class:`vr_goggles.policy.Policy` does, through the same classes: the one
normalisation (``vr_goggles.image.preprocess.normalize``), the frame history
(:class:`vr_goggles.policy.frame_stack.FrameStack`) and the turn memory
(:class:`vr_goggles.policy.turn_memory.TurnMemory`).
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np

from vr_goggles.image.preprocess import normalize
from vr_goggles.policy.frame_stack import FrameStack
from vr_goggles.policy.turn_memory import TurnMemory

ENV_ID = 'VrGoggles/ChairNav-v0'


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

    def __init__(self, env: gym.Env, k: int):
        super().__init__(env)
        c, h, w = env.observation_space.shape
        self.stack = FrameStack(k)
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


class SuccessInfo(gym.Wrapper):
    """Copy ``info['success']`` to SB3's ``is_success`` so rollouts log a success rate."""

    def step(self, action):
        """Step the env; on the last step add ``is_success``."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info['is_success'] = bool(info.get('success', False))
        return obs, reward, terminated, truncated, info


def make_env(domain: str, obs_size: int, max_episode_steps: int = 0, split: str = 'train',
             collision_penalty: float = 0.0, frame_stack: int = 1,
             progress_reward: str = 'euclidean', turn_memory: int = 0, turn_window: int = 0,
             camera_augment: float = 0.0):
    """Env factory (picklable for ``SubprocVecEnv``): ChairNav, wrappers, stack, turn plane."""

    def thunk() -> gym.Env:
        os.environ.setdefault('PYGLET_HEADLESS', '1')
        from stable_baselines3.common.monitor import Monitor

        import sim_training  # noqa: F401  (registers the environment)

        kwargs: dict[str, Any] = {'domain': domain, 'obs_size': obs_size, 'split': split}
        if max_episode_steps:
            kwargs['max_episode_steps'] = max_episode_steps
        env = gym.make(ENV_ID, **kwargs)
        if progress_reward == 'geodesic':
            env = GeodesicProgress(env)
        if collision_penalty:
            env = CollisionPenalty(env, collision_penalty)
        if camera_augment:
            env = CameraAugment(env, camera_augment)
        env = NormalizeObservation(Monitor(SuccessInfo(env)))
        if frame_stack > 1:
            env = StackFrames(env, frame_stack)
        return TurnMemoryPlane(env, turn_memory, turn_window) if turn_memory else env

    return thunk
