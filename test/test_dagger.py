"""DAgger warm start (sim_training.dagger): returns, the label store, the fit, the train stage."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sim_training.dagger import Dataset, discounted_returns, to_uint8

TINY = ['--n-envs', '2', '--vec-env', 'dummy', '--n-steps', '32', '--batch-size', '32',
        '--n-epochs', '1', '--channels', '8,16,16', '--features-dim', '32',
        '--max-episode-steps', '40', '--checkpoint-freq', '64', '--no-progress',
        '--no-tensorboard', '--seed', '3', '--frame-stack', '2']


def test_discounted_returns_known_answer():
    rewards = [1.0, 0.0, 2.0, 1.0, 5.0, 1.0]
    dones = [False, False, True, False, False, False]
    ret, valid = discounted_returns(rewards, dones, gamma=0.5)
    # Episode 1 ends at step 2: 1 + 0.5 * (0 + 0.5 * 2), 0 + 0.5 * 2, 2.
    np.testing.assert_allclose(ret[:3], [1.5, 1.0, 2.0])
    # Steps 3-5 belong to an episode that has not ended: no return yet.
    assert valid.tolist() == [True, True, True, False, False, False]


def test_dataset_stores_normalised_frames_exactly():
    from vr_goggles.image.preprocess import normalize

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    obs = normalize(images)  # what the training envs hand out
    data = Dataset(8, obs.shape[1:])
    np.testing.assert_array_equal(to_uint8(obs), images.transpose(0, 3, 1, 2))
    data.add(to_uint8(obs), np.arange(5), np.array([0, 1, 2, np.nan, 4], np.float32))
    got, actions, returns = data.batch(np.arange(5))
    np.testing.assert_array_equal(got.numpy(), obs)
    assert actions.tolist() == [0, 1, 2, 3, 4] and np.isnan(returns[3].item())
    with pytest.raises(ValueError, match='dataset full'):
        data.add(to_uint8(obs), np.arange(5), np.zeros(5, np.float32))
    with pytest.raises(ValueError, match='uint8'):
        Dataset(8, obs.shape[1:]).add(obs, np.arange(5), np.zeros(5, np.float32))


def _tiny_model():
    pytest.importorskip('miniworld')
    pytest.importorskip('stable_baselines3')
    torch = pytest.importorskip('torch')
    from sim_training import train_policy

    torch.set_num_threads(1)
    torch.manual_seed(0)
    args = train_policy.parse_args(TINY)
    venv = train_policy.make_vec_env(args)
    trainer = train_policy.Trainer(args)
    return trainer.build(venv), venv


def test_fit_learns_the_expert_labels():
    """Fitting a fixed labelled set drives its cross-entropy down and its accuracy up."""
    from sim_training.dagger import DaggerConfig, fit

    model, venv = _tiny_model()
    try:
        import torch

        rng = np.random.default_rng(0)
        obs = rng.uniform(-1, 1, (64, *venv.observation_space.shape)).astype(np.float32)
        obs = np.rint((obs + 1) * 127.5) / 127.5 - 1
        actions = (obs[:, -3:].mean(axis=(1, 2, 3)) > 0).astype(np.int64)  # a learnable rule
        data = Dataset(64, obs.shape[1:])
        data.add(to_uint8(obs), actions, np.ones(64, np.float32))
        cfg = DaggerConfig(epochs=1, batch_size=16, learning_rate=3e-3)
        opt = torch.optim.Adam(model.policy.parameters(), lr=cfg.learning_rate)
        first = fit(model.policy, data, cfg, opt, rng)
        for _ in range(30):
            last = fit(model.policy, data, cfg, opt, rng)
        assert last['cross_entropy'] < 0.5 * first['cross_entropy']
        assert last['accuracy'] >= 0.9 and last['value_mse'] < first['value_mse']
    finally:
        venv.close()


def test_collect_labels_every_state_with_the_oracle():
    """With beta 1 the expert drives: it reaches the chair, and every state is labelled."""
    from sim_training.dagger import collect
    from sim_training.envs.oracle import Oracle

    model, venv = _tiny_model()
    try:
        oracles = [Oracle(env) for env in venv.envs]
        obs = venv.reset()
        samples, _, figures = collect(venv, model.policy, oracles, 160, 1.0,
                                      np.random.default_rng(0), 0.99, obs)
        assert samples['obs'].shape == (160, *venv.observation_space.shape)
        assert samples['obs'].dtype == np.uint8
        assert figures['episodes'] >= 2 and figures['success_rate'] == 1.0
        assert set(np.unique(samples['actions'])) <= {0, 1, 2}
        # Every finished episode ended in success: its returns include the +5 success reward.
        done = ~np.isnan(samples['returns'])
        assert done.any() and samples['returns'][done].max() > 4.0
    finally:
        venv.close()


def test_oracle_act_reads_the_bearing_itself():
    pytest.importorskip('miniworld')
    import gymnasium as gym

    import sim_training  # noqa: F401
    from sim_training.envs.oracle import Oracle

    env = gym.make('VrGoggles/ChairNav-v0', domain='sim', obs_size=16)
    try:
        oracle = Oracle(env)
        _, info = env.reset(seed=5)
        for _ in range(30):
            assert oracle.act() == oracle.act(info)
            _, _, term, trunc, info = env.step(oracle.act(info))
            if term or trunc:
                break
    finally:
        env.close()


def test_train_policy_runs_dagger_once_then_ppo(tmp_path):
    """--dagger-steps: the stage runs on a fresh run, is recorded, and --resume skips it."""
    pytest.importorskip('miniworld')
    pytest.importorskip('stable_baselines3')
    from sim_training import train_policy

    run = str(tmp_path / 'run')
    common = [*TINY, '--run-dir', run, '--dagger-steps', '128', '--dagger-iterations', '2']
    first = train_policy.Trainer(train_policy.parse_args(
        [*common, '--total-timesteps', '64'])).train()
    assert first['num_timesteps'] == 64  # the expert's steps are not PPO's
    rounds = first['dagger']['rounds']
    assert [r['beta'] for r in rounds] == [1.0, 0.5] and rounds[-1]['dataset'] == 128
    second = train_policy.Trainer(train_policy.parse_args(
        [*common, '--total-timesteps', '128', '--resume'])).train()
    assert second['num_timesteps'] == 128 and second['dagger'] == first['dagger']
    state = json.loads((tmp_path / 'run' / train_policy.STATE).read_text())
    assert state['dagger']['steps'] == 128


def test_dagger_flags_are_checked():
    pytest.importorskip('stable_baselines3')
    from sim_training import train_policy

    for bad in (['--dagger-steps', '100', '--vec-env', 'subproc'],
                ['--dagger-steps', '100', '--lstm-hidden', '16', '--frame-stack', '1'],
                ['--dagger-beta-decay', '1.5'], ['--dagger-steps', '-1'],
                ['--dagger-iterations', '0']):
        with pytest.raises(SystemExit):
            train_policy.parse_args(bad)


def test_pretrain_refuses_envs_it_cannot_read_or_fill():
    """The expert needs the envs in this process, and every round needs a step per env."""
    from types import SimpleNamespace

    from sim_training.dagger import DaggerConfig, pretrain

    with pytest.raises(ValueError, match='--vec-env dummy'):
        pretrain(None, SimpleNamespace(num_envs=2), DaggerConfig(), progress=False)
    with pytest.raises(ValueError, match='cannot fill 4 rounds of 8 envs'):
        pretrain(None, SimpleNamespace(num_envs=8, envs=[None] * 8), DaggerConfig(steps=31),
                 progress=False)
