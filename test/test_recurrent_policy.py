"""The recurrent (LSTM) policy path: RecurrentPPO training, export, and the robot-side Policy.

Tiny runs (tens of steps) check plumbing, not learning: counters across --resume, the encoder
warm start, and that the exported NavRecurrentActor steps its state exactly like
sb3-contrib's ``predict`` / ``get_distribution``, episode starts included.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip('miniworld')
pytest.importorskip('sb3_contrib')
torch = pytest.importorskip('torch')

from sim_training import evaluate_policy as ev  # noqa: E402
from sim_training import train_policy  # noqa: E402
from sim_training.export_policy import export, load_checkpoint  # noqa: E402
from vr_goggles.image.preprocess import normalize  # noqa: E402
from vr_goggles.policy import Policy  # noqa: E402

TINY = ['--n-envs', '2', '--vec-env', 'dummy', '--n-steps', '16', '--batch-size', '16',
        '--n-epochs', '1', '--channels', '8,16,16', '--features-dim', '32',
        '--max-episode-steps', '20', '--checkpoint-freq', '32', '--no-progress',
        '--no-tensorboard', '--seed', '5', '--frame-stack', '1']


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """A memoryless run, and a recurrent run warm-started from it (trained, then resumed)."""
    torch.set_num_threads(1)
    ff = tmp_path_factory.mktemp('ff')
    train_policy.Trainer(train_policy.parse_args(
        [*TINY, '--run-dir', str(ff), '--total-timesteps', '32'])).train()
    rec = tmp_path_factory.mktemp('rec')
    common = [*TINY, '--lstm-hidden', '16', '--run-dir', str(rec)]
    first = train_policy.Trainer(train_policy.parse_args(
        [*common, '--total-timesteps', '32', '--init-from',
         str(ff / train_policy.CHECKPOINT)])).train()
    second = train_policy.Trainer(train_policy.parse_args(
        [*common, '--total-timesteps', '64', '--resume'])).train()
    return ff, rec, first, second


def _frames(n=16):
    """Sim frames of random walks and whether each starts an episode."""
    import gymnasium as gym

    import sim_training  # noqa: F401

    env = gym.make('VrGoggles/ChairNav-v0', domain='sim', split='eval', max_episode_steps=7)
    frames, starts = [], []
    obs, _ = env.reset(seed=ev.eval_seeds(1, 0)[0])
    start = True
    rng = np.random.default_rng(1)
    for _ in range(n):
        frames.append(obs)
        starts.append(start)
        obs, _, term, trunc, _ = env.step(int(rng.integers(3)))
        start = term or trunc
        if start:
            obs, _ = env.reset()
    env.close()
    return frames, starts


def test_recurrent_run_resumes_with_counters(runs):
    from sb3_contrib import RecurrentPPO

    ff, rec, first, second = runs
    assert first['num_timesteps'] == 32 and second['num_timesteps'] == 64
    # 64 steps = 2 rollouts of 2 envs x 16 steps, one epoch each (SB3 counts epochs).
    assert second['n_updates'] == 2 and second['sessions'][1]['start_steps'] == 32
    model = load_checkpoint(rec / train_policy.CHECKPOINT)
    assert isinstance(model, RecurrentPPO) and model.num_timesteps == 64
    assert train_policy.is_recurrent_checkpoint(rec / train_policy.CHECKPOINT)
    assert not train_policy.is_recurrent_checkpoint(ff / train_policy.CHECKPOINT)
    # Resuming with the other kind of policy is refused, naming the checkpoint.
    args = train_policy.parse_args([*TINY, '--run-dir', str(rec), '--resume',
                                    '--total-timesteps', '96'])
    venv = train_policy.make_vec_env(args)
    try:
        with pytest.raises(ValueError, match='checkpoint.zip.*recurrent'):
            train_policy.Trainer(args).build(venv)
    finally:
        venv.close()


def test_recurrent_init_takes_the_encoder_only(runs, tmp_path):
    ff = runs[0]
    args = train_policy.parse_args([*TINY, '--lstm-hidden', '16', '--run-dir', str(tmp_path),
                                    '--init-from', str(ff / train_policy.CHECKPOINT)])
    venv = train_policy.make_vec_env(args)
    try:
        new = train_policy.Trainer(args).build(venv).policy.state_dict()
    finally:
        venv.close()
    old = load_checkpoint(ff / train_policy.CHECKPOINT).policy.state_dict()
    enc = [k for k in old if k.startswith('features_extractor.')]
    assert len(enc) == 8  # 3 convs + 1 linear, weight and bias
    assert all(torch.equal(old[k], new[k]) for k in enc)
    assert 'lstm_actor.weight_ih_l0' in new and new['action_net.weight'].shape[1] == 16


def test_recurrent_export_parity_with_sb3(runs, tmp_path):
    rec = runs[1]
    path = export(rec / train_policy.CHECKPOINT, tmp_path / 'policy_rec')
    policy = Policy.load(path)
    card = policy.card
    assert card.architecture == 'NavRecurrentActor' and policy.recurrent
    assert card.kwargs['lstm_hidden'] == 16 and card.extra['frame_stack'] == 1
    assert 'RecurrentPPO' in card.extra['algorithm'] and 'LSTM' in card.task
    model = load_checkpoint(rec / train_policy.CHECKPOINT)
    frames, starts = _frames()
    assert sum(starts) >= 2  # the sequence crosses an episode boundary
    ours, ours_logits = [], []
    for f, new_episode in zip(frames, starts):
        if new_episode:
            policy.reset()
        ours_logits.append(policy.logits(f)[0])
        ours.append(int(np.argmax(ours_logits[-1])))
    state, sb3 = None, []
    for f, new_episode in zip(frames, starts):
        a, state = model.predict(normalize(f), state=state,
                                 episode_start=np.array([new_episode]), deterministic=True)
        sb3.append(int(a[0]))
    assert ours == sb3
    # Same log-probabilities along the whole sequence, not only the same argmax.
    n = model.policy.lstm_actor.hidden_size
    states = (torch.zeros(1, 1, n), torch.zeros(1, 1, n))
    for f, new_episode, got in zip(frames, starts, ours_logits):
        with torch.no_grad():
            dist, states = model.policy.get_distribution(
                torch.from_numpy(normalize(f)), states, torch.tensor([float(new_episode)]))
        ref = dist.distribution.logits[0]
        assert torch.allclose(ref, torch.log_softmax(torch.from_numpy(got), 0), atol=1e-5)
    with pytest.raises(ValueError, match='ONNX'):
        export(rec / train_policy.CHECKPOINT, tmp_path / 'policy_rec2', onnx=True)


def test_recurrent_policy_steps_once_per_control_period(runs, tmp_path):
    """A frame closer than the period replaces the newest step; time going back resets."""
    path = export(runs[1] / train_policy.CHECKPOINT, tmp_path / 'policy_rec')
    frames, _ = _frames(4)
    a, b = Policy.load(path), Policy.load(path)
    f0, f1, f2, f3 = frames
    # Reference without timestamps: the steps [f1, f2, f3].
    ref = b.logits([f1, f2, f3])
    # f0 at 0 s, f1 at 0.2 s (same step: replaces f0), f2 at 0.5 s (new), f3 at 0.96 s (new,
    # 0.46 s >= 0.9 x 0.5 s).
    got = a.logits([f0, f1, f2, f3], times=[0.0, 0.2, 0.5, 0.96])
    assert np.allclose(got[1:], ref, atol=1e-6)
    assert not np.allclose(got[0], ref[0])
    # Time going backwards (a looped bag) starts a new episode: f1 is a first step again.
    again = a.logits([f1], times=[0.1])
    assert np.allclose(again[0], ref[0], atol=1e-6)


def test_lstm_hidden_flag_needs_one_frame():
    assert train_policy.parse_args([]).lstm_hidden == 0
    assert train_policy.parse_args(['--lstm-hidden', '64', '--frame-stack', '1']).lstm_hidden == 64
    with pytest.raises(SystemExit):
        train_policy.parse_args(['--lstm-hidden', '64', '--frame-stack', '4'])
    with pytest.raises(SystemExit):
        train_policy.parse_args(['--lstm-hidden', '-1'])


def test_recurrent_refusals(runs, tmp_path):
    """Bad inputs are refused with the path and the reason."""
    from sim_training.export_policy import actor_from_sb3
    from vr_goggles.image.preprocess import NORMALIZATION
    from vr_goggles.models import build
    from vr_goggles.weights import ModelCard, WeightsError, save

    junk = tmp_path / 'junk.zip'
    junk.write_bytes(b'not a zip')
    with pytest.raises(ValueError, match='junk.zip.*not a stable-baselines3 checkpoint'):
        train_policy.is_recurrent_checkpoint(junk)
    # A recurrent card that also claims stacked frames is refused by the robot-side Policy.
    kwargs = {'in_channels': 6, 'input_size': [64, 64], 'channels': [8, 16, 16],
              'features_dim': 32, 'lstm_hidden': 8, 'n_actions': 3}  # channels fit 2 frames
    actor = build('NavRecurrentActor', **kwargs)
    card = ModelCard(name='p', architecture='NavRecurrentActor', kwargs=kwargs,
                     input_size=[64, 64], normalization=dict(NORMALIZATION),
                     extra={'frame_stack': 2})
    with pytest.raises(WeightsError, match='one frame per step'):
        Policy.load(save(tmp_path / 'p', actor.state_dict(), card))
    # An LSTM NavRecurrentActor cannot represent (two layers) is refused at export.
    model = load_checkpoint(runs[1] / train_policy.CHECKPOINT)
    model.policy.lstm_actor = torch.nn.LSTM(32, 16, num_layers=2)
    with pytest.raises(TypeError, match='2 layers'):
        actor_from_sb3(model)
