"""Tiny end-to-end runs of the policy pipeline: train -> resume -> export -> evaluate.

Hundreds of steps, not thousands: this checks plumbing (checkpoints, counters, parity,
determinism), not learning.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('miniworld')
pytest.importorskip('stable_baselines3')
torch = pytest.importorskip('torch')

from sim_training import evaluate_policy as ev  # noqa: E402
from sim_training import train_policy  # noqa: E402
from sim_training.export_policy import export, load_checkpoint  # noqa: E402
from sim_training.policy_training import checkpoints as ck  # noqa: E402
from sim_training.policy_training import trainer as tr  # noqa: E402
from sim_training.policy_training import wrappers as wr  # noqa: E402
from vr_goggles.image.preprocess import normalize  # noqa: E402
from vr_goggles.policy import Policy  # noqa: E402
from vr_goggles.policy.frame_stack import FrameStack  # noqa: E402

TINY = ['--n-envs', '2', '--vec-env', 'dummy', '--n-steps', '32', '--batch-size', '32',
        '--n-epochs', '1', '--channels', '8,16,16', '--features-dim', '32',
        '--max-episode-steps', '40', '--checkpoint-freq', '64', '--no-progress',
        '--no-tensorboard', '--seed', '3']


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Train 128 steps, then resume to 256; returns (run dir, state after each session)."""
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp('run')
    first = train_policy.Trainer(train_policy.parse_args(
        [*TINY, '--run-dir', str(run), '--total-timesteps', '128',
         '--keep-checkpoints'])).train()
    second = train_policy.Trainer(train_policy.parse_args(
        [*TINY, '--run-dir', str(run), '--total-timesteps', '256', '--resume'])).train()
    return run, first, second


def test_args_from_dataclass_fields():
    args = train_policy.parse_args(['--n-envs', '3', '--domain', 'randomized', '--no-progress',
                                    '--learning-rate', '1e-3', '--batch-size', '128'])
    assert args.n_envs == 3 and args.domain == 'randomized' and args.progress is False
    assert args.learning_rate == pytest.approx(1e-3)
    assert args.total_timesteps == train_policy.Args().total_timesteps
    with pytest.raises(SystemExit):
        train_policy.parse_args(['--domain', 'mars'])


def test_help_shows_every_field_doc(capsys):
    """--help carries each Args field's docstring; the removed experiments' flags are gone."""
    import dataclasses

    from sim_training.config_cli import field_docs

    with pytest.raises(SystemExit):
        train_policy.parse_args(['--help'])
    text = ' '.join(capsys.readouterr().out.split())
    docs = field_docs(train_policy.Args)
    assert set(docs) == {f.name for f in dataclasses.fields(train_policy.Args)}
    for name, doc in docs.items():
        assert '--' + name.replace('_', '-') in text
        assert ' '.join(doc.split()).replace('%%', '%') in text
    for gone in ('--lstm-hidden', '--frame-offsets', '--dagger-steps', '--spin-penalty',
                 '--floor-augment', '--detour-keep'):
        assert gone not in text
        with pytest.raises(SystemExit):
            train_policy.parse_args([gone, '1'])


def test_export_and_train_do_not_import_each_other():
    """The exporter reads checkpoints through policy_training, never through the trainer."""
    import ast

    import sim_training.export_policy as exp
    import sim_training.policy_training.args as args_mod

    def imports(module) -> set[str]:
        tree = ast.parse(Path(module.__file__).read_text(encoding='utf-8'))
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}

    assert not {'sim_training.train_policy', 'sim_training.policy_training.trainer'} & imports(
        exp)
    for module in (ck, wr, args_mod):
        assert not {'sim_training.train_policy', 'sim_training.export_policy',
                    'sim_training.policy_training.trainer'} & imports(module)
    # Checkpoints saved before the package name the extractor by its old path.
    assert train_policy.NavFeaturesExtractor is tr.NavFeaturesExtractor


