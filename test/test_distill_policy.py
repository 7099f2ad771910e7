"""Self-expert cloning (sim_training.distill_policy): labels, sample store, loss, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sim_training.distill_policy import (
    MODES,
    SELECTION_LAYOUTS,
    DistillConfig,
    Lane,
    Samples,
    collect,
    collection_layouts,
    from_uint8,
    main,
    parse_mix,
    soft_cross_entropy,
    to_uint8,
)


def test_parse_mix_normalises_and_names_bad_parts():
    np.testing.assert_allclose(parse_mix('clean=1,goggles=3'), [0.25, 0, 0, 0.75, 0, 0])
    assert MODES == ('clean', 'camera', 'camera_dr', 'goggles', 'camera_goggles',
                     'fake_real_goggles')
    with pytest.raises(ValueError, match="'blur=1'"):
        parse_mix('blur=1')
    with pytest.raises(ValueError, match='not a number'):
        parse_mix('clean=x')
    with pytest.raises(ValueError, match='>= 0'):
        parse_mix('clean=-1,camera=2')
    with pytest.raises(ValueError, match='no positive weight'):
        parse_mix('clean=0')


def test_config_refuses_bad_sizes():
    with pytest.raises(ValueError, match='rounds'):
        DistillConfig(rounds=0)
    with pytest.raises(ValueError, match='beta_decay'):
        DistillConfig(beta_decay=1.5)
    with pytest.raises(ValueError, match='goggles mode needs'):
        DistillConfig(goggles=' , ', mix='goggles=1')
    with pytest.raises(ValueError, match='needs a sim->real generator'):
        DistillConfig(mix='fake_real_goggles=1')


def test_soft_cross_entropy_known_answers():
    logits = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    one_hot = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert torch.isclose(soft_cross_entropy(logits, one_hot),
                         torch.nn.functional.cross_entropy(logits, torch.tensor([0, 0])))
    # Against its own softmax the loss is the entropy: log 3 for uniform logits.
    uniform = torch.full((1, 3), 1 / 3)
    assert torch.isclose(soft_cross_entropy(logits[:1], uniform), torch.log(torch.tensor(3.0)))


def test_uint8_store_round_trips_frames_and_appends_planes():
    from vr_goggles.image.preprocess import normalize

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    stacks = normalize(images).reshape(2, 6, 8, 8)  # two stacks of two frames
    planes = np.array([[-1.0, 0.5], [1.0, -0.25]], np.float32)
    x = from_uint8(to_uint8(stacks), planes)
    assert x.shape == (2, 8, 8, 8)
    np.testing.assert_array_equal(x[:, :6].numpy(), stacks)
    np.testing.assert_array_equal(x[1, 7].numpy(), np.full((8, 8), -0.25, np.float32))


def test_samples_take_spans_rounds_in_order():
    data = Samples()
    data.add({'probs': np.arange(3)[:, None] * np.ones((1, 3))})
    data.add({'probs': (10 + np.arange(4))[:, None] * np.ones((1, 3))})
    assert len(data) == 7
    got = data.take('probs', np.array([0, 2, 3, 6]))[:, 0]
    assert got.tolist() == [0, 2, 10, 13]


def test_collection_never_uses_selection_layouts():
    from sim_training.evaluate_policy import eval_seeds

    held = set(eval_seeds(SELECTION_LAYOUTS, 0, 'train'))
    seeds = collection_layouts(np.random.default_rng(0), 5000)
    assert len(seeds) == 5000 and not held & set(seeds.tolist())


def test_expert_labels_are_what_the_robot_policy_computes():
    """Clean mode, expert driving: the labels equal vr_goggles.policy.Policy's on the same run."""
    from sim_training.evaluate_policy import make_chair_env
    from vr_goggles.image.preprocess import Preprocessor
    from vr_goggles.policy import Policy
    from vr_goggles.weights import build_module

    teacher, card = build_module('policy_sim')
    teacher.eval()
    cfg = DistillConfig(mix='clean=1', envs=1, steps_per_round=12)
    env = make_chair_env(domain='sim', split='train', obs_size=64)
    try:
        lane = Lane(env, card.extra, np.random.default_rng(0))
        lane.reset(123, parse_mix(cfg.mix), 0)
        samples, figures = collect([lane], teacher, teacher, [], Preprocessor(size=(64, 64)),
                                   12, 1.0, cfg, iter([456]), parse_mix(cfg.mix),
                                   np.random.default_rng(0))
        policy = Policy.load('policy_sim')
        obs, _ = env.reset(seed=123)
        want = []
        for _ in range(12):
            logits = policy.logits(obs)[0]
            want.append(torch.softmax(torch.from_numpy(logits), 0).numpy())
            obs, _, terminated, truncated, _ = env.step(int(np.argmax(logits)))
            if terminated or truncated:
                break
    finally:
        env.close()
    n = len(want)
    np.testing.assert_allclose(samples['probs'][:n], np.stack(want), atol=1e-5)
    np.testing.assert_array_equal(samples['view'], samples['clean'])  # clean mode
    assert figures['student_agrees'] == 1.0


