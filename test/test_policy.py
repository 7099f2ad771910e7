"""The exported policy as the robot runs it: NavActor, Policy, velocity map, evaluation stats.

No simulator or SB3 needed: networks are randomly initialised and saved to a temp dir.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from sim_training.stats import spl_episode, summarize, wilson_interval  # noqa: E402
from vr_goggles.image.preprocess import NORMALIZATION, Preprocessor  # noqa: E402
from vr_goggles.models import build  # noqa: E402
from vr_goggles.policy import Policy, actions  # noqa: E402
from vr_goggles.weights import ModelCard, WeightsError, paths_for, save  # noqa: E402

KWARGS = {'in_channels': 3, 'input_size': [64, 64], 'channels': [8, 16, 16],
          'features_dim': 32, 'n_actions': 3}


@pytest.fixture
def saved_policy(tmp_path):
    """A random NavActor saved like the shipped policies; returns (path, module)."""
    torch.manual_seed(0)
    actor = build('NavActor', **KWARGS).eval()
    card = ModelCard(name='policy_test', architecture='NavActor', kwargs=dict(KWARGS),
                     input_size=[64, 64], normalization=dict(NORMALIZATION),
                     extra={'action_names': list(actions.ACTION_NAMES)})
    path = save(tmp_path / 'policy_test', actor.state_dict(), card)
    return path, actor


# -- action -> velocity map (what policy_node publishes) -------------------------------------
def test_action_velocity_known_answers():
    assert actions.action_to_velocity(0) == pytest.approx((0.3, 0.0))
    assert actions.action_to_velocity(1) == pytest.approx((0.0, math.pi / 6))
    assert actions.action_to_velocity(2) == pytest.approx((0.0, -math.pi / 6))
    with pytest.raises(ValueError, match='action'):
        actions.action_to_velocity(3)


# -- statistics -----------------------------------------------------------------------------
def test_wilson_interval_known_values():
    # Hand-computed with z = 1.96: 0/10 -> [0, z^2/(n+z^2)] = [0, 0.2775].
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson_interval(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-5)
    assert wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    assert wilson_interval(190, 200) == pytest.approx((0.91042, 0.97262), abs=1e-5)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


def test_spl_and_summary():
    assert spl_episode(True, 2.0, 4.0) == pytest.approx(0.5)
    assert spl_episode(True, 2.0, 1.5) == pytest.approx(1.0)  # shorter than the proxy: capped
    assert spl_episode(False, 2.0, 2.0) == 0.0
    s = summarize([{'success': True, 'spl': 0.5, 'steps': 10, 'collisions': 0},
                   {'success': False, 'spl': 0.0, 'steps': 30, 'collisions': 2}])
    assert s['successes'] == 1 and s['success_rate'] == 0.5
    assert s['spl'] == pytest.approx(0.25) and s['mean_steps'] == pytest.approx(20.0)
    assert s['mean_steps_success'] == pytest.approx(10.0) and s['collision_episodes'] == 1


# -- NavActor + Policy ------------------------------------------------------------------------
def test_actor_shapes_and_act():
    actor = build('NavActor', **KWARGS).eval()
    x = torch.zeros(5, 3, 64, 64)
    assert actor(x).shape == (5, 3)
    assert actor.act(x).shape == (5,)


def test_policy_uses_shared_preprocessing(saved_policy, rng):
    path, actor = saved_policy
    policy = Policy.load(path)
    img = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    expected = actor(torch.from_numpy(Preprocessor(size=(64, 64))(img))).argmax(1).item()
    a = policy.act(img)
    assert isinstance(a, int) and a == expected
    # Same image in BGR order with color_order='bgr' gives the same action.
    assert policy.act(np.ascontiguousarray(img[:, :, ::-1]), color_order='bgr') == a
    action, vel = policy.velocity(img)
    assert action == a and vel == actions.action_to_velocity(a)
    batch = policy.act_batch([img, img[:100, :100]])
    assert batch.shape == (2,) and batch[0] == a


def test_policy_load_by_name_or_json(saved_policy):
    path, _ = saved_policy
    assert Policy.load(str(paths_for(path)[1])).card.name == 'policy_test'


def test_policy_load_corrupt_raises_weights_error(saved_policy):
    path, _ = saved_policy
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(WeightsError):
        Policy.load(path)
    path.write_bytes(b'\x00' * len(data))  # same size, garbage
    with pytest.raises(WeightsError):
        Policy.load(path)
    with pytest.raises(WeightsError):
        Policy.load(path.parent / 'does_not_exist')


def test_policy_rejects_non_policy_card(tmp_path):
    gen = build('NavActor', **KWARGS)
    card = ModelCard(name='x', architecture='NavActor', kwargs=dict(KWARGS), input_size=[64, 64],
                     normalization={**NORMALIZATION, 'range': [0.0, 1.0]})
    path = save(tmp_path / 'x', gen.state_dict(), card)
    with pytest.raises(WeightsError, match='normalization'):
        Policy.load(path)


def saved_card(path, kwargs, **extra):
    """A random NavActor of ``kwargs`` saved with card ``extra``; returns (Policy, actor)."""
    actor = build('NavActor', **kwargs).eval()
    card = ModelCard(name=path.name, architecture='NavActor', kwargs=kwargs,
                     input_size=[64, 64], normalization=dict(NORMALIZATION), extra=extra)
    return Policy.load(save(path, actor.state_dict(), card)), actor


def test_stacked_policy_keeps_a_paced_history(tmp_path, rng):
    """frame_stack=2: act sees (previous control step, newest frame); reset forgets."""
    torch.manual_seed(1)
    kwargs = {**KWARGS, 'in_channels': 6}
    policy, actor = saved_card(tmp_path / 'p2', kwargs, frame_stack=2, control_period_s=0.5)
    assert policy.frame_stack == 2
    pre = Preprocessor(size=(64, 64))
    a, b, c = (rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(3))

    def expect(old, new):
        x = torch.from_numpy(np.concatenate([pre(old), pre(new)], axis=1))
        return actor(x).argmax(1).item()

    assert policy.act(a) == expect(a, a)  # first frame fills the history
    assert policy.act(b) == expect(a, b)
    assert policy.act(c) == expect(b, c)
    policy.reset()
    assert policy.act(c) == expect(c, c)
    # With times: a frame within the control period replaces the newest slot.
    policy.reset()
    assert list(policy.act_batch([a, b, c], times=[0.0, 0.2, 0.6])) == [
        expect(a, a), expect(a, b), expect(b, c)]
    with pytest.raises(ValueError, match='times'):
        policy.act_batch([a, b], times=[0.0])
    # A card may name the slots' steps back; only the consecutive stack is accepted.
    named = ModelCard(name='p2o', architecture='NavActor', kwargs=kwargs, input_size=[64, 64],
                      normalization=dict(NORMALIZATION),
                      extra={'frame_stack': 2, 'frame_offsets': [1, 0]})
    policy = Policy.load(save(tmp_path / 'p2o', actor.state_dict(), named))
    assert list(policy.act_batch([a, b, c])) == [expect(a, a), expect(a, b), expect(b, c)]
    for bad in ([2, 0], [0, 1], [1], 'x'):  # a dilated (removed) or malformed card
        named.extra['frame_offsets'] = bad
        with pytest.raises(WeightsError, match='frame_offsets'):
            Policy.load(save(tmp_path / 'p2e', actor.state_dict(), named))
    # A card whose frame_stack does not match the actor's input is refused.
    bad = ModelCard(name='p3', architecture='NavActor', kwargs=kwargs, input_size=[64, 64],
                    normalization=dict(NORMALIZATION), extra={'frame_stack': 3})
    with pytest.raises(WeightsError, match='frame_stack'):
        Policy.load(save(tmp_path / 'p3', actor.state_dict(), bad))


def test_turn_memory_policy_counts_its_own_turns(tmp_path, rng):
    """turn_memory card: the last plane is 2 min(turns, limit) / limit - 1 (known answers).

    ``turns`` are the control steps since the policy last chose forward.
    """
    policy, _ = saved_card(tmp_path / 'pt', {**KWARGS, 'in_channels': 4}, turn_memory=4,
                           control_period_s=0.5)
    assert policy.turn_memory == 4 and policy.frame_stack == 1
    seen = []

    def module(x):  # forward once the plane reaches 0 (two turns), else turn left
        assert x.shape == (1, 4, 64, 64) and torch.all(x[:, 3] == x[0, 3, 0, 0])
        v = float(x[0, 3, 0, 0])
        seen.append(v)
        return torch.tensor([[v, -v, -9.0]])

    policy.module = module
    img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    F, L = actions.FORWARD, actions.TURN_LEFT
    assert [policy.act(img) for _ in range(6)] == [L, L, F, L, L, F]
    assert seen == pytest.approx([-1.0, -0.5, 0.0, -1.0, -0.5, 0.0])
    # Frames inside a control period are the same step: the count moves once per step.
    policy.reset()
    seen.clear()
    times = [0.0, 0.2, 0.5, 0.7, 1.0, 1.5]
    assert list(policy.act_batch([img] * 6, times=times)) == [L, L, L, L, F, L]
    assert seen == pytest.approx([-1.0, -1.0, -0.5, -0.5, 0.0, -1.0])
    # An actor without the plane's channel is refused with the card's numbers.
    bad = ModelCard(name='pb', architecture='NavActor', kwargs=dict(KWARGS),
                    input_size=[64, 64], normalization=dict(NORMALIZATION),
                    extra={'turn_memory': 4})
    with pytest.raises(WeightsError, match='turn_memory=4, turn_window=0 needs in_channels=4'):
        Policy.load(save(tmp_path / 'pb', build('NavActor', **KWARGS).state_dict(), bad))


# -- the shipped policy_sim: known answers --------------------------------------------------
#: Eight seeded noise frames (np.random.default_rng(0), uint8 (8, 64, 64, 3)), stepped in
#: sequence through the shipped policy_sim: its actions and logits, recorded before the
#: recurrent and dilated-stack branches left vr_goggles.policy (commit 083bc5e's code).
SIM_ACTIONS = [2, 1, 2, 0, 0, 2, 2, 2]
SIM_LOGITS = [[-1.484059, -1.144467, 1.862821], [0.248405, 0.416890, -1.058727],
              [-1.261265, -0.559823, 1.321001], [0.095054, -0.166329, -0.511677],
              [0.993237, -0.649651, -0.859756], [-1.176751, -1.201182, 1.717672],
              [-1.172714, -1.464444, 1.956321], [-1.127185, -1.661784, 1.971545]]
#: The same frames stamped 0.25 s apart (half the 0.5 s control period): every other frame
#: replaces the newest slot instead of starting a control step.
SIM_LOGITS_STAMPED = [[-1.484059, -1.144467, 1.862821], [0.254006, 0.452309, -1.099015],
                      [-1.247365, -0.493778, 1.249438], [0.294819, -0.124789, -0.762642],
                      [1.732363, -0.479399, -1.831440], [-1.055427, -1.252117, 1.602741],
                      [-1.004081, -1.307176, 1.669849], [-1.073002, -1.279794, 1.652562]]


def test_shipped_policy_sim_known_answers():
    """policy_sim (card frame_offsets [3, 2, 1, 0]) loads and acts as it always has."""
    policy = Policy.load('policy_sim')
    assert policy.card.extra['frame_offsets'] == [3, 2, 1, 0]
    assert policy.frame_stack == 4 and policy.turn_memory == 24 and policy.turn_window == 48
    frames = np.random.default_rng(0).integers(0, 256, size=(8, 64, 64, 3), dtype=np.uint8)
    assert [policy.act(f) for f in frames] == SIM_ACTIONS
    policy.reset()
    np.testing.assert_allclose(policy.logits(list(frames)), SIM_LOGITS, atol=1e-5)
    policy.reset()
    stamped = policy.logits(list(frames), times=[0.25 * i for i in range(8)])
    np.testing.assert_allclose(stamped, SIM_LOGITS_STAMPED, atol=1e-5)
    policy.reset()
    assert [policy.act(f, t=0.25 * i) for i, f in enumerate(frames)] == list(
        np.argmax(SIM_LOGITS_STAMPED, axis=1))