def test_checkpoint_and_resume_keep_counters(trained):
    run, first, second = trained
    assert first['num_timesteps'] == 128
    # 128 steps = 2 rollouts of 2 envs x 32 steps, 1 epoch x 2 minibatches each.
    assert first['n_updates'] == 2
    assert second['num_timesteps'] == 256 and second['n_updates'] == 4
    assert len(second['sessions']) == 2
    assert second['sessions'][1]['start_steps'] == 128
    model = load_checkpoint(run / ck.CHECKPOINT)
    assert model.num_timesteps == 256 and model._n_updates == 4
    state = json.loads((run / ck.STATE).read_text())
    assert state['num_timesteps'] == 256
    # --keep-checkpoints (first session only): each periodic checkpoint with its state.
    kept = sorted((run / 'checkpoints').glob('*.zip'))
    assert [p.name for p in kept] == ['checkpoint_128.zip', 'checkpoint_64.zip']
    assert load_checkpoint(kept[1]).num_timesteps == 64
    assert json.loads(kept[0].with_suffix('.json').read_text())['num_timesteps'] == 128


@pytest.fixture(scope='module')
def exported(trained, tmp_path_factory):
    run = trained[0]
    out = tmp_path_factory.mktemp('export') / 'policy_tiny'
    return export(run / ck.CHECKPOINT, out), run


def test_export_parity_with_sb3_predict(exported):
    path, run = exported
    policy = Policy.load(path)
    card = policy.card
    assert card.architecture == 'NavActor' and card.input_size == [64, 64]
    assert card.extra['action_names'] == ['forward', 'turn_left', 'turn_right']
    assert card.metrics['training']['num_timesteps'] == 256
    k = policy.frame_stack
    assert k == train_policy.Args().frame_stack == card.extra['frame_stack'] > 1
    assert card.extra['frame_offsets'] == list(range(k - 1, -1, -1))
    assert card.kwargs['in_channels'] == 3 * k
    check_parity(policy, load_checkpoint(run / ck.CHECKPOINT))


def check_parity(policy: Policy, model) -> None:
    """Policy.act and SB3 predict choose the same actions over 24 frames across episodes."""
    import gymnasium as gym

    import sim_training  # noqa: F401

    env = gym.make('VrGoggles/ChairNav-v0', domain='sim', split='eval')
    frames, starts = [], []
    obs, _ = env.reset(seed=ev.eval_seeds(1, 0)[0])
    start = True
    rng = np.random.default_rng(0)
    for _ in range(24):
        frames.append(obs)
        starts.append(start)
        obs, _, term, trunc, _ = env.step(int(rng.integers(3)))
        start = term or trunc
        if start:
            obs, _ = env.reset()
    env.close()
    ours = []
    for f, new_episode in zip(frames, starts):
        if new_episode:
            policy.reset()
        ours.append(policy.act(f))
    # SB3's side sees what the training wrapper built: the same stacks, episode by episode.
    stack, stacked = FrameStack(policy.frame_stack), []
    for f, new_episode in zip(frames, starts):
        if new_episode:
            stack.reset()
        stacked.append(stack.push(normalize(f)[0]))
    sb3, _ = model.predict(np.stack(stacked), deterministic=True)
    assert ours == [int(a) for a in sb3]
    # Same logits up to float noise, not just the same argmax.
    x = torch.from_numpy(np.stack(stacked))
    with torch.no_grad():
        ref = model.policy.get_distribution(x).distribution.logits
        got = torch.log_softmax(policy.module(x), dim=1)
    assert torch.allclose(ref, got, atol=1e-5)