def test_cli_trains_resumes_and_exports_a_loadable_policy(tmp_path, capsys):
    from vr_goggles.policy import Policy

    out = tmp_path / 'run'
    args = ['--out', str(out), '--envs', '2', '--steps-per-round', '16', '--epochs', '1',
            '--goggles', 'goggles_cyclegan', '--mix', 'goggles=1', '--no-progress']
    assert main(args + ['--rounds', '1']) == 0
    assert main(args + ['--rounds', '2']) == 0
    printed = capsys.readouterr().out
    assert 'resumed' in printed and 'after round 0 (16 samples)' in printed
    policy = Policy.load(out / 'policy')
    card = json.loads((out / 'policy.json').read_text())
    assert [r['round'] for r in card['metrics']['distillation']] == [0, 1]
    assert card['extra']['distilled_from'] == 'policy_sim'
    assert policy.frame_stack == 4 and policy.turn_memory == 24
    first = card['metrics']['distillation'][0]
    assert first['samples'] == 16 and first['student_agrees'] < 1.0  # the goggles change it
    # The student moved away from the expert, not a copy of it.
    teacher = Policy.load('policy_sim')
    diff = [float((a - b).abs().max()) for a, b in zip(
        policy.module.state_dict().values(), teacher.module.state_dict().values())]
    assert max(diff) > 0


def test_fake_real_mode_shows_the_student_goggles_of_fake_real_frames():
    """fake_real_goggles: the student's frame is G(F(sim frame)), the expert's the sim frame."""
    from sim_training.evaluate_policy import make_chair_env
    from vr_goggles.goggles import Goggles
    from vr_goggles.image.preprocess import Preprocessor
    from vr_goggles.weights import build_module

    teacher, card = build_module('policy_sim')
    teacher.eval()
    cfg = DistillConfig(mix='fake_real_goggles=1', fake_real='goggles_cycada',
                        goggles='goggles_cyclegan', envs=1)
    fake_real = Goggles.from_model('goggles_cycada', engine='torch')
    goggles = Goggles.from_model('goggles_cyclegan', engine='torch')
    pre = Preprocessor(size=(64, 64))
    env = make_chair_env(domain='sim', split='train', obs_size=64)
    try:
        lane = Lane(env, card.extra, np.random.default_rng(0))
        lane.reset(7, parse_mix(cfg.mix), 1)
        first = lane.obs.copy()
        assert lane.mode == 'fake_real_goggles' and lane.generator == 0 and lane.camera is None
        samples, _ = collect([lane], teacher, teacher, [goggles], pre, 1, 1.0, cfg, iter([8]),
                             parse_mix(cfg.mix), np.random.default_rng(0), fake_real=fake_real)
    finally:
        env.close()
    want = goggles(fake_real(first)).transpose(2, 0, 1)
    np.testing.assert_array_equal(samples['view'][0, -3:], want)
    np.testing.assert_array_equal(samples['clean'][0, -3:], first.transpose(2, 0, 1))


def test_help_shows_each_fields_docstring(capsys):
    from sim_training.config_cli import field_docs
    from sim_training.train_policy import Args

    docs = field_docs(DistillConfig)
    assert docs['teacher'].startswith('the expert: a shipped policy name')
    assert docs['lr'] == 'Adam learning rate of the student'
    assert 'camera_augment' in field_docs(Args)
    assert field_docs(int) == {}  # no source: no help, flags still work
    with pytest.raises(SystemExit):
        main(['--help'])
    assert 'soft cross-entropy on the clean stacks' in capsys.readouterr().out


def test_train_policy_help_prints_percent_signs(capsys):
    """The help is %-formatted by argparse: a docstring saying '36 %' must not crash --help."""
    from sim_training.train_policy import parse_args

    with pytest.raises(SystemExit) as e:
        parse_args(['--help'])
    assert e.value.code == 0
    assert 'from 36 % to 42-51 %' in ' '.join(capsys.readouterr().out.split())
