"""The domain score (issue #37): its parts on hand-made frames, the stop rule, the shipped score.

- the network's pieces give hand-computed answers on tiny tensors: the ONNX-friendly quarter
  turn is ``torch.rot90``, batch-norm folding keeps the logits, colour bins, the per-row colour
  layout with its prior count, texture, and the weighted standardised sum (texture one-sided);
- :class:`DomainGuard` stops on exactly the ``stop_after``-th low in a row and resumes on the
  ``resume_after``-th high;
- the shipped ``domain_score`` gives the same scores under torch and ONNX Runtime, puts black,
  white and noise frames below its threshold and real-proxy frames of the evaluation layouts
  above it; foreign cards are refused by path;
- ``vr-goggles export`` describes the score's ``(batch,)`` output; the trainer writes a card
  that loads, whose threshold is the 1st percentile of its calibration frames' scores.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny_models import save_tiny_generator
import torch

from vr_goggles.cli import main as cli
from vr_goggles.goggles.domain_score import DomainGuard, DomainScore, is_below
from vr_goggles.models.domain_score_net import (
    DomainScoreNet,
    RotationNet,
    colour_bins,
    fit_colour_layout,
    four_turns,
    quarter_turn,
    rotation_log_likelihood,
    texture,
)
from vr_goggles.weights import ModelCard, WeightsError, save


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv('VR_GOGGLES_CACHE_DIR', str(tmp_path / 'cache'))


def _levels(*rgb: tuple[int, int, int]) -> torch.Tensor:
    """0-255 RGB pixels -> a normalised ``(1, 3, 1, len(rgb))`` frame, as the preprocessing."""
    a = torch.tensor(rgb, dtype=torch.float32).T[None, :, None, :]
    return a / 127.5 - 1.0


def _save_tiny_score(stem: Path, *, size: int = 16, extra: dict | None = None,
                     seed: int = 0) -> Path:
    """A seeded tiny DomainScoreNet with its card (``extra`` as given) at ``stem``."""
    kwargs = {'size': size, 'width': 4, 'depth': 2, 'bins': 4}
    torch.manual_seed(seed)
    net = DomainScoreNet(**kwargs)
    with torch.no_grad():
        net.colour_layout.copy_(torch.randn_like(net.colour_layout))
        net.standardise.copy_(torch.tensor([[-1.0, 0.5], [0.2, 2.0], [2.0, 0.5]]))
    card = ModelCard(name=stem.name, architecture='DomainScoreNet', kwargs=kwargs,
                     input_size=[size, size], extra=dict(extra or {}))
    return save(stem, net.state_dict(), card)


# -- the network's parts --------------------------------------------------------------------------
@pytest.mark.parametrize('k', [-1, 0, 1, 2, 3, 5])
def test_quarter_turn_is_rot90(k):
    """Flips and a transpose give ``torch.rot90(x, k, (2, 3))``, k taken modulo 4."""
    x = torch.arange(2 * 2 * 3 * 3, dtype=torch.float32).reshape(2, 2, 3, 3)
    assert torch.equal(quarter_turn(x, k), torch.rot90(x, k, (2, 3)))


def test_four_turns_stacks_each_turn_with_its_label():
    """Turn k of frame i sits at row ``k * N + i``, labelled k."""
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).reshape(2, 1, 3, 3)
    turned, labels = four_turns(x)
    assert turned.shape == (8, 1, 3, 3)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    for k in range(4):
        for i in range(2):
            assert torch.equal(turned[k * 2 + i], torch.rot90(x[i], k, (1, 2)))


def test_rotation_log_likelihood_of_a_blank_net_is_log_quarter():
    """A net that says nothing (all weights 0) gives each turn probability 1/4."""
    net = RotationNet(width=4, depth=2, batch_norm=False)
    for p in net.parameters():
        torch.nn.init.zeros_(p)
    got = rotation_log_likelihood(net, torch.rand(3, 3, 8, 8))
    torch.testing.assert_close(got, torch.full((3,), math.log(0.25)))


def test_folded_net_gives_the_batch_norm_logits():
    """Batch norm folded into the convolutions = the BN net in eval mode, moved stats and all."""
    torch.manual_seed(0)
    net = RotationNet(width=4, depth=3, batch_norm=True)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:  # a non-trivial affine part
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-1.0, 1.0)
        net.train()
        for _ in range(3):  # move the running statistics away from 0 / 1
            net(torch.randn(8, 3, 16, 16) * 2 + 0.5)
    assert not torch.allclose(bns[0].running_mean, torch.zeros_like(bns[0].running_mean))
    net.eval()
    folded = net.folded()
    assert not folded.training
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), rtol=1e-5, atol=1e-5)


def test_colour_bins_of_hand_made_pixels():
    """Black bin 0, white the last, pure red ``7 * 64`` with 8 bins; bin edges at 256 / bins."""
    x = _levels((0, 0, 0), (255, 255, 255), (255, 0, 0), (0, 255, 0), (0, 0, 255),
                (31, 32, 128), (127, 128, 224))
    assert colour_bins(x, 8)[0, 0].tolist() == [
        0, 511, 7 * 64, 7 * 8, 7,
        (0 * 8 + 1) * 8 + 4,     # 31 -> 0, 32 -> 1, 128 -> 4
        (3 * 8 + 4) * 8 + 7]     # 127 -> 3, 128 -> 4, 224 -> 7
    assert colour_bins(x, 2)[0, 0].tolist() == [0, 7, 4, 2, 1, 0 + 0 + 1, 0 + 2 + 1]


def test_fit_colour_layout_counts_per_row_with_a_prior():
    """Two 2x2 frames, 2 bins: log of (count + 0.1) / (4 + 8 * 0.1) per row."""
    black = torch.full((3, 2, 2), -1.0)
    top_white = black.clone()
    top_white[:, 0] = 1.0
    got = fit_colour_layout(torch.stack([black, top_white]), bins=2, prior=0.1)
    assert got.shape == (2, 8) and got.dtype == torch.float32
    total = 4 + 8 * 0.1
    row0 = torch.full((8,), math.log(0.1 / total), dtype=torch.float64)
    row0[0] = row0[7] = math.log(2.1 / total)  # 2 black and 2 white pixels in row 0
    row1 = torch.full((8,), math.log(0.1 / total), dtype=torch.float64)
    row1[0] = math.log(4.1 / total)            # 4 black pixels in row 1
    torch.testing.assert_close(got, torch.stack([row0, row1]).float())
    torch.testing.assert_close(got.exp().sum(1), torch.ones(2))


def test_texture_of_flat_and_stepped_frames():
    """Flat: log 0.5; one vertical edge 0 | 255 in 4 columns: log(255 / 3 + 0.5); a checker."""
    flat = torch.full((1, 3, 4, 4), 0.3)
    edge = torch.full((1, 3, 4, 4), -1.0)
    edge[..., 2:] = 1.0
    checker = (torch.arange(4)[:, None] + torch.arange(4)[None, :]) % 2 * 2.0 - 1.0
    checker = checker.expand(1, 3, 4, 4)
    red_edge = edge.clone()
    red_edge[:, 1:] = -1.0  # only the red channel steps: a third of the grey step
    got = texture(torch.cat([flat, edge, edge.transpose(2, 3), checker, red_edge]))
    want = torch.tensor([math.log(0.5), math.log(85 + 0.5), math.log(85 + 0.5),
                         math.log(2 * 255 + 0.5), math.log(85 / 3 + 0.5)])
    torch.testing.assert_close(got, want)


def test_forward_is_the_weighted_standardised_sum_with_one_sided_texture():
    """Blank rotation net (log 1/4), hand-set layout and buffers: the sum by hand."""
    net = DomainScoreNet(size=4, width=4, depth=2, bins=2).eval()
    with torch.no_grad():
        for p in net.rotation.parameters():
            p.zero_()
        layout = torch.arange(4 * 8, dtype=torch.float32).reshape(4, 8) * -0.1
        net.colour_layout.copy_(layout)
        net.standardise.copy_(torch.tensor([[-1.0, 0.5], [-1.5, 2.0], [3.0, 0.25]]))
        net.weights.copy_(torch.tensor([1.0, 0.5, 2.0]))
    black = torch.full((3, 4, 4), -1.0)
    checker = ((torch.arange(4)[:, None] + torch.arange(4)[None, :]) % 2 * 2.0 - 1.0)
    checker = checker.expand(3, 4, 4)
    with torch.no_grad():
        parts = net.components(torch.stack([black, checker]))
        got = net(torch.stack([black, checker]))
    rot = math.log(0.25)
    colour_black = float(layout[:, 0].mean())                       # every pixel in bin 0
    colour_checker = float((layout[:, 0] + layout[:, 7]).mean() / 2)  # half bin 0, half bin 7
    want_parts = torch.tensor([[rot, colour_black, math.log(0.5)],
                               [rot, colour_checker, math.log(510.5)]])
    torch.testing.assert_close(parts, want_parts)
    z_rot = (rot + 1.0) / 0.5
    z_tex_black = (math.log(0.5) - 3.0) / 0.25  # flatter than the rooms: counts
    assert (math.log(510.5) - 3.0) / 0.25 > 0   # busier: clamped to 0, not counted
    want = torch.tensor([z_rot + 0.5 * (colour_black + 1.5) / 2.0 + 2.0 * z_tex_black,
                         z_rot + 0.5 * (colour_checker + 1.5) / 2.0])
    torch.testing.assert_close(got, want)


# -- the stop rule --------------------------------------------------------------------------------
def _feed(guard: DomainGuard, scores) -> list[tuple[bool, bool]]:
    return [(s.stopped, s.changed) for s in map(guard.update, scores)]


def test_guard_stops_on_the_stop_after_th_consecutive_low():
    """Two lows hold nothing; the third stops (once), later lows keep it stopped."""
    g = DomainGuard(0.0, stop_after=3, resume_after=2)
    assert _feed(g, [-1, -1, -1, -1]) == [(False, False), (False, False), (True, True),
                                          (True, False)]
    assert g.stops == 1 and 'below threshold' in g.reason()


def test_guard_a_high_frame_resets_the_run_of_lows():
    """low, low, high, low, low: no stop; the next low is the third in a row and stops."""
    g = DomainGuard(0.0, stop_after=3, resume_after=2)
    assert [s for s, _ in _feed(g, [-1, -1, 0.5, -1, -1])] == [False] * 5
    assert g.update(-1).stopped and g.stops == 1


def test_guard_resumes_on_the_resume_after_th_consecutive_high():
    """A score equal to the threshold is high; a low in between restarts the count."""
    g = DomainGuard(0.0, stop_after=1, resume_after=3)
    assert g.update(-5).stopped
    assert _feed(g, [1, 0.0, -1, 1, 1]) == [(True, False)] * 5
    assert _feed(g, [2]) == [(False, True)]
    assert 'below' not in g.reason() and g.stops == 1
    assert not DomainGuard(0.0, stop_after=1).update(0.0).stopped  # at the threshold: high


def test_guard_counts_nan_as_low_and_counts_stops():
    """NaN frames stop the robot; a second stop event is counted."""
    g = DomainGuard(0.0, stop_after=2, resume_after=1)
    assert _feed(g, [math.nan, math.nan]) == [(False, False), (True, True)]
    assert _feed(g, [1.0, -1.0, math.nan]) == [(False, True), (False, False), (True, True)]
    assert g.stops == 2 and math.isnan(g.last_score)


def test_guard_reset_forgets_the_run_but_not_the_stop():
    """After reset a stopped guard stays stopped and needs a full run of highs."""
    g = DomainGuard(0.0, stop_after=2, resume_after=2)
    _feed(g, [-1, -1, 1])
    g.reset()
    assert g.stopped and g.below == g.above == 0
    assert _feed(g, [1, 1]) == [(True, False), (False, True)]


@pytest.mark.parametrize('stop_after, resume_after', [(0, 1), (1, 0), (-2, 4)])
def test_guard_refuses_counts_below_one(stop_after, resume_after):
    """A run of zero frames is no rule."""
    with pytest.raises(ValueError, match='must be >= 1'):
        DomainGuard(0.0, stop_after=stop_after, resume_after=resume_after)


# -- the shipped score ----------------------------------------------------------------------------
@pytest.fixture(scope='module')
def real_proxy_frames() -> list[np.ndarray]:
    """The first frame of each of the first 20 evaluation layouts, real-proxy look."""
    chair_nav = pytest.importorskip('sim_training.envs.chair_nav',
                                    reason='needs the simulator (pip install .[train])')
    env = chair_nav.ChairNavEnv(domain='real', split='eval')
    try:
        return [env.reset(seed=chair_nav.EVAL_SEEDS[k])[0] for k in range(20)]
    finally:
        env.close()


@pytest.fixture(scope='module')
def shipped() -> dict[str, DomainScore]:
    """The shipped score on both engines."""
    return {e: DomainScore.load('domain_score', engine=e) for e in ('torch', 'onnxruntime')}


def _flat_and_noise() -> list[np.ndarray]:
    noise = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    return [np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 255, np.uint8), noise]


def test_shipped_score_is_the_same_on_torch_and_onnxruntime(shipped, real_proxy_frames):
    """The ONNX beside the weights scores as torch does; ``auto`` picks it."""
    assert shipped['torch'].engine == 'torch'
    assert shipped['onnxruntime'].engine == 'onnxruntime'
    assert DomainScore.load('domain_score').engine == 'onnxruntime'
    assert shipped['torch'].threshold == shipped['onnxruntime'].threshold < 0
    frames = real_proxy_frames[:6] + _flat_and_noise()
    ref = shipped['torch'].scores(frames)
    assert ref.shape == (9,) and np.isfinite(ref).all()
    np.testing.assert_allclose(shipped['onnxruntime'].scores(frames), ref, atol=1e-3, rtol=0)
    assert shipped['onnxruntime'](frames[0]) == pytest.approx(ref[0], abs=1e-3)


@pytest.mark.parametrize('engine', ['torch', 'onnxruntime'])
def test_shipped_score_puts_black_white_and_noise_below_threshold(shipped, engine):
    """The frames a covered or broken camera sends are out of the goggles' domain."""
    ds = shipped[engine]
    scores = ds.scores(_flat_and_noise())
    assert (scores < ds.threshold).all(), (scores, ds.threshold)