def test_evaluation_is_deterministic(exported, tmp_path):
    path, _ = exported
    policy = Policy.load(path)
    a = ev.run_episodes(policy, 'sim', 3, seed=5, max_episode_steps=25, progress=False)
    b = ev.run_episodes(policy, 'sim', 3, seed=5, max_episode_steps=25, progress=False)
    assert a == b
    assert a['episodes'] == 3 and 0.0 <= a['success_ci95'][0] <= a['success_ci95'][1] <= 1.0
    assert all(e['steps'] <= 25 for e in a['per_episode'])
    # The CLI writes the same JSON twice.
    outs = []
    for i in range(2):
        out = tmp_path / f'eval{i}.json'
        assert ev.main(['--policy', str(path), '--domain', 'sim', '--episodes', '2',
                        '--seed', '1', '--max-episode-steps', '15', '--json', str(out),
                        '--no-progress']) == 0
        outs.append(out.read_text())
    assert outs[0] == outs[1]
    # --split train runs training layouts (checkpoint choice) and never touches the card.
    out = tmp_path / 'train.json'
    assert ev.main(['--policy', str(path), '--episodes', '2', '--split', 'train',
                    '--max-episode-steps', '5', '--json', str(out), '--no-progress']) == 0
    train = json.loads(out.read_text())
    assert train['split'] == 'train'
    assert [e['seed'] for e in train['per_episode']] == ev.eval_seeds(2, 0, 'train')
    with pytest.raises(SystemExit):
        ev.main(['--policy', str(path), '--split', 'train', '--update-card'])


def test_image_transform_is_applied(exported):
    path, _ = exported
    policy = Policy.load(path)
    seen = []

    def goggles(img):
        seen.append(img.shape)
        return img

    ev.run_episodes(policy, 'real', 1, seed=0, image_transform=goggles,
                    max_episode_steps=5, progress=False)
    assert seen and seen[0] == (64, 64, 3)


def test_eval_seeds_are_eval_split_and_seeded():
    from sim_training.envs.chair_nav import EVAL_SEEDS, TRAIN_SEEDS

    s = ev.eval_seeds(10, 0)
    assert s == ev.eval_seeds(10, 0) and s != ev.eval_seeds(10, 1)
    assert all(v in EVAL_SEEDS and v not in TRAIN_SEEDS for v in s)
    assert len(set(s)) == min(10, len(EVAL_SEEDS))
    t = ev.eval_seeds(10, 0, 'train')
    assert all(v in TRAIN_SEEDS for v in t) and len(set(t)) == 10
    with pytest.raises(ValueError, match='split'):
        ev.eval_seeds(1, 0, 'test')


def test_select_translator_ranks_on_training_layouts(exported, tmp_path):
    """Candidates are driven on train-split layouts; ranking is sorted and worker-independent."""
    from tiny_models import save_tiny_generator

    from sim_training import select_translator as sel
    from sim_training.envs.chair_nav import TRAIN_SEEDS

    policy, _ = exported
    for k in range(2):
        save_tiny_generator(tmp_path / 'snapshots' / f'step_{k:06d}', seed=k)
    models = sel._candidates([str(tmp_path / 'snapshots'),
                              str(tmp_path / 'snapshots' / 'step_000001.json')])
    assert models == [str(tmp_path / 'snapshots' / f'step_{k:06d}') for k in range(2)]
    kw = dict(policy=str(policy), episodes=2, max_episode_steps=6)
    assert sel.main([str(tmp_path / 'snapshots'), '--policy', str(policy), '--episodes', '2',
                     '--max-episode-steps', '6', '--json', str(tmp_path / 'sel.json')]) == 0
    doc = json.loads((tmp_path / 'sel.json').read_text())
    one = sel.select(models, workers=1, **kw)
    assert doc['split'] == 'train' and doc['ranking'] == one
    assert sel.select(models, workers=2, **kw) == one
    assert sorted(r['model'] for r in one) == models
    assert all(r['split'] == 'train' and r['episodes'] == 2 for r in one)
    keys = [(-r['success_rate'], -r['spl']) for r in one]
    assert keys == sorted(keys)
    # --floor-prior drives behind goggles + floor prior (the pose comes from the env's info)
    floored = sel.evaluate_candidate(models[0], floor_prior=True, **kw)
    assert floored['floor_prior'] and not one[0]['floor_prior']
    assert floored['episodes'] == 2 and floored['split'] == 'train'
    seen = []
    r = ev.run_episodes(lambda img: 0, 'real', 2, 0, progress=False, split='train',
                        max_episode_steps=1,
                        on_step=lambda e, raw, img, info: seen.append(info['layout_seed']))
    assert seen == [e['seed'] for e in r['per_episode']] == ev.eval_seeds(2, 0, 'train')
    assert r['split'] == 'train' and all(v in TRAIN_SEEDS for v in seen)


