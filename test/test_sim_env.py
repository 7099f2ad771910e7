"""ChairNav-v0: API conformance, determinism, labels, solvability and the real-proxy gap."""

from __future__ import annotations

import math
import os

import pytest

pytest.importorskip('miniworld')
pytest.importorskip('gymnasium')
os.environ.setdefault('PYGLET_HEADLESS', '1')

import gymnasium as gym  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402
import numpy as np  # noqa: E402

import sim_training  # noqa: E402
from sim_training.envs import real_proxy  # noqa: E402
from sim_training.envs.chair_nav import (  # noqa: E402
    DEFAULT_MAX_EPISODE_STEPS,
    EVAL_SEEDS,
    SUCCESS_DISTANCE,
    TRAIN_SEEDS,
    ChairNavEnv,
)
from sim_training.envs.oracle import Oracle  # noqa: E402
from vr_goggles.image import semantics  # noqa: E402
from vr_goggles.policy.actions import FORWARD, TURN_LEFT  # noqa: E402

INFO_KEYS = {'success', 'distance', 'collisions', 'start_distance', 'agent_pos', 'agent_dir',
             'chair_pos'}


@pytest.fixture(scope='module')
def envs():
    """One environment per domain, with labels, shared by the tests of this module."""
    made = {d: ChairNavEnv(domain=d, labels=True) for d in ('sim', 'real', 'randomized')}
    yield made
    for env in made.values():
        env.close()


def rollout(env, seed, actions):
    """Observations, labels and rewards of a fixed action sequence from ``reset(seed)``."""
    obs, info = env.reset(seed=seed)
    frames, labels, rewards = [obs], [info.get('labels')], []
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        frames.append(obs)
        labels.append(info.get('labels'))
        rewards.append(r)
        if term or trunc:
            break
    return frames, labels, rewards


ACTIONS = [FORWARD, TURN_LEFT, FORWARD, FORWARD, 2, 2, FORWARD, TURN_LEFT]


def face_chair(env, seed):
    """Reset on ``seed`` and turn until the chair is straight ahead; return the info."""
    _, info = env.reset(seed=seed)
    for _ in range(24):
        if abs(info['bearing']) < 0.2:
            break
        _, _, _, _, info = env.step(TURN_LEFT if info['bearing'] > 0 else 2)
    return info


def test_registered_and_check_env():
    assert sim_training.ENV_ID in gym.registry
    env = gym.make(sim_training.ENV_ID)
    try:
        assert env.observation_space.shape == (64, 64, 3)
        assert env.action_space.n == 3
        check_env(env.unwrapped, skip_render_check=True)
        assert env.spec.max_episode_steps == DEFAULT_MAX_EPISODE_STEPS
    finally:
        env.close()
    env = gym.make(sim_training.ENV_ID, max_episode_steps=DEFAULT_MAX_EPISODE_STEPS + 5)
    try:
        env.reset(seed=0)
        for t in range(DEFAULT_MAX_EPISODE_STEPS + 5):
            _, _, term, trunc, _ = env.step(TURN_LEFT)
            assert trunc == (t == DEFAULT_MAX_EPISODE_STEPS + 4) and not term
    finally:
        env.close()


def test_spaces_info_and_render():
    env = ChairNavEnv(obs_size=32, render_mode='rgb_array', max_episode_steps=3)
    try:
        obs, info = env.reset(seed=5)
        assert obs.shape == (32, 32, 3) and obs.dtype == np.uint8
        assert INFO_KEYS <= info.keys() and 'labels' not in info
        assert np.array_equal(env.render(), obs)
        for _ in range(3):
            obs, reward, term, trunc, info = env.step(TURN_LEFT)
        assert trunc and not term  # the env's own step limit
        with pytest.raises(ValueError):
            env.step(3)
    finally:
        env.close()
    with pytest.raises(ValueError):
        ChairNavEnv(domain='photo')


@pytest.mark.parametrize('domain', ['sim', 'real', 'randomized'])
def test_same_seed_same_episode(envs, domain):
    env = envs[domain]
    a = rollout(env, 11, ACTIONS)
    b = rollout(env, 11, ACTIONS)
    for x, y in zip(a[0] + a[1], b[0] + b[1]):
        assert np.array_equal(x, y)
    assert a[2] == b[2]
    c = rollout(env, 12, ACTIONS)
    assert not np.array_equal(a[0][0], c[0][0])


def test_labels_identical_across_domains(envs):
    _, sim_labels, _ = rollout(envs['sim'], 21, ACTIONS)
    _, real_labels, _ = rollout(envs['real'], 21, ACTIONS)
    for s, r in zip(sim_labels, real_labels):
        assert s.shape == (64, 64) and s.dtype == np.uint8
        assert np.array_equal(s, r)
    # Domain randomisation without camera/motion randomisation keeps the labels too.
    dr = ChairNavEnv(domain='randomized', labels=True, physical_randomization=False)
    try:
        _, dr_labels, _ = rollout(dr, 21, ACTIONS)
    finally:
        dr.close()
    for s, r in zip(sim_labels, dr_labels):
        assert np.array_equal(s, r)


