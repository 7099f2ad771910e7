"""Chair navigation in procedurally laid-out indoor rooms (Farama Miniworld 2.1).

See :class:`ChairNavEnv` for the task, spaces, rewards and domains. Layout seeds are split into
:data:`TRAIN_SEEDS` and :data:`EVAL_SEEDS`.
"""

from __future__ import annotations

import os

# Before pyglet/GL load: headless EGL, and Mesa's software rasteriser in the calling thread
# (its worker threads cost more than they save on 64x64 frames, badly so on a busy machine).
os.environ.setdefault('PYGLET_HEADLESS', '1')
os.environ.setdefault('LP_NUM_THREADS', '0')

import contextlib  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
import functools  # noqa: E402
import gc  # noqa: E402
import io  # noqa: E402
import math  # noqa: E402
from typing import Any  # noqa: E402

from gymnasium import spaces  # noqa: E402
import numpy as np  # noqa: E402
import pyglet  # noqa: E402

if os.environ.get('PYGLET_HEADLESS', '').lower() in ('1', 'true', 'yes'):
    pyglet.options['headless'] = True

from miniworld.entity import Box, Entity, MeshEnt  # noqa: E402
from miniworld.miniworld import MiniWorldEnv  # noqa: E402
from miniworld.params import DEFAULT_PARAMS, DomainParams  # noqa: E402
from miniworld.utils import get_file_path  # noqa: E402
from pyglet import gl  # noqa: E402

from sim_training.envs import glutil, real_proxy  # noqa: E402
from vr_goggles.goggles.floor_prior import SIM_CAMERA  # noqa: E402
from vr_goggles.image import semantics  # noqa: E402
from vr_goggles.policy.actions import (  # noqa: E402
    ACTION_NAMES,
    FORWARD,
    FORWARD_STEP,
    TURN_LEFT,
    TURN_RIGHT,
    TURN_STEP,
)

__all__ = [
    'DEFAULT_MAX_EPISODE_STEPS', 'DOMAINS', 'EVAL_SEEDS', 'SPLITS', 'SUCCESS_ANGLE',
    'SUCCESS_DISTANCE', 'TRAIN_SEEDS', 'ChairNavEnv', 'split_seeds',
]

#: Layout seeds for training and for evaluation (disjoint; evaluation layouts are never trained).
TRAIN_SEEDS = range(0, 1_000_000)
EVAL_SEEDS = range(1_000_000, 1_010_000)
SPLITS: dict[str, range] = {'train': TRAIN_SEEDS, 'eval': EVAL_SEEDS}
DOMAINS: tuple[str, ...] = ('sim', 'real', 'randomized')

#: Success: chair centre within this many metres of the robot centre (the chair's collision
#: disc is 0.40 m and the robot's 0.25 m, so contact happens at 0.65 m) ...
SUCCESS_DISTANCE = 1.1
#: ... and the chair's bearing within this many radians of the heading (roughly centred).
SUCCESS_ANGLE = math.radians(20.0)
DEFAULT_MAX_EPISODE_STEPS = 120

#: Reward terms (see the class docstring).
PROGRESS_REWARD = 1.0      # per metre of progress towards the chair
SUCCESS_REWARD = 5.0
STEP_PENALTY = 0.01
COLLISION_PENALTY = 0.1

ROOM_SIZE = (4.0, 7.0)        # side lengths in metres
WALL_HEIGHT = (2.4, 3.0)
NUM_DISTRACTORS = (1, 3)      # inclusive
MIN_START_DISTANCE = SUCCESS_DISTANCE + 0.9
START_FACING_CHAIR = 0.4      # share of starts heading within 45 degrees of the chair
AGENT_RADIUS = 0.25
CHAIR_HEIGHT = 0.95
# A small robot's camera, looking slightly down; one definition with the floor prior's.
CAM_HEIGHT = SIM_CAMERA.height_m
CAM_PITCH = SIM_CAMERA.pitch_deg  # degrees
CAM_FOV_Y = SIM_CAMERA.fov_y_deg  # degrees; the image is square so the horizontal FOV is equal

_LABEL_STEP = 40              # class k is drawn with red = 40 * k; decoded by rounding


def split_seeds(split: str) -> range:
    """The layout seed range of ``split`` ('train' or 'eval')."""
    try:
        return SPLITS[split]
    except KeyError:
        raise ValueError(f"split: expected one of {sorted(SPLITS)}, got {split!r}") from None


def _params() -> DomainParams:
    """Miniworld parameters: project step sizes and camera as defaults, DR ranges around them."""
    p = DEFAULT_PARAMS.copy()
    p.set('forward_step', FORWARD_STEP, 0.85 * FORWARD_STEP, 1.15 * FORWARD_STEP)
    p.set('forward_drift', 0.0, -0.02, 0.02)
    turn = math.degrees(TURN_STEP)
    p.set('turn_step', turn, 0.8 * turn, 1.2 * turn)
    p.set('bot_radius', AGENT_RADIUS, AGENT_RADIUS, AGENT_RADIUS)
    p.set('cam_pitch', CAM_PITCH, CAM_PITCH - 5, CAM_PITCH + 5)
    p.set('cam_fov_y', CAM_FOV_Y, CAM_FOV_Y - 5, CAM_FOV_Y + 5)
    p.set('cam_height', CAM_HEIGHT, CAM_HEIGHT - 0.05, CAM_HEIGHT + 0.05)
    p.set('cam_fwd_disp', 0.0, -0.05, 0.10)
    return p