def test_select_translator_keeps_every_candidate_and_resumes(exported, tmp_path, monkeypatch):
    """An interrupted selection keeps what it drove; --resume drives only the rest."""
    from tiny_models import save_tiny_generator

    from sim_training import select_translator as sel

    policy, _ = exported
    models = []
    for k in range(3):
        models.append(str(tmp_path / 'snapshots' / f'step_{k:06d}'))
        save_tiny_generator(Path(models[-1]), seed=k)
    out = tmp_path / 'sel.json'
    base = [str(tmp_path / 'snapshots'), '--policy', str(policy), '--episodes', '2',
            '--max-episode-steps', '4', '--json', str(out), '--no-progress']
    driven = []
    real = sel.evaluate_candidate

    def dies_on_third(model, **kw):
        if len(driven) == 2:
            raise KeyboardInterrupt
        driven.append(model)
        return real(model, **kw)

    monkeypatch.setattr(sel, 'evaluate_candidate', dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        sel.main(base)
    partial = json.loads(out.read_text())
    assert partial['complete'] is False
    assert sorted(r['model'] for r in partial['ranking']) == models[:2]
    # Resuming reuses the two results it has (marked here) and drives only the third.
    partial['ranking'][0]['mark'] = 'kept'
    out.write_text(json.dumps(partial))
    driven.clear()
    monkeypatch.setattr(sel, 'evaluate_candidate',
                        lambda m, **kw: driven.append(m) or real(m, **kw))
    assert sel.main([*base, '--resume']) == 0
    doc = json.loads(out.read_text())
    assert driven == [models[2]] and doc['complete'] is True
    assert sorted(r['model'] for r in doc['ranking']) == models
    assert any(r.get('mark') == 'kept' for r in doc['ranking'])
    fresh = sel.select(models, policy=str(policy), episodes=2, max_episode_steps=4)
    strip = [{k: v for k, v in r.items() if k != 'mark'} for r in doc['ranking']]
    assert strip == fresh
    # A file made with other settings, or not a selection at all, is refused by name.
    with pytest.raises(ValueError, match=r'sel\.json.*episodes=2.*3'):
        sel.main([*base[:3], '--episodes', '3', *base[5:], '--resume'])
    out.write_text('{"ranking": [')
    with pytest.raises(ValueError, match=r'sel\.json: cannot resume'):
        sel.main([*base, '--resume'])
    out.write_text('[1, 2]')
    with pytest.raises(ValueError, match='not a select_translator result'):
        sel.main([*base, '--resume'])
    with pytest.raises(SystemExit):
        sel.main([str(tmp_path / 'snapshots'), '--resume'])


def test_collision_penalty_wrapper():
    import gymnasium as gym

    class Bumper(gym.Env):
        observation_space = gym.spaces.Box(0, 255, (4, 4, 3), np.uint8)
        action_space = gym.spaces.Discrete(3)

        def reset(self, *, seed=None, options=None):
            self.n = 0
            return np.zeros((4, 4, 3), np.uint8), {'collisions': 0}

        def step(self, action):
            self.n += int(action == 0)  # every forward step collides
            return (np.zeros((4, 4, 3), np.uint8), -0.01, False, False,
                    {'collisions': self.n})

    env = wr.CollisionPenalty(Bumper(), 0.5)
    env.reset()
    assert env.step(0)[1] == pytest.approx(-0.51)
    assert env.step(1)[1] == pytest.approx(-0.01)
    assert env.step(0)[1] == pytest.approx(-0.51)
    env.reset()
    assert env.step(1)[1] == pytest.approx(-0.01)


def test_geodesic_progress_wrapper():
    """Only the progress term changes.

    Turns keep the env's reward, and over an episode the rewards differ by exactly the
    (geodesic - straight-line) start-to-end progress.
    """
    import gymnasium as gym

    from sim_training.envs.oracle import Oracle
    from vr_goggles.policy.actions import FORWARD

    class Raw(gym.Wrapper):
        def step(self, action):
            out = self.env.step(action)
            self.last = out[1]
            return out

    raw = Raw(gym.make(wr.ENV_ID, domain='sim', obs_size=16))
    env = wr.GeodesicProgress(raw)
    oracle = Oracle(env)
    try:
        _, info = env.reset(seed=1008925)  # an evaluation layout with the chair behind a desk
        geo0, euc0 = env._geo, info['distance']
        assert geo0 > euc0 - 1.1 + 0.3  # the planned path is much longer than the straight one
        total = total_raw = 0.0
        forward = 0
        for _ in range(120):
            action = oracle.act(info)
            _, reward, term, trunc, info = env.step(action)
            total, total_raw = total + reward, total_raw + raw.last
            if action != FORWARD:
                assert reward == raw.last
            else:
                forward += 1
            if term or trunc:
                break
        assert info['success'] and forward > 5
        assert total - total_raw == pytest.approx((geo0 - env._geo) - (euc0 - info['distance']),
                                                  abs=1e-9)
        # No planned path (walled off): the env's straight-line reward is kept as it is.
        _, info = env.reset(seed=1008925)
        env.oracle.geodesic_distance = lambda: None
        _, reward, *_ = env.step(FORWARD)
        assert reward == raw.last and env._geo is None
    finally:
        env.close()


def test_progress_reward_flag():
    assert train_policy.parse_args([]).progress_reward == 'euclidean'
    assert train_policy.parse_args(['--progress-reward', 'geodesic']).progress_reward == 'geodesic'
    with pytest.raises(SystemExit):
        train_policy.parse_args(['--progress-reward', 'manhattan'])


def test_stack_frames_wrapper_resets_per_episode():
    import gymnasium as gym

    class Counter(gym.Env):
        observation_space = gym.spaces.Box(-1.0, 1.0, (3, 2, 2), np.float32)
        action_space = gym.spaces.Discrete(3)

        def reset(self, *, seed=None, options=None):
            self.t = 0
            return np.full((3, 2, 2), 0.0, np.float32), {}

        def step(self, action):
            self.t += 1
            return np.full((3, 2, 2), 0.1 * self.t, np.float32), 0.0, False, False, {}

    env = wr.StackFrames(Counter(), 3)
    assert env.observation_space.shape == (9, 2, 2)
    obs, _ = env.reset()
    assert obs.shape == (9, 2, 2) and not obs.any()
    env.step(0)
    obs = env.step(0)[0]
    assert np.allclose(obs[::3, 0, 0], [0.0, 0.1, 0.2])  # oldest first
    obs, _ = env.reset()
    assert not obs.any()  # no frames leak from the previous episode


def warm_started(tmp_path, *flags: str, old_flags: tuple[str, ...] = ()):
    """A tiny memoryless run (+ ``old_flags``), and a model with ``flags`` built from it."""
    old_run = tmp_path / 'k1'
    train_policy.Trainer(train_policy.parse_args(
        [*TINY, '--frame-stack', '1', *old_flags, '--run-dir', str(old_run),
         '--total-timesteps', '64'])).train()
    args = train_policy.parse_args([*TINY, *flags, '--run-dir', str(tmp_path / 'k2'),
                                    '--init-from', str(old_run / ck.CHECKPOINT)])
    venv = tr.make_vec_env(args)
    try:
        new = train_policy.Trainer(args).build(venv)
    finally:
        venv.close()
    return load_checkpoint(old_run / ck.CHECKPOINT), new


def test_init_from_widens_first_conv_and_keeps_behaviour(trained, tmp_path):
    """A memoryless run warm-starts a 3-frame run that initially acts exactly like it."""
    run = trained[0]
    old, new = warm_started(tmp_path, '--frame-stack', '3')
    frames = torch.rand(5, 3, 64, 64) * 2 - 1
    history = torch.rand(5, 6, 64, 64) * 2 - 1  # any older frames: their weights are zero
    with torch.no_grad():
        ref = old.policy.get_distribution(frames).distribution.logits
        got = new.policy.get_distribution(torch.cat([history, frames], 1)).distribution.logits
        assert torch.allclose(ref, got, atol=1e-6)
        assert torch.allclose(old.policy.predict_values(frames),
                              new.policy.predict_values(torch.cat([history, frames], 1)))
    # A checkpoint of another architecture is refused with its path.
    bad = train_policy.parse_args([*TINY, '--channels', '8,16,8', '--run-dir',
                                   str(tmp_path / 'bad'), '--init-from',
                                   str(run / ck.CHECKPOINT)])
    venv = tr.make_vec_env(bad)
    try:
        with pytest.raises(ValueError, match='checkpoint.zip'):
            train_policy.Trainer(bad).build(venv)
    finally:
        venv.close()


def test_runs_of_removed_experiments_are_refused(trained, tmp_path):
    """A saved run that used a removed experiment is not resumed, exported or warm-started."""
    import shutil

    run = tmp_path / 'old'
    shutil.copytree(trained[0], run, ignore=shutil.ignore_patterns('checkpoints'))
    state = json.loads((run / ck.STATE).read_text())
    assert ck.removed_settings_used(state['args']) == ''
    for key, value in (('spin_penalty', 0.05), ('frame_offsets', '5,1,0'),
                       ('lstm_hidden', 128)):
        (run / ck.STATE).write_text(json.dumps(
            {**state, 'args': {**state['args'], key: value}}))
        with pytest.raises(ValueError, match=f'{key}={value!r} vs.*083bc5e'):
            export(run / ck.CHECKPOINT, tmp_path / 'policy_old')
        args = train_policy.parse_args([*TINY, '--run-dir', str(run), '--resume',
                                        '--total-timesteps', '512'])
        venv = tr.make_vec_env(args)
        try:
            with pytest.raises(ValueError, match=key):
                train_policy.Trainer(args).build(venv)
            args.resume, args.run_dir = False, str(tmp_path / 'fresh')
            args.init_from = str(run / ck.CHECKPOINT)
            with pytest.raises(ValueError, match=key):
                train_policy.Trainer(args).build(venv)
        finally:
            venv.close()


def test_lineage_follows_init_from_chain(tmp_path):
    from sim_training.export_policy import lineage

    a = {'num_timesteps': 100, 'wall_s': 10.0, 'args': {'frame_stack': 1},
         'sessions': [{'command': 'train a'}]}
    b = {'num_timesteps': 50, 'wall_s': 5.0,
         'args': {'frame_stack': 4, 'init_from': str(tmp_path / 'a.zip')},
         'sessions': [{'command': 'train b'}, {'command': 'train b --resume'}]}
    (tmp_path / 'a.json').write_text(json.dumps(a))
    (tmp_path / 'b.json').write_text(json.dumps(b))
    chain = lineage({'init_from': str(tmp_path / 'b.zip')})
    assert [st['commands'] for st in chain] == [['train a'], ['train b', 'train b --resume']]
    assert [st['num_timesteps'] for st in chain] == [100, 50]
    assert [st['frame_stack'] for st in chain] == [1, 4]
    assert lineage({}) == []
    assert 'unknown' in lineage({'init_from': str(tmp_path / 'missing.zip')})[0]['state']


def test_turn_memory_export_parity(tmp_path):
    """--turn-memory: Policy counts its own turns as the training wrapper counted the env's."""
    import gymnasium as gym

    import sim_training  # noqa: F401
    from vr_goggles.policy.turn_memory import TurnMemory

    torch.set_num_threads(1)
    run = tmp_path / 'turn'
    train_policy.Trainer(train_policy.parse_args(
        [*TINY, '--run-dir', str(run), '--total-timesteps', '64', '--frame-stack', '2',
         '--turn-memory', '3', '--turn-window', '5'])).train()
    model = load_checkpoint(run / ck.CHECKPOINT)
    assert model.observation_space.shape == (8, 64, 64)
    policy = Policy.load(export(run / ck.CHECKPOINT, tmp_path / 'policy_turn'))
    card = policy.card
    assert card.extra['turn_memory'] == 3 and card.extra['turn_window'] == 5
    assert card.kwargs['in_channels'] == 8 and policy.frame_stack == 2
    assert 'min(n, 3) / 3 - 1' in card.task and 'last 5 steps' in card.task
    # Drive the env with Policy; rebuild each input as the training wrappers do and ask SB3.
    env = gym.make('VrGoggles/ChairNav-v0', domain='sim', split='eval', max_episode_steps=12)
    stack, memory = FrameStack(2), TurnMemory(3, window=5)
    obs, _ = env.reset(seed=ev.eval_seeds(1, 0)[0])
    policy.reset()
    planes = set()
    for _ in range(30):
        ours = policy.act(obs)
        x = stack.push(normalize(obs)[0])
        plane = memory.planes(x.shape[1:], memory.observe())
        planes.add(tuple(plane[:, 0, 0]))
        x = np.concatenate([x, plane])[None]
        sb3, _ = model.predict(x, deterministic=True)
        assert ours == int(sb3[0])
        with torch.no_grad():
            ref = model.policy.get_distribution(torch.from_numpy(x)).distribution.logits
            got = torch.log_softmax(policy.module(torch.from_numpy(x)), dim=1)
        assert torch.allclose(ref, got, atol=1e-5)
        memory.record(ours)
        obs, _, term, trunc, _ = env.step(ours)
        if term or trunc:
            obs, _ = env.reset()
            policy.reset()
            stack.reset()
            memory.reset()
    env.close()
    assert len(planes) > 2  # the counts moved, so the planes were exercised


def test_init_from_adds_a_zero_turn_plane(trained, tmp_path):
    """A 1-frame run warm-starts a 2-frame turn-memory run that acts exactly like it."""
    old, new = warm_started(tmp_path, '--frame-stack', '2', '--turn-memory', '4')
    frames = torch.rand(5, 3, 64, 64) * 2 - 1
    older = torch.rand(5, 3, 64, 64) * 2 - 1
    plane = torch.rand(5, 1, 1, 1).expand(5, 1, 64, 64)
    w = new.policy.features_extractor.encoder.cnn[0].weight
    assert w.shape[1] == 7 and not w[:, :3].any() and not w[:, 6].any()
    with torch.no_grad():
        ref = old.policy.get_distribution(frames).distribution.logits
        got = new.policy.get_distribution(torch.cat([older, frames, plane], 1)).distribution
        assert torch.allclose(ref, got.logits, atol=1e-6)


def test_turn_memory_flag_is_checked():
    assert train_policy.parse_args(['--turn-memory', '24']).turn_memory == 24
    for bad in (['--turn-memory', '-1'],
                ['--turn-window', '48'], ['--turn-memory', '24', '--turn-window', '-1']):
        with pytest.raises(SystemExit):
            train_policy.parse_args(bad)


def test_init_from_keeps_the_source_turn_plane(tmp_path):
    """A turn-memory source's plane weights land on the new count plane; the window's are 0."""
    old, new = warm_started(tmp_path, '--frame-stack', '2', '--turn-memory', '4',
                            '--turn-window', '8', old_flags=('--turn-memory', '4'))
    w_old = old.policy.features_extractor.encoder.cnn[0].weight
    w = new.policy.features_extractor.encoder.cnn[0].weight
    assert w_old.shape[1] == 4 and w.shape[1] == 8
    assert not w[:, :3].any() and torch.equal(w[:, 3:7], w_old) and not w[:, 7].any()


def test_camera_augment_wrapper_is_seeded_per_episode_camera():
    """Each episode's frames pass through one drawn camera (or none); seeds reproduce them."""
    import gymnasium as gym

    from sim_training.envs.real_proxy import CameraModel

    grey = np.full((16, 16, 3), 128, np.uint8)

    class Still(gym.Env):
        observation_space = gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)
        action_space = gym.spaces.Discrete(3)

        def reset(self, *, seed=None, options=None):
            return grey.copy(), {}

        def step(self, action):
            return grey.copy(), 0.0, False, False, {}

    def episodes(seed, n=12):
        env = wr.CameraAugment(Still(), 0.5)
        out = []
        for k in range(n):
            obs, _ = env.reset(seed=seed if k == 0 else None)
            out.append((obs, env.step(0)[0], env.camera))
        return out

    a, b = episodes(3), episodes(3)
    for (r1, s1, cam), (r2, s2, _) in zip(a, b):
        assert np.array_equal(r1, r2) and np.array_equal(s1, s2)
        if cam is None:
            assert np.array_equal(r1, grey) and np.array_equal(s1, grey)
        else:
            assert isinstance(cam, CameraModel) and cam.jpeg_quality == 100
            assert 0.0 <= cam.blur_sigma <= 1.6 and cam.vignetting == 0.0
    cameras = [cam for _, _, cam in a]
    assert any(c is None for c in cameras) and any(c is not None for c in cameras)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, episodes(4)))
    with pytest.raises(ValueError, match='camera_augment'):
        wr.CameraAugment(Still(), 0.0)
    assert train_policy.parse_args(['--camera-augment', '0.7']).camera_augment == 0.7
    with pytest.raises(SystemExit):
        train_policy.parse_args(['--camera-augment', '1.5'])