def test_labels_exact_and_chair_in_view(envs):
    env = envs['sim']
    for seed in (1, 2, 3):
        info = face_chair(env, seed)
        labels = info['labels']
        assert set(np.unique(labels)) <= set(range(semantics.NUM_CLASSES))
        assert (labels == semantics.CHAIR).sum() >= 4, seed
        assert (labels == semantics.FLOOR).any() and (labels == semantics.WALL).any()
        # Turn away: no chair pixels when it is behind the robot.
        for _ in range(12):
            _, _, _, _, info = env.step(TURN_LEFT)
        assert abs(info['bearing']) > 2.0
        assert not (info['labels'] == semantics.CHAIR).any()


def test_seed_splits():
    assert TRAIN_SEEDS.stop <= EVAL_SEEDS.start
    env = ChairNavEnv(split='eval')
    try:
        env.reset(seed=3)  # seeds np_random; later layouts come from the eval range
        for _ in range(3):
            _, info = env.reset()
            assert info['layout_seed'] in EVAL_SEEDS
    finally:
        env.close()


def test_oracle_succeeds(envs):
    env = envs['sim']
    oracle = Oracle(env)
    successes = 0
    for seed in EVAL_SEEDS[:6]:
        _, info = env.reset(seed=seed)
        for _ in range(env.max_episode_steps):
            _, reward, term, trunc, info = env.step(oracle.act(info))
            if term or trunc:
                break
        if info['success']:
            successes += 1
            assert info['distance'] <= SUCCESS_DISTANCE and reward > 4.0
    assert successes >= 5


def _geometry(obstacles=()):
    """A 4 m x 4 m room, robot at (0.5, 2), chair at (3.5, 2), the given (x, z, radius) discs."""
    from types import SimpleNamespace as NS

    agent = NS(pos=np.array([0.5, 0.0, 2.0]), radius=0.25, dir=0.0)
    chair = NS(pos=np.array([3.5, 0.0, 2.0]), radius=0.4)
    ents = [agent, chair] + [NS(pos=np.array([x, 0.0, z]), radius=r) for x, z, r in obstacles]
    env = NS(room=NS(min_x=0.0, max_x=4.0, min_z=0.0, max_z=4.0), agent=agent, chair=chair,
             entities=ents, layout_seed=len(obstacles))
    env.unwrapped = env
    return env


def test_geodesic_distance_known_answers():
    # Free room: the straight line to the success region (chair distance 3 m - 1.0 m), up to
    # the 8-connected grid's excess over Euclid (<= 8 %) and one cell.
    free = Oracle(_geometry(), margin=0.0)
    assert free.geodesic_distance() == pytest.approx(2.0, abs=0.1)
    # A wall of discs across the room from z = 0.8 m to the far wall: the path goes around it
    # through the gap at z < 0.55 m, about 3.4 m, much longer than the straight line.
    wall = [(2.0, z, 0.3) for z in (1.1, 1.5, 1.9, 2.3, 2.7, 3.1, 3.5)]
    around = Oracle(_geometry(wall), margin=0.0)
    d = around.geodesic_distance()
    assert d is not None and 3.0 < d < 3.8
    # Inside the planner's inflated border the distance stays finite (nearest planned cell).
    around.env.agent.pos = np.array([1.5, 0.0, 2.3])  # 0.5 m from a disc, inflated 0.55
    assert math.isinf(around.path_distance())
    assert 2.8 < around.geodesic_distance() < 3.6
    # Walled in completely (a robot standing inside that wall's inflated discs): no path.
    box = [(1.0, z, 0.35) for z in np.arange(0.0, 4.01, 0.3)]
    assert Oracle(_geometry(box), margin=0.0).geodesic_distance() is None


def test_real_proxy_gap(envs):
    """The real look differs at texture level (L1 and high-frequency energy), same labels."""
    l1, hf_sim, hf_real = [], [], []
    for seed in (31, 32, 33, 34):
        s = face_chair(envs['sim'], seed)
        r = face_chair(envs['real'], seed)
        assert np.array_equal(s['labels'], r['labels'])
        sim_img = envs['sim'].render_obs()  # same pose: current camera frame
        real_img = envs['real']._last_obs
        l1.append(np.abs(sim_img.astype(float) - real_img.astype(float)).mean())
        hf_sim.append(real_proxy.high_frequency_energy(sim_img))
        hf_real.append(real_proxy.high_frequency_energy(real_img))
    assert np.mean(l1) > 30.0  # documented: mean per-pixel L1 of > 30 grey levels
    assert abs(np.mean(hf_sim) - np.mean(hf_real)) / np.mean(hf_sim) > 0.2