@dataclass(frozen=True)
class _Distractor:
    """A kind of distractor: a miniworld mesh (``mesh``) or a box (``mesh=None``)."""

    name: str
    mesh: str | None
    height: tuple[float, float]
    real_category: str       # texture pool for the real-proxy look


_DISTRACTORS: tuple[_Distractor, ...] = (
    _Distractor('desk', 'office_desk', (0.75, 0.9), 'furniture'),
    _Distractor('barrel', 'barrel', (0.7, 0.95), 'object'),
    _Distractor('cone', 'cone', (0.45, 0.7), 'object'),
    _Distractor('box', None, (0.35, 0.8), 'object'),
)

#: Canonical sim textures (miniworld's own Room defaults) and the DR texture pool.
_SIM_SURFACES = {'floor': 'floor_tiles_bw_1', 'wall': 'concrete_1',
                 'ceiling': 'concrete_tiles_1', 'box': 'cardboard_1'}
_DR_TEXTURES = (
    'airduct_grate_1', 'asphalt_1', 'brick_wall_1', 'cardboard_1', 'cardboard_2',
    'cardboard_4', 'ceiling_tile_noborder_1', 'ceiling_tiles_1', 'cinder_blocks_1',
    'concrete_1', 'concrete_2', 'concrete_3', 'concrete_4', 'concrete_tiles_1', 'drywall_1',
    'floor_tiles_bw_1', 'floor_tiles_white', 'grass_1', 'lava_1', 'marble_1', 'marble_2',
    'metal_grill_1', 'rock_1', 'slime_1', 'stucco_1', 'water_1', 'white_1', 'wood_1', 'wood_2',
    'wood_planks_1',
)
_DR_PROCEDURAL = 24        # procedural textures in the DR pool (fixed pool seed below)
_POOL_SEED = 20240601      # pools are fixed per process; per-episode choices use np_random


@dataclass
class _Material:
    """How one surface is drawn in the look pass: texture (or none), tint, texture scale."""

    texture: glutil.GLTexture | None
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    tile_m: float = 1.0
    own_uv: bool = False     # a mesh's own texture: use the mesh's UVs, not a projection


@dataclass
class _Look:
    """One episode's appearance: materials, light and camera model."""

    floor: _Material
    wall: _Material
    ceiling: _Material
    entities: list[_Material]
    light_pos: np.ndarray
    light_ambient: np.ndarray
    light_diffuse: np.ndarray
    attenuation: float = 0.0
    camera: real_proxy.CameraModel | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@functools.lru_cache(maxsize=16)
def _mesh_chunks(mesh_name: str) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, bool], ...]:
    """(verts, texcs, norms, textured) per chunk of a miniworld mesh, in mesh units."""
    from miniworld.objmesh import ObjMesh

    mesh = ObjMesh.get(mesh_name)
    chunks = []
    for vlist, tex in zip(mesh.vlists, mesh.textures):
        n = vlist.get_size()
        verts = np.asarray(vlist.vertices[:], np.float32).reshape(n, 3)
        texcs = np.asarray(vlist.tex_coords[:], np.float32).reshape(n, 2)
        norms = np.asarray(vlist.normals[:], np.float32).reshape(n, 3)
        chunks.append((verts, texcs, norms, tex is not None))
    return tuple(chunks)


def _mesh_texture_path(mesh_name: str) -> str:
    return get_file_path('meshes', mesh_name, 'png')


def _texture_path(name: str) -> str:
    return get_file_path('textures', name, 'png')


