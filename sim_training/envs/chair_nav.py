"""Chair navigation in procedurally laid-out indoor rooms (Farama Miniworld 2.1).

See :class:`ChairNavEnv` for the task, spaces, rewards and domains. Layout seeds are split into
:data:`TRAIN_SEEDS` and :data:`EVAL_SEEDS`.

This module is the Gymnasium environment: its spaces, episode logic, rewards and info. Its
parts live beside it: :mod:`~sim_training.envs.layout` lays out a room from the layout seed,
:mod:`~sim_training.envs.looks` picks the domain's appearance (textures, light, camera model),
:mod:`~sim_training.envs.render` draws both passes (look and labels) with GL, and
:mod:`~sim_training.envs.oracle` plans the reference paths.
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any

from gymnasium import spaces
import numpy as np

from sim_training.envs import headless  # noqa: F401  (before miniworld loads pyglet)

# isort: split
from miniworld.entity import Agent, Entity
from miniworld.miniworld import MiniWorldEnv
from miniworld.params import DEFAULT_PARAMS, DomainParams
from pyglet import gl

from sim_training.envs import glutil, layout, looks, render
from sim_training.envs.layout import AGENT_RADIUS
from sim_training.envs.render import gl_section
from vr_goggles.goggles.floor_prior import SIM_CAMERA
from vr_goggles.policy.actions import (
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

#: Starts are at least this far from the chair (room, furniture and robot sizes are in
#: :mod:`sim_training.envs.layout`).
MIN_START_DISTANCE = SUCCESS_DISTANCE + 0.9
# A small robot's camera, looking slightly down; one definition with the floor prior's.
CAM_HEIGHT = SIM_CAMERA.height_m
CAM_PITCH = SIM_CAMERA.pitch_deg  # degrees
CAM_FOV_Y = SIM_CAMERA.fov_y_deg  # degrees; the image is square so the horizontal FOV is equal


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
        self._textures = looks.TextureCache()
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
        self.agent = Agent()
        self.agent.radius = AGENT_RADIUS
        self.agent.randomize(self.params, self._dyn_rng if self.physical_randomization else None)
        self.max_forward_step = self.params.get_max('forward_step')

        layout_rng = np.random.default_rng([layout_seed, 0x6C61796F])
        saved_rng = self._np_random
        self._np_random = layout_rng  # miniworld's placement helpers draw from np_random
        try:
            world = layout.generate(self, MIN_START_DISTANCE)
        finally:
            self._np_random = saved_rng
        self.room, self.chair = world.room, world.chair
        self.entity_kinds, self.box_sizes = world.entity_kinds, world.box_sizes
        self.min_x, self.max_x = self.room.min_x, self.room.max_x
        self.min_z, self.max_z = self.room.min_z, self.room.max_z

        with gl_section():
            self._ensure_gl()
            self._look = looks.make_look(self.domain, self._look_rng, self.room,
                                         self.entity_kinds, self.entities, self._textures)
            assert self._lists is not None
            self.shadow_window.switch_to()
            render.compile_lists(self._lists, self.room, self._look, self.entities,
                                 self.agent, self.chair, self.box_sizes)

        self.collisions = 0
        self.path_length = 0.0
        self.start_distance = self._distance()
        self._prev_distance = self.start_distance
        obs, labels = self._render_frame()
        return obs, self._info(success=False, labels=labels)

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
            self.agent.dir = layout.wrap(self.agent.dir)

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
        return layout.wrap(math.atan2(-dz, dx) - self.agent.dir)

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
            'agent_dir': layout.wrap(self.agent.dir),
            'chair_pos': np.array([cx, -cz], dtype=np.float64),
            'bearing': self._bearing(),
            'layout_seed': self.layout_seed,
            'domain': self.domain,
        }
        if labels is not None:
            info['labels'] = labels
        return info

    # ------------------------------------------------------------------ rendering

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

    def render_obs(self, frame_buffer: Any = None) -> np.ndarray:
        """Render the look pass (before the camera model) from the agent's camera."""
        fb = self._obs_fb if frame_buffer is None else frame_buffer
        assert self._lists is not None and fb is not None
        self.shadow_window.switch_to()
        render.draw_pass(fb, self.agent, self._lists[0])
        return fb.resolve()

    def render_labels(self) -> np.ndarray:
        """Render the flat-colour pass and decode it to uint8 class ids ``(H, W)``."""
        if self._label_fb is None:
            self.shadow_window.switch_to()
            self._label_fb = glutil.LabelFrameBuffer(self.obs_size, self.obs_size)
        assert self._lists is not None
        self.shadow_window.switch_to()
        render.draw_pass(self._label_fb, self.agent, self._lists[1])
        return render.decode_labels(self._label_fb.read_red())

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
            self._textures.delete()
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