def test_camera_model_is_seeded():
    img = np.full((16, 16, 3), 128, np.uint8)
    cam = real_proxy.CameraModel.sample(np.random.default_rng(0), 'real')
    a = cam.apply(img, np.random.default_rng(1))
    b = cam.apply(img, np.random.default_rng(1))
    assert np.array_equal(a, b) and a.shape == img.shape and a.dtype == np.uint8
    assert not np.array_equal(a, img)


def test_close_mid_render_leaves_the_other_env_working(envs, monkeypatch):
    """Closing one env inside another's GL sequence keeps the caller's context current.

    A generator's ``finally`` can do that; it used to leave the closed env's context current,
    so the other env's ``glEndList`` failed with 'invalid operation'. The GL sequences also
    run with the garbage collector paused, since collecting an unclosed env destroys its
    context (pyglet's ``Window.__del__``) and switches contexts the same way.
    """
    import gc

    from sim_training.envs import glutil

    env = envs['sim']
    ref, _ = env.reset(seed=7)
    other = ChairNavEnv(domain='real')
    other.reset(seed=3)
    draw = glutil.draw_arrays
    collector = []

    def draw_then_close(*args, **kwargs):
        draw(*args, **kwargs)
        collector.append(gc.isenabled())
        other.close()  # a no-op after the first call

    monkeypatch.setattr(glutil, 'draw_arrays', draw_then_close)
    obs, _ = env.reset(seed=7)
    monkeypatch.setattr(glutil, 'draw_arrays', draw)
    assert np.array_equal(obs, ref)
    assert collector and not any(collector)
    assert gc.isenabled()
    # close() freed the other env's GL objects and its context, now rather than at collection.
    assert other._lists is None and other.shadow_window.context is None
    other.close()  # idempotent


def test_floor_prior_renders_the_sim_floor_at_the_sim_pose(envs):
    """The floor prior at the env's pose paints the sim floor's own tiles, in phase."""
    from vr_goggles.goggles.floor_prior import FloorRenderer

    env = envs['sim']
    renderer = FloorRenderer(env.obs_size)
    errors, shifted = [], []
    for seed in (1, 2, 3):
        obs, info = env.reset(seed=seed)
        for action in (FORWARD, TURN_LEFT, FORWARD):
            pose = (*info['agent_pos'], info['agent_dir'])
            floor = (info['labels'] == semantics.FLOOR) & renderer.valid
            assert floor.sum() > 200
            sim = obs[floor].astype(float)
            errors.append(np.abs(sim - renderer.render(pose)[floor]).mean())
            off = (pose[0] + 0.25, pose[1], pose[2])  # one tile off: dark and light swap
            shifted.append(np.abs(sim - renderer.render(off)[floor]).mean())
            obs, _, _, _, info = env.step(action)
    assert max(errors) < 20.0
    assert min(shifted) > 80.0


def test_floor_prior_chair_colour_is_the_sim_chairs_mean(envs):
    """SIM_CLASS_RGB['chair'], which the floor prior paints, is what the sim chair looks like."""
    from vr_goggles.goggles.semantic_paint import SIM_CLASS_RGB

    env, pixels = envs['sim'], []
    for seed in (1, 2, 3, 4, 5, 6):
        obs, info = env.reset(seed=seed)
        pixels.append(obs[info['labels'] == semantics.CHAIR].astype(float))
    chair = np.concatenate(pixels)
    assert len(chair) > 100
    assert np.abs(chair.mean(axis=0) - SIM_CLASS_RGB['chair']).max() < 12.0
    assert np.abs(chair.mean(axis=0) - 128).max() > 40  # a dark colour, not mid grey


def test_floor_prior_wall_and_ceiling_colours_are_the_sims_and_flat(envs):
    """The semantic paint fills walls and ceiling flat: right only if the sim's are near-flat."""
    from vr_goggles.goggles.semantic_paint import SEMANTIC_PAINT, SIM_CLASS_RGB

    env = envs['sim']
    pixels: dict[int, list[np.ndarray]] = {semantics.WALL: [], semantics.CEILING: []}
    for seed in (1, 2, 3, 4, 5, 6):
        obs, info = env.reset(seed=seed)
        for cls, got in pixels.items():
            got.append(obs[info['labels'] == cls].astype(float))
    for cls, name in ((semantics.WALL, 'wall'), (semantics.CEILING, 'ceiling')):
        px = np.concatenate(pixels[cls])
        assert len(px) > 100, name  # the camera looks down: little ceiling
        assert np.abs(px.mean(axis=0) - SIM_CLASS_RGB[name]).max() < 6.0, name
        assert px.std(axis=0).max() < 10.0, name  # flat: a fill loses next to nothing
    # distractors are hidden in the wall colour, not painted in their own
    assert SIM_CLASS_RGB['object'] == SIM_CLASS_RGB['wall']
    assert set(SEMANTIC_PAINT) == set(SIM_CLASS_RGB)
