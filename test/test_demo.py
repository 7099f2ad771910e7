"""The closed-loop demo end to end on the shipped weights, with a tiny episode count."""

import json

import numpy as np
import pytest

pytest.importorskip('miniworld')
pytest.importorskip('gymnasium')

from sim_training.closed_loop import CONDITIONS, DemoConfig, goals, run_demo  # noqa: E402
from vr_goggles import cli  # noqa: E402
from vr_goggles.weights import SHIPPED_DIR  # noqa: E402

SEGMENTERS = {'segmenter_dr', 'segmenter_dr2', 'segmenter_real', 'segmenter_fda'}
NEEDED = {c[0] for c in CONDITIONS.values()} | SEGMENTERS | {
    c[2].partition('+')[0] for c in CONDITIONS.values()
    if c[2] not in (None, 'stats_match') and not c[2].startswith('semantic:')}
missing = sorted(n for n in NEEDED if not (SHIPPED_DIR / f'{n}.safetensors').exists())
pytestmark = pytest.mark.skipif(bool(missing), reason=f'shipped weights missing: {missing}')


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('demo')
    cfg = DemoConfig(episodes=2, seed=3, engine='torch', progress=False, stats_frames=8,
                     max_episode_steps=40)
    results = run_demo(cfg, out, command='pytest demo')
    return out, results


def test_results_json_schema_and_all_conditions(demo_run):
    out, results = demo_run
    on_disk = json.loads((out / 'results.json').read_text())
    assert on_disk == json.loads(json.dumps(results))
    assert list(on_disk['conditions']) == list(CONDITIONS)
    for name, c in on_disk['conditions'].items():
        assert {'success_rate', 'ci95', 'spl', 'episodes'} <= set(c), name
        assert c['episodes'] == 2
        assert 0.0 <= c['success_rate'] <= 1.0
        lo, hi = c['ci95']
        assert 0.0 <= lo <= c['success_rate'] <= hi <= 1.0
        assert 0.0 <= c['spl'] <= 1.0
    assert set(on_disk['goals']) == {'vr_goggles_ge_0.85x_sim', 'no_goggles_le_0.5x_sim',
                                     'vr_goggles_gt_cyclegan',
                                     'semantic_goggles_ge_0.85x_sim', 'no_label_ge_0.85x_sim'}


def test_conditions_share_identical_seeds(demo_run):
    _, results = demo_run
    seeds = {name: tuple(c['seeds']) for name, c in results['conditions'].items()}
    assert len(set(seeds.values())) == 1, seeds
    from sim_training.envs.chair_nav import EVAL_SEEDS

    assert all(s in EVAL_SEEDS for s in next(iter(seeds.values())))


def test_goggled_conditions_ran_through_the_engine(demo_run):
    _, results = demo_run
    for name in ('real_cyclegan', 'real_cycada', 'real_vr_goggles'):
        t = results['conditions'][name]['transform']
        assert t['model'] == CONDITIONS[name][2]
        assert t['engine'] == 'torch'
    assert len(results['conditions']['real_stats_match']['transform']['sim_mean']) == 3
    floor = results['conditions']['real_vr_goggles_floor']['transform']
    assert floor['model'] == 'goggles_vr_goggles' and floor['engine'] == 'torch'
    assert floor['floor_prior']['segmenter'] == 'segmenter_dr'
    assert floor['floor_prior']['camera'] == {'fov_y_deg': 60.0, 'pitch_deg': -8.0,
                                              'height_m': 0.9}
    assert floor['floor_prior']['paint'] == []
    semantic = results['conditions']['real_semantic_goggles']['transform']
    assert semantic['model'] is None  # no generator
    assert semantic['segmenter'] == 'segmenter_real'
    assert semantic['paint'] == ['chair', 'wall', 'ceiling', 'object']


def test_report_is_self_contained(demo_run):
    out, _ = demo_run
    page = (out / 'report.html').read_text()
    assert page.startswith('<!DOCTYPE html>')
    assert page.count('data:image/png;base64,') >= 3  # bar chart, strips, trajectories
    assert 'http://' not in page and 'https://' not in page
    for name in CONDITIONS:
        assert name in page