class ChairNavEnv(MiniWorldEnv):
    """Drive a small robot to an office chair in a furnished room.

    ## Description

    Each episode is one rectangular room (sides 4-7 m, walls 2.4-3.0 m high) holding an office
    chair (miniworld's ``office_chair`` mesh, 0.95 m tall) and 1-3 distractors (desks, barrels,
    cones, boxes). The robot (radius 0.25 m, camera 0.9 m high pitched 8 degrees down, 60 degree
    field of view) starts at a random free pose at least 2 m from the chair (heading uniform,
    except that 40 % of starts face the chair within 45 degrees, so the chair is in view at
    about half of the starts) and must drive up to it. Distractors keep a robot-wide gap
    around the chair; a planning oracle (:mod:`sim_training.envs.oracle`) solves 99.5 % of
    evaluation layouts in about 35 steps. Room size, placements and the start pose are a
    function of the **layout seed** only, so every domain renders the same geometry for the
    same seed.

    ## Action Space

    ``Discrete(3)`` from :mod:`vr_goggles.policy.actions`: one step is one control period
    (``CONTROL_PERIOD`` = 0.5 s) of the velocity ``ACTION_VELOCITIES[a]`` (linear m/s, angular
    rad/s, counter-clockwise positive):

    | action | name | effect per step | (linear, angular) |
    | --- | --- | --- | --- |
    | 0 | forward | +0.15 m (``FORWARD_STEP``) unless blocked | (0.3, 0.0) |
    | 1 | turn_left | +15 degrees (``TURN_STEP``) | (0.0, +0.524) |
    | 2 | turn_right | -15 degrees | (0.0, -0.524) |

    A forward step into a wall or object is refused (the robot stays) and counts a collision.
    Motion is exact except with ``physical_randomization`` (see Domains).

    ## Observation Space

    ``Box(0, 255, (obs_size, obs_size, 3), uint8)``: the robot's RGB camera image, rendered
    directly at ``obs_size`` (default 64).

    ## Rewards

    Per step: ``1.0 * (d_prev - d)`` (metres of progress towards the chair centre)
    ``- 0.01`` (step cost) ``- 0.1`` if the step collided, and ``+5.0`` on success. An optimal
    episode therefore earns about ``start_distance - 1.1 + 5``.

    ## Success and Episode End

    Success when the chair centre is within ``SUCCESS_DISTANCE`` = 1.1 m of the robot centre
    and its bearing within ``SUCCESS_ANGLE`` = 20 degrees of the heading (the chair is close
    and roughly centred in view). The episode terminates on success and is truncated after
    ``max_episode_steps`` (default 120; a good policy needs about 20-40 steps).
    ``gym.make('VrGoggles/ChairNav-v0', max_episode_steps=N)`` sets the limit through
    Gymnasium's ``TimeLimit`` (the registration turns the env's own limit off, ``None``);
    a directly constructed env enforces its ``max_episode_steps`` itself.

    ## Domains (``domain=``)

    - ``'sim'``: the canonical look, miniworld's textures (black/white floor tiles, concrete
      walls, tiled ceiling, the meshes' own textures), one fixed light at the ceiling centre,
      a clean camera.
    - ``'real'``: real-proxy look over the same geometry: floor, walls, ceiling, furniture,
      chair and objects textured with tiles cut from real indoor photos
      (:mod:`sim_training.envs.real_proxy`), a warm attenuated light at a random ceiling
      position, and a camera model (exposure, white balance, tone curve, saturation,
      vignetting, blur, sensor noise, JPEG 30-70). Used for evaluation and as the "real"
      domain of translator training.
    - ``'randomized'``: domain randomisation for a DR baseline: every surface gets a random
      miniworld or procedural texture (never a photo), random tint, light position/colour and
      a randomised camera model; by default also miniworld's physical randomisation (camera
      height/pitch/FOV/offset per episode, forward/turn step noise and drift per step).

    Appearance randomness comes from a generator seeded from ``np_random``, separate from the
    layout, so the same seed gives the same layout and start pose in every domain; with
    ``physical_randomization=False`` (the default except for ``'randomized'``) the labels are
    identical across domains too.

    ## Seeds and Splits

    ``reset(seed=s)`` uses ``s`` as the layout seed (and seeds ``np_random``). ``reset()``
    without a seed draws the layout seed from the split's range with ``np_random``:
    :data:`TRAIN_SEEDS` = ``range(0, 1_000_000)`` for ``split='train'``, :data:`EVAL_SEEDS` =
    ``range(1_000_000, 1_010_000)`` for ``split='eval'``.

    ## Info

    ``success`` (bool), ``distance`` (m, robot centre to chair centre), ``collisions`` (count
    this episode), ``start_distance`` (distance at reset), ``shortest_path`` (straight-line
    metres needed to reach success, ``max(start_distance - 1.1, 0)``: the SPL reference),
    ``path_length`` (metres driven), ``agent_pos`` (float ``(2,)``), ``agent_dir`` (rad),
    ``chair_pos`` (float ``(2,)``), ``bearing`` (rad, chair direction relative to the heading,
    positive = to the left), ``layout_seed``, ``domain`` and, with ``labels=True``, ``labels``:
    uint8 ``(obs_size, obs_size)`` class ids of :mod:`vr_goggles.image.semantics` (void, floor,
    wall,
    ceiling, chair, object) from a flat-colour render of the same camera. Positions are planar
    ``(x, y)`` = (miniworld ``x``, ``-z``) so ``agent_dir`` is counter-clockwise from +x and
    the heading vector is ``(cos, sin)``. SPL = ``success * shortest_path /
    max(path_length, shortest_path)``.
    """

    metadata = {'render_modes': ['rgb_array'], 'render_fps': 2}

    def __init__(self, domain: str = 'sim', obs_size: int = 64, labels: bool = False,
                 split: str = 'train',
                 max_episode_steps: int | None = DEFAULT_MAX_EPISODE_STEPS,
                 render_mode: str | None = None,
                 physical_randomization: bool | None = None) -> None:
        if domain not in DOMAINS:
            raise ValueError(f'domain: expected one of {DOMAINS}, got {domain!r}')
        if not isinstance(obs_size, (int, np.integer)) or obs_size < 8:
            raise ValueError(f'obs_size: expected an int >= 8, got {obs_size!r}')
        if render_mode not in (None, 'rgb_array'):
            raise ValueError(f"render_mode: expected None or 'rgb_array', got {render_mode!r}")
        if max_episode_steps is not None and int(max_episode_steps) < 1:
            raise ValueError(f'max_episode_steps: expected >= 1 or None, '
                             f'got {max_episode_steps!r}')
        self.domain = domain
        self.obs_size = int(obs_size)
        self.labels_enabled = bool(labels)
        self.split = split
        self.seed_range = split_seeds(split)
        self.physical_randomization = (domain == 'randomized' if physical_randomization is None
                                       else bool(physical_randomization))
        # GL resources, created lazily on the first reset (needs the shadow window's context).
        self._gl_ready = False
        self._textures: dict[str, glutil.GLTexture] = {}
        self._pool: dict[str, list[glutil.GLTexture]] = {}
        self._lists: tuple[int, int] | None = None
        self._label_fb: glutil.LabelFrameBuffer | None = None
        self._obs_fb: glutil.ObsFrameBuffer | None = None
        self._last_obs: np.ndarray | None = None
        self._last_labels: np.ndarray | None = None
        # Miniworld prints "Falling back to num_samples=4" for every frame buffer on Mesa.
        with contextlib.redirect_stdout(io.StringIO()):
            super().__init__(max_episode_steps=(2**31 - 1 if max_episode_steps is None
                                                else int(max_episode_steps)),
                             obs_width=self.obs_size, obs_height=self.obs_size,
                             window_width=self.obs_size, window_height=self.obs_size,
                             params=_params(), domain_rand=False, render_mode=render_mode)
        self.action_space = spaces.Discrete(len(ACTION_NAMES))
        self.observation_space = spaces.Box(0, 255, (self.obs_size, self.obs_size, 3),
                                            dtype=np.uint8)
        self.max_episode_steps: int | None = (None if max_episode_steps is None
                                              else int(max_episode_steps))

    # ------------------------------------------------------------------ episode logic

    def reset(self, *, seed: int | None = None,
              options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Start an episode on layout ``seed`` (or one drawn from the split's range)."""
        super(MiniWorldEnv, self).reset(seed=seed)  # gym.Env.reset: seeds np_random
        if seed is not None:
            layout_seed = int(seed)
        else:
            layout_seed = int(self.seed_range[int(self.np_random.integers(len(self.seed_range)))])
        # Separate streams (all derived from np_random / the seed), always drawn in the same
        # order so every domain consumes np_random identically.
        self._look_rng = np.random.default_rng(int(self.np_random.integers(2**63)))
        self._dyn_rng = np.random.default_rng(int(self.np_random.integers(2**63)))
        self.layout_seed = layout_seed

        self.step_count = 0
        self.entities: list[Entity] = []
        self.rooms = []
        self.wall_segs = []
        from miniworld.entity import Agent
        self.agent = Agent()
        self.agent.radius = AGENT_RADIUS
        self.agent.randomize(self.params, self._dyn_rng if self.physical_randomization else None)
        self.max_forward_step = self.params.get_max('forward_step')

        layout_rng = np.random.default_rng([layout_seed, 0x6C61796F])
        saved_rng = self._np_random
        self._np_random = layout_rng  # miniworld's placement helpers draw from np_random
        try:
            self._gen_world()
        finally:
            self._np_random = saved_rng
        self.min_x, self.max_x = self.room.min_x, self.room.max_x
        self.min_z, self.max_z = self.room.min_z, self.room.max_z

        with gl_section():
            self._ensure_gl()
            self._look = self._make_look()
            self._compile_lists()

        self.collisions = 0
        self.path_length = 0.0
        self.start_distance = self._distance()
        self._prev_distance = self.start_distance
        obs, labels = self._render_frame()
        return obs, self._info(success=False, labels=labels)

    def _gen_world(self) -> None:
        rng = self.np_random  # the layout generator while this runs
        w = float(rng.uniform(*ROOM_SIZE))
        d = float(rng.uniform(*ROOM_SIZE))
        self.room = self.add_rect_room(0.0, w, 0.0, d,
                                       wall_height=float(rng.uniform(*WALL_HEIGHT)))
        self.chair = self.place_entity(MeshEnt('office_chair', CHAIR_HEIGHT), room=self.room)
        self.entity_kinds: list[str] = ['chair']
        self.box_sizes: dict[int, np.ndarray] = {}
        for _ in range(int(rng.integers(NUM_DISTRACTORS[0], NUM_DISTRACTORS[1] + 1))):
            kind = _DISTRACTORS[int(rng.integers(len(_DISTRACTORS)))]
            h = float(rng.uniform(*kind.height))
            if kind.mesh is None:
                size = np.array([rng.uniform(0.35, 0.9), h, rng.uniform(0.35, 0.9)])
                ent: Entity = Box('grey', size)
            else:
                ent = MeshEnt(kind.mesh, h)
            # Keep a robot-wide gap around the chair so it can always be approached.
            gap = self.chair.radius + ent.radius + 2 * AGENT_RADIUS + 0.1
            pos = self._free_pos(ent.radius, w, d, avoid=self.chair.pos, min_dist=gap)
            if pos is None:  # no room for this one: fewer distractors
                continue
            if kind.mesh is None:
                self.box_sizes[len(self.entities)] = size
            self.place_entity(ent, pos=pos, dir=float(rng.uniform(-math.pi, math.pi)))
            self.entity_kinds.append(kind.name)
        # Start pose: free, at least MIN_START_DISTANCE from the chair, heading uniform.
        pos = self._free_pos(self.agent.radius, w, d, avoid=self.chair.pos,
                             min_dist=MIN_START_DISTANCE)
        if pos is None:  # cannot happen in a 4 m room; keep the episode valid regardless
            pos = self._free_pos(self.agent.radius, w, d)
        # Heading: uniform, except that 40 % of starts face the chair within +-45 degrees
        # (so the chair is in view at about half of the starts).
        to_chair = math.atan2(-(self.chair.pos[2] - pos[2]), self.chair.pos[0] - pos[0])
        if rng.random() < START_FACING_CHAIR:
            heading = to_chair + float(rng.uniform(-math.pi / 4, math.pi / 4))
        else:
            heading = float(rng.uniform(-math.pi, math.pi))
        self.place_entity(self.agent, pos=pos, dir=_wrap(heading))

    def _free_pos(self, radius: float, w: float, d: float, avoid: np.ndarray | None = None,
                  min_dist: float = 0.0, tries: int = 500) -> np.ndarray | None:
        """A collision-free floor position, at least ``min_dist`` from ``avoid``, or None."""
        rng = self.np_random
        for _ in range(tries):
            pos = np.array([rng.uniform(radius, w - radius), 0.0,
                            rng.uniform(radius, d - radius)])
            if self.intersect(None, pos, radius):
                continue
            if avoid is None or np.linalg.norm((pos - avoid)[[0, 2]]) >= min_dist:
                return pos
        return None

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Apply one action; see the class docstring for rewards and termination."""
        if not self.action_space.contains(action):
            raise ValueError(f'action: expected an int in [0, {self.action_space.n}), '
                             f'got {action!r}')
        action = int(action)
        self.step_count += 1
        rand = self._dyn_rng if self.physical_randomization else None
        collided = False
        if action == FORWARD:
            fwd = float(self.params.sample(rand, 'forward_step'))
            drift = float(self.params.sample(rand, 'forward_drift'))
            before = self.agent.pos.copy()
            if self.move_agent(fwd, drift):
                self.path_length += float(np.linalg.norm(self.agent.pos - before))
            else:
                collided = True
                self.collisions += 1
        elif action in (TURN_LEFT, TURN_RIGHT):
            turn = float(self.params.sample(rand, 'turn_step'))
            self.turn_agent(turn if action == TURN_LEFT else -turn)
            self.agent.dir = _wrap(self.agent.dir)

        dist = self._distance()
        success = dist <= SUCCESS_DISTANCE and abs(self._bearing()) <= SUCCESS_ANGLE
        reward = PROGRESS_REWARD * (self._prev_distance - dist) - STEP_PENALTY
        if collided:
            reward -= COLLISION_PENALTY
        if success:
            reward += SUCCESS_REWARD
        self._prev_distance = dist
        terminated = bool(success)
        truncated = (not terminated and self.max_episode_steps is not None
                     and self.step_count >= self.max_episode_steps)
        obs, labels = self._render_frame()
        info = self._info(success=success, labels=labels)
        info['collided'] = collided
        return obs, float(reward), terminated, truncated, info

    def _distance(self) -> float:
        return float(np.linalg.norm((self.chair.pos - self.agent.pos)[[0, 2]]))

    def _bearing(self) -> float:
        dx, _, dz = self.chair.pos - self.agent.pos
        return _wrap(math.atan2(-dz, dx) - self.agent.dir)

    def _info(self, success: bool, labels: np.ndarray | None) -> dict:
        ax, _, az = self.agent.pos
        cx, _, cz = self.chair.pos
        info = {
            'success': bool(success),
            'distance': self._prev_distance,
            'collisions': self.collisions,
            'start_distance': self.start_distance,
            'shortest_path': max(self.start_distance - SUCCESS_DISTANCE, 0.0),
            'path_length': self.path_length,
            'agent_pos': np.array([ax, -az], dtype=np.float64),
            'agent_dir': _wrap(self.agent.dir),
            'chair_pos': np.array([cx, -cz], dtype=np.float64),
            'bearing': self._bearing(),
            'layout_seed': self.layout_seed,
            'domain': self.domain,
        }
        if labels is not None:
            info['labels'] = labels
        return info

    # ------------------------------------------------------------------ appearance

    def _ensure_gl(self) -> None:
        """Create this environment's label frame buffer and display lists once."""
        if self._gl_ready:
            return
        self.shadow_window.switch_to()
        base = gl.glGenLists(2)
        if not base:
            raise RuntimeError('glGenLists failed')
        self._lists = (base, base + 1)
        self._obs_fb = glutil.ObsFrameBuffer(self.obs_size, self.obs_size, samples=4)
        if self.labels_enabled:
            self._label_fb = glutil.LabelFrameBuffer(self.obs_size, self.obs_size)
        self._gl_ready = True

    def _texture(self, key: str, make: Any) -> glutil.GLTexture:
        """Return texture ``key``, created by ``make() -> RGB array`` on first use."""
        tex = self._textures.get(key)
        if tex is None:
            tex = self._textures[key] = glutil.GLTexture.from_array(make())
        return tex

    def _file_texture(self, path: str) -> glutil.GLTexture:
        return self._texture(path, lambda: glutil.read_image(path))

    def _pool_textures(self, name: str) -> list[glutil.GLTexture]:
        """Fixed texture pools (same for every environment in every process)."""
        if name in self._pool:
            return self._pool[name]
        rng = np.random.default_rng([_POOL_SEED, len(name), sum(map(ord, name))])
        if name == 'dr':
            pool = [self._file_texture(_texture_path(t)) for t in _DR_TEXTURES]
            pool += [self._texture(f'proc{i}', lambda: real_proxy.procedural_texture(rng))
                     for i in range(_DR_PROCEDURAL)]
        else:  # a real-proxy category: each photo tile in two jittered variants
            pool = []
            for i, tile in enumerate(real_proxy.load_tiles()[name]):
                for v in range(2):
                    pool.append(self._texture(
                        f'real_{name}_{i}_{v}',
                        lambda t=tile: real_proxy.jitter_texture(t, rng, strength=0.08)))
        self._pool[name] = pool
        return pool

    def _make_look(self) -> _Look:
        rng = self._look_rng
        room = self.room
        centre = np.array([room.mid_x, room.wall_height - 0.1, room.mid_z])
        if self.domain == 'sim':
            ents = []
            for i, kind in enumerate(self.entity_kinds):
                if kind == 'box':
                    ents.append(_Material(self._file_texture(_texture_path(_SIM_SURFACES['box'])),
                                          tile_m=0.5))
                else:
                    ent = self.entities[i]
                    ents.append(_Material(self._file_texture(
                        _mesh_texture_path(_mesh_name(ent))), own_uv=True))
            return _Look(
                floor=_Material(self._file_texture(_texture_path(_SIM_SURFACES['floor'])),
                                tile_m=1.0),
                wall=_Material(self._file_texture(_texture_path(_SIM_SURFACES['wall'])),
                               tile_m=1.0),
                ceiling=_Material(self._file_texture(_texture_path(_SIM_SURFACES['ceiling'])),
                                  tile_m=1.5),
                entities=ents,
                light_pos=centre,
                light_ambient=np.array(DEFAULT_PARAMS.params['light_ambient'].default),
                light_diffuse=np.array(DEFAULT_PARAMS.params['light_color'].default),
            )
        if self.domain == 'real':
            def mat(category: str, tile_lo: float, tile_hi: float) -> _Material:
                pool = self._pool_textures(category)
                return _Material(pool[int(rng.integers(len(pool)))],
                                 tint=tuple(float(v) for v in rng.uniform(1.0, 1.25, 3)),
                                 tile_m=float(rng.uniform(tile_lo, tile_hi)))

            floor = mat('floor', 0.8, 2.0)
            wall = mat('wall', 1.0, 2.5)
            ceiling = mat('ceiling', 1.0, 2.5)
            ents = []
            for kind in self.entity_kinds:
                if kind == 'chair':
                    ents.append(mat('chair', 0.3, 0.8))
                else:
                    cat = next(d.real_category for d in _DISTRACTORS if d.name == kind)
                    ents.append(mat(cat, 0.3, 1.0))
            warm = np.array([1.0, rng.uniform(0.8, 0.92), rng.uniform(0.55, 0.75)])
            light_pos = np.array([rng.uniform(room.min_x, room.max_x),
                                  room.wall_height - rng.uniform(0.05, 0.6),
                                  rng.uniform(room.min_z, room.max_z)])
            return _Look(floor=floor, wall=wall, ceiling=ceiling, entities=ents,
                         light_pos=light_pos,
                         light_ambient=warm * rng.uniform(0.45, 0.6),
                         light_diffuse=warm * rng.uniform(0.9, 1.2),
                         attenuation=float(rng.uniform(0.03, 0.12)),
                         camera=real_proxy.CameraModel.sample(rng, 'real'))
        # randomized
        pool = self._pool_textures('dr')

        def rmat(lo: float, hi: float, keep: glutil.GLTexture | None = None) -> _Material:
            own = keep is not None and rng.random() < 0.5
            tex = keep if own else pool[int(rng.integers(len(pool)))]
            return _Material(tex, tint=tuple(float(v) for v in rng.uniform(0.6, 1.3, 3)),
                             tile_m=float(rng.uniform(lo, hi)), own_uv=own)

        ents = []
        for i, kind in enumerate(self.entity_kinds):
            own = (None if kind == 'box'
                   else self._file_texture(_mesh_texture_path(_mesh_name(self.entities[i]))))
            ents.append(rmat(0.3, 1.5, keep=own))
        light_pos = np.array([rng.uniform(room.min_x - 2, room.max_x + 2),
                              rng.uniform(1.0, 5.0),
                              rng.uniform(room.min_z - 2, room.max_z + 2)])
        return _Look(floor=rmat(0.5, 2.5), wall=rmat(0.5, 2.5), ceiling=rmat(0.5, 2.5),
                     entities=ents, light_pos=light_pos,
                     light_ambient=rng.uniform(0.25, 0.6) * rng.uniform(0.85, 1.15, 3),
                     light_diffuse=rng.uniform(0.45, 0.9) * rng.uniform(0.85, 1.15, 3),
                     attenuation=float(rng.uniform(0.0, 0.2)) if rng.random() < 0.3 else 0.0,
                     camera=real_proxy.CameraModel.sample(rng, 'randomized'))

    # ------------------------------------------------------------------ rendering

    def _compile_lists(self) -> None:
        """Compile the episode's look list and label list (both static for the episode)."""
        assert self._lists is not None
        self.shadow_window.switch_to()
        look_list, label_list = self._lists
        room, look = self.room, self._look
        floor_v = np.asarray(room.floor_verts, np.float32)
        ceil_v = np.asarray(room.ceil_verts, np.float32)
        wall_v = np.asarray(room.wall_verts, np.float32)
        wall_n = np.asarray(room.wall_norms, np.float32)
        wall_uv = _wall_uv(wall_v)

        gl.glNewList(look_list, gl.GL_COMPILE)
        glutil.begin_look_state()
        glutil.set_light(look.light_pos, look.light_ambient, look.light_diffuse,
                         look.attenuation)
        gl.glEnable(gl.GL_TEXTURE_2D)
        for mat, verts, texcs, normal, mode in (
                (look.floor, floor_v, floor_v[:, [0, 2]], (0, 1, 0), gl.GL_POLYGON),
                (look.ceiling, ceil_v, ceil_v[:, [0, 2]], (0, -1, 0), gl.GL_POLYGON)):
            _apply_material(mat)
            glutil.draw_arrays(mode, verts, texcs=texcs / mat.tile_m,
                               norms=np.tile(np.float32(normal), (len(verts), 1)))
        _apply_material(look.wall)
        glutil.draw_arrays(gl.GL_QUADS, wall_v, texcs=wall_uv / look.wall.tile_m, norms=wall_n)
        for i, ent in enumerate(self.entities):
            if ent is self.agent:
                continue
            _apply_material(look.entities[i])
            self._draw_entity(i, ent, look.entities[i])
        gl.glEndList()

        gl.glNewList(label_list, gl.GL_COMPILE)
        glutil.begin_label_state()
        _label_color(semantics.FLOOR)
        glutil.draw_arrays(gl.GL_POLYGON, floor_v)
        _label_color(semantics.CEILING)
        glutil.draw_arrays(gl.GL_POLYGON, ceil_v)
        _label_color(semantics.WALL)
        glutil.draw_arrays(gl.GL_QUADS, wall_v)
        for i, ent in enumerate(self.entities):
            if ent is self.agent:
                continue
            _label_color(semantics.CHAIR if ent is self.chair else semantics.OBJECT)
            self._draw_entity(i, ent, None)
        gl.glEndList()

    def _draw_entity(self, index: int, ent: Entity, mat: _Material | None) -> None:
        """Draw a static entity; ``mat=None`` draws bare geometry (label pass)."""
        gl.glPushMatrix()
        gl.glTranslatef(*(float(v) for v in ent.pos))
        gl.glRotatef(float(ent.dir) * 180.0 / math.pi, 0.0, 1.0, 0.0)
        if isinstance(ent, MeshEnt):
            gl.glScalef(ent.scale, ent.scale, ent.scale)
            for verts, texcs, norms, textured in _mesh_chunks(_mesh_name(ent)):
                if mat is None:
                    glutil.draw_arrays(gl.GL_TRIANGLES, verts)
                elif mat.own_uv:  # the mesh's own texture on its own UV layout
                    if textured:
                        gl.glEnable(gl.GL_TEXTURE_2D)
                    else:
                        gl.glDisable(gl.GL_TEXTURE_2D)
                    glutil.draw_arrays(gl.GL_TRIANGLES, verts, texcs=texcs, norms=norms)
                else:  # a photo/random texture, box-projected at its physical scale
                    uv = _planar_uv(verts, norms) * (ent.scale / mat.tile_m)
                    glutil.draw_arrays(gl.GL_TRIANGLES, verts, texcs=uv, norms=norms)
        else:
            size = self.box_sizes[index]
            verts, texcs, norms = glutil.box_geometry(size, 1.0 if mat is None else mat.tile_m)
            glutil.draw_arrays(gl.GL_QUADS, verts, texcs=None if mat is None else texcs,
                               norms=None if mat is None else norms)
        gl.glPopMatrix()

    def _set_camera(self, width: int, height: int) -> None:
        gl.glMatrixMode(gl.GL_PROJECTION)
        gl.glLoadIdentity()
        gl.gluPerspective(self.agent.cam_fov_y, width / float(height), 0.04, 100.0)
        gl.glMatrixMode(gl.GL_MODELVIEW)
        gl.glLoadIdentity()
        eye = self.agent.cam_pos
        gl.gluLookAt(*eye, *(eye + self.agent.cam_dir), 0.0, 1.0, 0.0)

    def render_obs(self, frame_buffer: Any = None) -> np.ndarray:
        """Render the look pass (before the camera model) from the agent's camera."""
        fb = self._obs_fb if frame_buffer is None else frame_buffer
        assert self._lists is not None and fb is not None
        self.shadow_window.switch_to()
        fb.bind()
        gl.glClearColor(0.0, 0.0, 0.0, 1.0)
        gl.glClearDepth(1.0)
        gl.glClear(gl.GL_COLOR_BUFFER_BIT | gl.GL_DEPTH_BUFFER_BIT)
        self._set_camera(fb.width, fb.height)
        gl.glCallList(self._lists[0])
        return fb.resolve()

    def render_labels(self) -> np.ndarray:
        """Render the flat-colour pass and decode it to uint8 class ids ``(H, W)``."""
        if self._label_fb is None:
            self.shadow_window.switch_to()
            self._label_fb = glutil.LabelFrameBuffer(self.obs_size, self.obs_size)
        assert self._lists is not None
        self.shadow_window.switch_to()
        fb = self._label_fb
        fb.bind()
        gl.glClearColor(0.0, 0.0, 0.0, 1.0)  # void = 0
        gl.glClearDepth(1.0)
        gl.glClear(gl.GL_COLOR_BUFFER_BIT | gl.GL_DEPTH_BUFFER_BIT)
        self._set_camera(fb.width, fb.height)
        gl.glCallList(self._lists[1])
        red = fb.read_red()
        labels = ((red.astype(np.uint16) + _LABEL_STEP // 2) // _LABEL_STEP).astype(np.uint8)
        np.minimum(labels, semantics.NUM_CLASSES - 1, out=labels)
        return labels

    def _render_frame(self) -> tuple[np.ndarray, np.ndarray | None]:
        with gl_section():
            img = self.render_obs()
            labels = self.render_labels() if self.labels_enabled else None
        if self._look.camera is not None:
            img = self._look.camera.apply(img, self._look_rng)
        self._last_obs, self._last_labels = img, labels
        return img, labels

    def render(self) -> np.ndarray | None:
        """``rgb_array``: the current observation exactly as the agent sees it."""
        if self.render_mode != 'rgb_array':
            return None
        return None if self._last_obs is None else self._last_obs.copy()

    def close(self) -> None:
        """Free this environment's GL objects and its GL context (the shadow window's).

        The caller's GL context is current again afterwards, as close may run in the middle
        of another environment's rendering (from a generator's ``finally``, say). Closing the
        window here, not in pyglet's ``Window.__del__``, also keeps the garbage collector from
        destroying the context at an arbitrary moment: that switches contexts too.
        """
        caller = gl.current_context
        if getattr(self, '_gl_ready', False):
            self.shadow_window.switch_to()
            for tex in self._textures.values():
                tex.delete()
            self._textures.clear()
            self._pool.clear()
            if self._lists is not None:
                gl.glDeleteLists(self._lists[0], 2)
                self._lists = None
            for fb in (self._label_fb, self._obs_fb):
                if fb is not None:
                    fb.delete()
            self._label_fb = self._obs_fb = None
            self._gl_ready = False
        window = getattr(self, 'shadow_window', None)
        if window is not None and window.context is not None:
            if caller is window.context:
                caller = None
            window.close()
        if caller is not None and caller.canvas is not None:
            caller.set_current()
        super().close()


@contextlib.contextmanager
def gl_section() -> Any:
    """Run a sequence of GL calls with the cyclic garbage collector paused.

    A collection can finalize an environment that was dropped without ``close()``; pyglet's
    ``Window.__del__`` then destroys its context and makes another one current, so the rest
    of a display-list compile or a render would go to the wrong context ("invalid operation"
    at ``glEndList``, "stack underflow" at a pop).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _mesh_name(ent: MeshEnt) -> str:
    """The miniworld mesh name of a :class:`MeshEnt` (recorded when it was created)."""
    from miniworld.objmesh import ObjMesh

    for path, mesh in ObjMesh.cache.items():
        if mesh is ent.mesh:
            return os.path.splitext(os.path.basename(path))[0]
    raise KeyError('mesh not in the miniworld cache')


def _wrap(angle: float) -> float:
    """Wrap an angle to (-pi, pi]."""
    a = math.fmod(angle + math.pi, 2 * math.pi)
    if a <= 0:
        a += 2 * math.pi
    return a - math.pi


def _wall_uv(wall_verts: np.ndarray) -> np.ndarray:
    """Texture coordinates in metres (along the wall, height) for miniworld's wall quads."""
    uv = np.zeros((len(wall_verts), 2), np.float32)
    for q in range(0, len(wall_verts), 4):
        p0 = wall_verts[q]
        for k in range(4):
            v = wall_verts[q + k]
            uv[q + k] = (np.linalg.norm((v - p0)[[0, 2]]), v[1])
    return uv


def _planar_uv(verts: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """Box-projected texture coordinates: each triangle uses the plane its normal faces most."""
    axis = np.abs(norms).argmax(axis=1)
    u = np.where(axis == 0, verts[:, 2], verts[:, 0])
    v = np.where(axis == 1, verts[:, 2], verts[:, 1])
    return np.stack([u, v], axis=1).astype(np.float32)


def _apply_material(mat: _Material) -> None:
    if mat.texture is None:
        gl.glDisable(gl.GL_TEXTURE_2D)
    else:
        gl.glEnable(gl.GL_TEXTURE_2D)
        mat.texture.bind()
    gl.glColor3f(*mat.tint)


def _label_color(cls: int) -> None:
    gl.glColor3ub(_LABEL_STEP * int(cls), 0, 0)