def test_init_from_an_exported_policy_copies_its_actor(exported, tmp_path):
    """--init-from NAME.safetensors: the new run acts exactly like the export; wrong sizes fail."""
    path, _ = exported
    actor = Policy.load(path).module
    args = train_policy.parse_args([*TINY, '--run-dir', str(tmp_path / 'ft'),
                                    '--init-from', str(path)])
    venv = tr.make_vec_env(args)
    try:
        model = train_policy.Trainer(args).build(venv)
    finally:
        venv.close()
    x = torch.rand(4, Policy.load(path).card.kwargs['in_channels'], 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(model.policy.get_distribution(x).distribution.logits,
                              torch.log_softmax(actor(x), -1),
                              atol=1e-6)
    from sim_training.export_policy import lineage

    chain = lineage({'init_from': str(path)})  # what the fine-tuned policy's card records
    assert chain == [{'policy': str(path), 'sha256': Policy.load(path).card.sha256,
                      'commands': [Policy.load(path).card.training_command]}]
    assert 'unknown' in lineage({'init_from': str(tmp_path / 'missing')})[0]['state']
    bad = train_policy.parse_args([*TINY, '--frame-stack', '2', '--run-dir',
                                   str(tmp_path / 'bad'), '--init-from', str(path)])
    venv = tr.make_vec_env(bad)
    try:
        with pytest.raises(ValueError, match='policy_tiny.*does not match'):
            train_policy.Trainer(bad).build(venv)
    finally:
        venv.close()