def test_goals_known_answers():
    c = {'sim': {'success_rate': 1.0}, 'real_no_goggles': {'success_rate': 0.5},
         'real_cyclegan': {'success_rate': 0.6}, 'real_vr_goggles': {'success_rate': 0.85}}
    assert goals(c) == {'vr_goggles_ge_0.85x_sim': True, 'no_goggles_le_0.5x_sim': True,
                        'vr_goggles_gt_cyclegan': True}
    c['real_vr_goggles']['success_rate'] = 0.6
    assert goals(c)['vr_goggles_gt_cyclegan'] is False
    c['real_semantic_goggles'] = {'success_rate': 0.84}
    assert goals(c)['semantic_goggles_ge_0.85x_sim'] is False
    assert goals(c)['vr_goggles_ge_0.85x_sim'] is False
    c['real_semantic_goggles_fda'] = {'success_rate': 0.74}  # the shipped draw: 0.78x
    assert goals(c)['no_label_ge_0.85x_sim'] is False
    c['real_semantic_goggles_fda']['success_rate'] = 0.85
    assert goals(c)['no_label_ge_0.85x_sim'] is True


def test_cli_rejects_unknown_condition(tmp_path, capsys):
    rc = cli.main(['demo', '--episodes', '1', '--out', str(tmp_path), '--conditions', 'nope'])
    assert rc == 1
    assert 'nope' in capsys.readouterr().err


def test_floor_condition_needs_a_pose_first():
    from sim_training.closed_loop import PosedGoggles

    t = PosedGoggles(goggles=None)
    with pytest.raises(RuntimeError, match='no pose'):
        t(np.zeros((64, 64, 3), np.uint8))
    t.observe({'agent_pos': np.array([1.0, -2.0]), 'agent_dir': 0.5})
    assert t.pose == (1.0, -2.0, 0.5)


def test_interrupted_demo_resumes_with_what_it_finished(tmp_path, monkeypatch, capsys):
    """Each finished condition is kept; --resume runs only the rest, same settings only."""
    from sim_training import closed_loop

    cfg = DemoConfig(episodes=1, seed=4, engine='torch', progress=False, stats_frames=4,
                     max_episode_steps=5, conditions=['sim', 'real_no_goggles'])
    real = closed_loop.run_condition
    ran = []

    def dies_on_second(name, c):
        if ran:
            raise KeyboardInterrupt
        ran.append(name)
        return real(name, c)

    monkeypatch.setattr(closed_loop, 'run_condition', dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_demo(cfg, tmp_path, command='first')
    kept = tmp_path / 'partial' / 'sim.npz'
    assert kept.is_file() and not (tmp_path / 'results.json').exists()
    first_sim, first_rec = closed_loop.load_condition(
        kept, {k: getattr(cfg, k) for k in closed_loop.RESUME_KEYS})
    assert first_rec.frames and first_rec.trajectories  # what the report draws is kept too
    # Other settings are refused by name; a damaged file by path and reason.
    with pytest.raises(ValueError, match=r'sim\.npz.*episodes=1.*2'):
        run_demo(DemoConfig(**{**cfg.__dict__, 'episodes': 2}), tmp_path, resume=True)
    ran.clear()
    monkeypatch.setattr(closed_loop, 'run_condition',
                        lambda name, c: ran.append(name) or real(name, c))
    results = run_demo(cfg, tmp_path, command='resumed', resume=True)
    assert ran == ['real_no_goggles']
    assert results['conditions']['sim'] == json.loads(json.dumps(first_sim))
    assert list(results['conditions']) == ['sim', 'real_no_goggles']
    assert (tmp_path / 'report.html').is_file() and not (tmp_path / 'partial').exists()
    kept.parent.mkdir()
    kept.write_bytes(b'PK\x03\x04 not a zip')
    with pytest.raises(ValueError, match=r'sim\.npz: cannot resume'):
        run_demo(cfg, tmp_path, resume=True)
    rc = cli.main(['demo', '--episodes', '1', '--seed', '4', '--engine', 'torch',
                   '--max-steps', '5', '--conditions', 'sim', '--out', str(tmp_path),
                   '--no-progress', '--resume'])
    assert rc == 1 and 'sim.npz: cannot resume' in capsys.readouterr().err