def test_shipped_score_puts_real_proxy_frames_above_threshold(shipped, real_proxy_frames):
    """Evaluation layouts in the look it was fitted on: at least 90% above, typical median.

    The threshold is the 1st percentile of in-domain frames, so a few may fall below.
    """
    ds = shipped['onnxruntime']
    scores = ds.scores(real_proxy_frames)
    assert (scores >= ds.threshold).mean() >= 0.9, (scores, ds.threshold)
    assert np.median(scores) > ds.threshold / 2, scores


@pytest.mark.parametrize('engine', ['torch', 'onnxruntime', 'auto'])
def test_load_refuses_another_architecture_by_path(tmp_path, engine):
    """A generator's weights are no domain score; the message names the file."""
    path = save_tiny_generator(tmp_path / 'gen')
    with pytest.raises(WeightsError, match='not a domain score') as e:
        DomainScore.load(path, engine=engine)
    assert str(path) in str(e.value)


@pytest.mark.parametrize('engine', ['torch', 'auto'])
def test_load_refuses_a_card_without_threshold(tmp_path, engine):
    """Without the calibrated threshold there is no stop rule: refused, by path."""
    path = _save_tiny_score(tmp_path / 'uncalibrated')
    with pytest.raises(WeightsError, match='threshold') as e:
        DomainScore.load(path, engine=engine)
    assert str(path) in str(e.value)


