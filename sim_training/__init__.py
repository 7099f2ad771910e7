"""Simulator, data collection and training utilities for VR-Goggles (not needed on the robot).

Importing this package registers ``VrGoggles/ChairNav-v0`` with Gymnasium and makes pyglet
render headless (EGL) unless ``PYGLET_HEADLESS`` is already set, with Mesa's software rasteriser
single-threaded (``LP_NUM_THREADS=0``, about 3x faster for 64x64 frames) unless that is set.
"""

from __future__ import annotations

import os

os.environ.setdefault('PYGLET_HEADLESS', '1')
os.environ.setdefault('LP_NUM_THREADS', '0')

ENV_ID = 'VrGoggles/ChairNav-v0'
#: Equals ``sim_training.envs.chair_nav.DEFAULT_MAX_EPISODE_STEPS`` (not imported here, so that
#: registering does not load pyglet/OpenGL).
_MAX_EPISODE_STEPS = 120


def _register() -> None:
    try:
        import gymnasium as gym
    except ImportError:  # the robot-side install has no gymnasium; nothing to register
        return
    if ENV_ID not in gym.registry:
        # The step limit is gym.make's TimeLimit (so gym.make(ENV_ID, max_episode_steps=N)
        # works for any N); the env's own limit is off for envs made this way.
        gym.register(id=ENV_ID, entry_point='sim_training.envs.chair_nav:ChairNavEnv',
                     max_episode_steps=_MAX_EPISODE_STEPS,
                     kwargs={'max_episode_steps': None})


_register()
