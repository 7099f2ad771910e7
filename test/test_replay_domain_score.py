"""``vr-goggles replay`` scores every frame with the domain score and replays the stop rule (#37).

Known answers: a bag of real indoor photos (``../shared/real_indoor/rgbd_sequence``, which the
shipped domain score puts 4 or more above its threshold) with a stretch of black frames (about
-12, far below it); the summary of a made-up score sequence; the flags and a corrupt file.
"""

from __future__ import annotations

import json
from pathlib import Path
import sys

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bagfactory as bf  # noqa: E402
import realbags  # noqa: E402

torch = pytest.importorskip('torch')
pytest.importorskip('rosbags')

from vr_goggles.goggles.domain_score import DomainScore  # noqa: E402
from vr_goggles.replay import ReplayConfig, format_summary, replay  # noqa: E402
from vr_goggles.replay.domain import ScoreSeries, summarize  # noqa: E402
from vr_goggles.weights import WeightsError  # noqa: E402

needs_real = pytest.mark.skipif(not realbags.REAL_INDOOR.is_dir(),
                                reason='../shared/real_indoor missing')
PERIOD = 0.1  # s between frames (realbags / bagfactory default)
T0_S = bf.T0 / 1e9


@pytest.fixture(scope='module', autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _generator(d: Path, size: int = 64) -> str:
    from vr_goggles.models import build
    from vr_goggles.weights import ModelCard, save

    torch.manual_seed(0)
    gk = {'ngf': 4, 'n_blocks': 1, 'n_down': 2}
    save(d / f'gen{size}', build('ResnetGenerator', **gk).state_dict(),
         ModelCard(name='gen', architecture='ResnetGenerator', kwargs=gk,
                   input_size=[size, size]))
    return str(d / f'gen{size}')


@pytest.fixture(scope='module')
def gen(tmp_path_factory) -> str:
    """A tiny 64x64 generator (the goggles; the score does not depend on them)."""
    return _generator(tmp_path_factory.mktemp('weights'))


@pytest.fixture(scope='module')
def ds() -> DomainScore:
    """The shipped domain score, as the replay loads it by default."""
    return DomainScore.load()


def cfg(gen: str, bag: Path, out: Path, **kw) -> ReplayConfig:
    """A ReplayConfig on the tiny generator, without a progress bar."""
    return ReplayConfig(bag=bag, out=out, model=gen, engine='torch', progress=False, **kw)


def real_then_black_frames() -> tuple[list[np.ndarray], list[bool]]:
    """5 real photos, 6 black frames, the 5 photos twice: 21 frames, which of them black."""
    real = realbags.real_frames('rgbd_sequence', size=(160, 120))
    black = [np.zeros_like(real[0])] * 6
    frames = real + black + real + real
    return frames, [bool(f.max() == 0) for f in frames]


def test_summary_known_answers():
    """3 good, 6 low, 8 good, 5 low (a NaN among them): two stops, the second to the end."""
    scores = [0.5] * 3 + [-12.0] * 6 + [0.2] * 8 + [-12.0, np.nan, -9.0, -12.0, -12.0]
    series = ScoreSeries()
    for i, s in enumerate(scores):
        t = bf.T0 + i * 100_000_000
        series.add(i + 10, (t // 10**9, t % 10**9), t, s)
    series.seconds = 0.022
    dm = summarize(series, -6.31, name='x', engine='onnxruntime')
    g = dm['guard']
    assert (g['stop_after'], g['resume_after']) == (5, 8)  # DomainGuard's = policy_node's
    assert g['stop_events'] == 2
    first, second = g['stops']
    # the 5th low frame (position 7) stops; the 8th good one after them (position 16) resumes
    assert (first['start']['index'], first['end']['index']) == (17, 26)
    assert first['start']['stamp'] == pytest.approx(T0_S + 0.7)
    assert first['start']['t'] == pytest.approx(0.7)
    assert first['resumed'] and first['frames'] == 9
    assert first['duration_s'] == pytest.approx(0.9)
    # the 5th of the trailing low frames is the last one: stopped at the end, not resumed
    assert second['start']['index'] == 31 and second['end'] is None
    assert not second['resumed'] and second['frames'] == 1 and second['duration_s'] == 0.0
    assert g['first_stop'] == first['start']
    assert g['stopped_frames'] == 10 and g['stopped_s'] == pytest.approx(0.9)
    assert dm['below_threshold'] == 11 and dm['share_below'] == pytest.approx(11 / 22)
    run = dm['longest_run_below']
    assert (run['index'], run['frames']) == (13, 6) and run['duration_s'] == pytest.approx(0.5)
    assert dm['median'] == pytest.approx(0.2) and dm['min'] == -12.0
    assert dm['ms_per_frame'] == pytest.approx(1.0)
    per = dm['per_frame']
    assert per['index'] == list(range(10, 32))
    assert per['stopped'] == [False] * 7 + [True] * 9 + [False] * 5 + [True]
    assert summarize(ScoreSeries(), -6.31)['guard']['stop_events'] == 0


@needs_real
@pytest.mark.parametrize('batch_size', [1, 4])
def test_black_stretch_is_found(tmp_path, gen, ds, batch_size):
    """The black part is below threshold; the guard stops on its 5th frame; the report plots it."""
    frames, black = real_then_black_frames()
    expect = ds.scores(frames)  # the decoded camera frames at their own size (160x120)
    assert (expect[np.array(black)] < ds.threshold).all()
    assert (expect[~np.array(black)] > ds.threshold + 3).all()  # well inside, not by chance
    bag = realbags.write_frames_bag(tmp_path / 'in', frames)
    mpath, report = tmp_path / 'm.json', tmp_path / 'r.html'
    m = replay(cfg(gen, bag, tmp_path / 'out', metrics=mpath, report=report,
                   batch_size=batch_size))
    assert m['complete'] and m['frames'] == 21
    dm = json.loads(mpath.read_text())['domain_score']
    assert dm['weights'].endswith('domain_score.safetensors') and dm['name'] == 'domain_score'
    assert dm['threshold'] == pytest.approx(ds.threshold)
    per = dm['per_frame']
    assert per['index'] == list(range(21))
    assert per['stamp'] == pytest.approx([T0_S + PERIOD * i for i in range(21)], abs=1e-6)
    assert per['t'] == pytest.approx([PERIOD * i for i in range(21)], abs=1e-6)
    assert per['score'] == pytest.approx(expect.tolist(), abs=1e-3)
    assert dm['below_threshold'] == 6 and dm['share_below'] == pytest.approx(6 / 21)
    assert dm['median'] == pytest.approx(float(np.median(expect)), abs=1e-3)
    g = dm['guard']
    assert g['stop_events'] == 1
    stop = g['stops'][0]
    assert g['first_stop']['index'] == 9 == black.index(True) + 4  # the 5th black frame
    assert g['first_stop']['stamp'] == pytest.approx(T0_S + 0.9, abs=1e-6)
    assert stop['end']['index'] == 18  # the 8th photo after the black stretch
    assert g['stopped_frames'] == 9 and g['stopped_s'] == pytest.approx(0.9, abs=1e-6)
    run = dm['longest_run_below']
    assert (run['index'], run['frames']) == (5, 6)
    assert run['duration_s'] == pytest.approx(0.5, abs=1e-6)
    assert 'guard would stop 1 time(s), 0.90 s in all, first at frame 9' in format_summary(m)
    html = report.read_text()
    assert '<h2>Domain score</h2>' in html and 'alt="domain score plot"' in html
    section = html.split('<h2>Domain score</h2>')[1].split('</section>')[0]
    assert 'src="data:image/png;base64,' in section and 'stop after 5' in section
    assert 'first stop</th><td>frame 9, t = 0.90 s' in html
    assert 'frames below threshold</th><td>6 of 21 (28.6%)' in html


def test_scored_on_the_decoded_frame_when_sizes_differ(tmp_path, ds):
    """48x48 goggles, 64x64 score: the score is of the camera frame, not the goggles' input."""
    gen48 = _generator(tmp_path, 48)
    bag = bf.write_bag(tmp_path / 'in', fmt='mcap', n=4, height=48, width=80)
    m = replay(cfg(gen48, bag, tmp_path / 'out'))
    assert m['model_size'] == [48, 48]
    expect = ds.scores([bf.frame_rgb(i, 48, 80) for i in range(4)])
    assert m['domain_score']['per_frame']['score'] == pytest.approx(expect.tolist(), abs=1e-3)


def test_no_domain_score_omits_it(tmp_path, gen, capsys):
    """``--no-domain-score`` (and ``--domain-score ''``): no scores, no report section."""
    from vr_goggles.cli import main

    bag = bf.write_bag(tmp_path / 'in', fmt='mcap', n=3)
    mpath, report = tmp_path / 'm.json', tmp_path / 'r.html'
    rc = main(['replay', str(bag), '--out', str(tmp_path / 'out'), '--model', gen, '--engine',
               'torch', '--no-progress', '--no-domain-score', '--metrics', str(mpath),
               '--report', str(report)])
    assert rc == 0 and 'domain score' not in capsys.readouterr().out
    assert json.loads(mpath.read_text())['domain_score'] is None
    html = report.read_text()
    assert 'Domain score' not in html and 'first stop' not in html
    assert replay(cfg(gen, bag, tmp_path / 'o2', domain_score=''))['domain_score'] is None
    rc = main(['replay', str(bag), '--out', str(tmp_path / 'o3'), '--model', gen, '--engine',
               'torch', '--no-progress', '--metrics', str(tmp_path / 'm3.json')])
    assert rc == 0 and 'domain score (' in capsys.readouterr().out  # on by default
    assert json.loads((tmp_path / 'm3.json').read_text())['domain_score']['frames'] == 3


def test_corrupt_or_missing_domain_score_is_refused(tmp_path, gen, capsys):
    """A corrupt or missing weights file stops the run before anything is written, naming it."""
    from vr_goggles.cli import main

    bag = bf.write_bag(tmp_path / 'in', fmt='mcap', n=2)
    bad = tmp_path / 'bad_score.safetensors'
    bad.write_bytes(b'\x08\x00\x00\x00\x00\x00\x00\x00not json')
    with pytest.raises(WeightsError, match='bad_score'):
        replay(cfg(gen, bag, tmp_path / 'out', domain_score=str(bad)))
    assert not (tmp_path / 'out').exists()
    assert not list(tmp_path.glob('.out.partial-*'))
    missing = tmp_path / 'nope' / 'score.safetensors'
    rc = main(['replay', str(bag), '--out', str(tmp_path / 'out'), '--model', gen, '--engine',
               'torch', '--no-progress', '--domain-score', str(missing)])
    assert rc == 1 and str(missing) in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()
    with pytest.raises(WeightsError, match='not a domain score'):  # another model's weights
        replay(cfg(gen, bag, tmp_path / 'out', domain_score=gen))