def test_load_refuses_an_unknown_engine():
    """The engines are torch, onnxruntime and auto."""
    with pytest.raises(ValueError, match='engine: expected one of torch, onnxruntime, auto'):
        DomainScore.load('domain_score', engine='tensorrt')


# -- vr-goggles export ----------------------------------------------------------------------------
def test_export_describes_the_scores_output(tmp_path, capsys):
    """The domain score's ONNX output is ``(batch,)`` scores, not an RGB image; it then runs."""
    path = _save_tiny_score(tmp_path / 'tiny_score', extra={'threshold': -2.5})
    onnx = path.with_suffix('.onnx')
    assert cli(['export', '--model', str(path), '--onnx', str(onnx), '--dynamic-batch']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  input  'input':  (batch, 3, 16, 16) float32 RGB in [-1, 1]" in lines
    out = [line for line in lines if line.startswith("  output 'output':")]
    assert out == ["  output 'output': (batch,) float32 domain scores (higher = more in-domain; "
                   'card threshold -2.5)'], lines
    frames = [np.random.default_rng(k).integers(0, 256, (16, 16, 3), dtype=np.uint8)
              for k in range(3)]
    ort = DomainScore.load(path, engine='onnxruntime')
    assert ort.engine == 'onnxruntime' and ort.threshold == -2.5
    np.testing.assert_allclose(ort.scores(frames),
                               DomainScore.load(path, engine='torch').scores(frames),
                               atol=1e-5, rtol=0)


def test_export_still_describes_a_generator_as_rgb(tmp_path, capsys):
    """A generator's output line is unchanged: the image, in the input's shape."""
    path = save_tiny_generator(tmp_path / 'gen')
    assert cli(['export', '--model', str(path), '--onnx', str(tmp_path / 'g.onnx')]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  output 'output': (1, 3, 32, 32) float32 RGB in [-1, 1]" in lines


# -- the trainer ----------------------------------------------------------------------------------
def _write_pngs(folder: Path, images: np.ndarray) -> str:
    folder.mkdir(parents=True)
    for i, img in enumerate(images):
        assert cv2.imwrite(str(folder / f'{i:06d}.png'), img[:, :, ::-1])  # RGB -> BGR
    return str(folder)


def test_trainer_writes_a_card_that_loads(tmp_path):
    """Synthetic frames, one epoch: the card loads on torch, its threshold is its p1."""
    from sim_training.train_domain_score import DomainScoreConfig, train

    out = tmp_path / 'ds'
    cfg = DomainScoreConfig(synthetic=256, epochs=1, batch_size=64, threads=1, out=str(out))
    model, metrics = train(cfg)
    ds = DomainScore.load(out, engine='torch')
    assert ds.card.architecture == 'DomainScoreNet' and ds.fitted_on == 'synthetic'
    assert ds.threshold == pytest.approx(metrics['calibration_score']['p1'], abs=1e-4)
    assert metrics['threshold'] == metrics['calibration_score']['p1']
    assert metrics['calibration_frames'] == 25 and metrics['train_frames'] == 231
    # the saved net is the returned one
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(ds._module(x), model(x))
    # a second run on the same --out is refused before any work, naming --overwrite
    with pytest.raises(ValueError, match='--overwrite'):
        train(cfg)


def test_trainer_threshold_is_the_first_percentile_of_the_calibration_folder(tmp_path):
    """--data and --calibration folders: the loaded score's p1 over the calibration frames."""
    from sim_training.data import synthetic_frames
    from sim_training.train_domain_score import DomainScoreConfig, train

    data = _write_pngs(tmp_path / 'data', synthetic_frames(64, (64, 64), domain='real').images)
    cal_images = synthetic_frames(30, (64, 64), domain='real', seed=1).images
    cal = _write_pngs(tmp_path / 'cal', cal_images)
    out = tmp_path / 'ds'
    _, metrics = train(DomainScoreConfig(data=data, calibration=cal, epochs=1, batch_size=32,
                                         threads=1, out=str(out)))
    assert metrics['train_frames'] == 64 and metrics['calibration_frames'] == 30
    ds = DomainScore.load(out, engine='torch')
    scores = ds.scores(list(cal_images))
    assert ds.threshold == pytest.approx(float(np.percentile(scores, 1)), abs=1e-4)
    assert ds.card.extra['calibrated_on'] == cal and ds.fitted_on == data


@pytest.mark.parametrize('synthetic, batch_size, what', [
    (40, 64, '36 to train'),       # fewer training frames than one batch
    (100, 16, '10 to calibrate'),  # a tenth held out: fewer than 20 to calibrate on
])
def test_trainer_refuses_too_few_frames(tmp_path, synthetic, batch_size, what):
    """Too few frames is one clear ValueError saying how many and the minimum."""
    from sim_training.train_domain_score import DomainScoreConfig, train

    cfg = DomainScoreConfig(synthetic=synthetic, batch_size=batch_size, epochs=1, threads=1,
                            out=str(tmp_path / 'ds'))
    with pytest.raises(ValueError, match='too few frames') as e:
        train(cfg)
    assert what in str(e.value)
    assert not (tmp_path / 'ds.safetensors').exists()


def test_trainer_command_line(tmp_path, capsys):
    """--help exits 0 listing the flags; a rerun on --out exits 2 with one error line."""
    from sim_training.train_domain_score import main
    from vr_goggles.commands.train import TRAINERS

    assert TRAINERS['domain-score'] == 'sim_training.train_domain_score'
    with pytest.raises(SystemExit) as e:
        main(['--help'])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert all(f in text for f in ('--data', '--calibration', '--out', '--overwrite'))
    out = str(tmp_path / 'ds')
    argv = ['--synthetic', '256', '--epochs', '1', '--threads', '1', '--out', out]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('train_domain_score: error: ')
    assert '--overwrite' in err[0]


def test_is_below_counts_nan_as_below():
    """The flag goggles_node publishes agrees with DomainGuard (NaN is below)."""
    assert is_below(-7.0, -6.3) and not is_below(-6.3, -6.3)
    assert is_below(math.nan, -6.3)


def test_retuned_guard_keeps_the_stop_and_the_runs():
    """A run-time change never releases a stopped robot; unchanged settings keep the guard."""
    g = DomainGuard(-6.0, 2, 3)
    assert (g.threshold, g.stop_after, g.resume_after, g.stopped) == (-6.0, 2, 3, False)
    assert g.retuned(-6.0, 2, 3) is g
    g.update(-10.0)
    assert g.update(-10.0).stopped  # stopped after 2
    g.update(0.0)
    g2 = g.retuned(-5.0, 2, 5)  # more resume frames: still stopped, run kept
    assert g2 is not g and g2.stopped and (g2.above, g2.below, g2.stops) == (1, 0, 1)
    assert g2.threshold == -5.0 and g2.resume_after == 5
    assert all(g2.update(0.0).stopped for _ in range(3))
    assert g2.update(0.0).stopped is False and g2.stops == 1  # the 5th good frame
    nan = DomainGuard(math.nan, 2, 3)
    assert nan.retuned(math.nan, 2, 3) is nan  # a NaN threshold does not restart
    nan.update(0.0)
    assert nan.update(0.0).stopped
