"""Room layouts of the chair-navigation task: room, chair, distractors and start pose.

A layout is a function of the layout seed only (:func:`generate` draws from the generator
the environment installs as its ``np_random`` for the call), so every domain renders the same
geometry and start pose for the same seed; appearance is chosen afterwards, from another
stream, by :mod:`sim_training.envs.looks`.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from sim_training.envs import headless  # noqa: F401  (before miniworld loads pyglet)

# isort: split
from miniworld.entity import Box, Entity, MeshEnt
from miniworld.miniworld import MiniWorldEnv, Room

ROOM_SIZE = (4.0, 7.0)        # side lengths in metres
WALL_HEIGHT = (2.4, 3.0)
NUM_DISTRACTORS = (1, 3)      # inclusive
START_FACING_CHAIR = 0.4      # share of starts heading within 45 degrees of the chair
AGENT_RADIUS = 0.25
CHAIR_HEIGHT = 0.95


@dataclass(frozen=True)
class Distractor:
    """A kind of distractor: a miniworld mesh (``mesh``) or a box (``mesh=None``)."""

    name: str
    mesh: str | None
    height: tuple[float, float]
    real_category: str       # texture pool for the real-proxy look


DISTRACTORS: tuple[Distractor, ...] = (
    Distractor('desk', 'office_desk', (0.75, 0.9), 'furniture'),
    Distractor('barrel', 'barrel', (0.7, 0.95), 'object'),
    Distractor('cone', 'cone', (0.45, 0.7), 'object'),
    Distractor('box', None, (0.35, 0.8), 'object'),
)


@dataclass
class Layout:
    """What :func:`generate` placed, beyond miniworld's own ``entities`` and ``rooms``."""

    room: Room
    chair: MeshEnt
    entity_kinds: list[str]          # per entity index: 'chair' or a distractor name
    box_sizes: dict[int, np.ndarray]  # entity index -> box size (x, y, z) for box distractors


def wrap(angle: float) -> float:
    """Wrap an angle to (-pi, pi]."""
    a = math.fmod(angle + math.pi, 2 * math.pi)
    if a <= 0:
        a += 2 * math.pi
    return a - math.pi


def generate(env: MiniWorldEnv, min_start_distance: float) -> Layout:
    """Lay out ``env``'s (empty) world and place its agent, drawing from ``env.np_random``.

    Miniworld's placement helpers draw from ``env.np_random`` too, so the caller installs the
    layout generator there for the call. The agent starts at least ``min_start_distance``
    from the chair.
    """
    rng = env.np_random
    w = float(rng.uniform(*ROOM_SIZE))
    d = float(rng.uniform(*ROOM_SIZE))
    room = env.add_rect_room(0.0, w, 0.0, d, wall_height=float(rng.uniform(*WALL_HEIGHT)))
    chair = env.place_entity(MeshEnt('office_chair', CHAIR_HEIGHT), room=room)
    entity_kinds: list[str] = ['chair']
    box_sizes: dict[int, np.ndarray] = {}
    for _ in range(int(rng.integers(NUM_DISTRACTORS[0], NUM_DISTRACTORS[1] + 1))):
        kind = DISTRACTORS[int(rng.integers(len(DISTRACTORS)))]
        h = float(rng.uniform(*kind.height))
        if kind.mesh is None:
            size = np.array([rng.uniform(0.35, 0.9), h, rng.uniform(0.35, 0.9)])
            ent: Entity = Box('grey', size)
        else:
            ent = MeshEnt(kind.mesh, h)
        # Keep a robot-wide gap around the chair so it can always be approached.
        gap = chair.radius + ent.radius + 2 * AGENT_RADIUS + 0.1
        pos = free_pos(env, ent.radius, w, d, avoid=chair.pos, min_dist=gap)
        if pos is None:  # no room for this one: fewer distractors
            continue
        if kind.mesh is None:
            box_sizes[len(env.entities)] = size
        env.place_entity(ent, pos=pos, dir=float(rng.uniform(-math.pi, math.pi)))
        entity_kinds.append(kind.name)
    # Start pose: free, at least min_start_distance from the chair, heading uniform.
    pos = free_pos(env, env.agent.radius, w, d, avoid=chair.pos, min_dist=min_start_distance)
    if pos is None:  # cannot happen in a 4 m room; keep the episode valid regardless
        pos = free_pos(env, env.agent.radius, w, d)
    # Heading: uniform, except that 40 % of starts face the chair within +-45 degrees
    # (so the chair is in view at about half of the starts).
    to_chair = math.atan2(-(chair.pos[2] - pos[2]), chair.pos[0] - pos[0])
    if rng.random() < START_FACING_CHAIR:
        heading = to_chair + float(rng.uniform(-math.pi / 4, math.pi / 4))
    else:
        heading = float(rng.uniform(-math.pi, math.pi))
    env.place_entity(env.agent, pos=pos, dir=wrap(heading))
    return Layout(room=room, chair=chair, entity_kinds=entity_kinds, box_sizes=box_sizes)


def free_pos(env: MiniWorldEnv, radius: float, w: float, d: float,
             avoid: np.ndarray | None = None, min_dist: float = 0.0,
             tries: int = 500) -> np.ndarray | None:
    """A collision-free floor position, at least ``min_dist`` from ``avoid``, or None."""
    rng = env.np_random
    for _ in range(tries):
        pos = np.array([rng.uniform(radius, w - radius), 0.0, rng.uniform(radius, d - radius)])
        if env.intersect(None, pos, radius):
            continue
        if avoid is None or np.linalg.norm((pos - avoid)[[0, 2]]) >= min_dist:
            return pos
    return None
