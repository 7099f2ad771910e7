"""FDA (sim_training.fda, train_segmenter --fda-real): known answers on hand-built spectra.

Fourier Domain Adaptation gives a labelled frame the low-frequency amplitude of an unlabelled
camera frame and keeps its phase (issue #40, docs/results/no_label_fda.md). The checks: beta 0
is the identity; the mean colour becomes the target's; the swapped bins carry the target's
amplitude and the source's phase, every other bin stays the source's; the sampler draws its
targets after its frames from its own generator (the probe's order, which the shipped weights
depend on); the trainer records the settings, resumes exactly and names a missing folder.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

torch = pytest.importorskip('torch')
os.environ.setdefault('PYGLET_HEADLESS', '1')

from segmenter_runs import (  # noqa: E402
    camera_folder,
    interrupted_run,
    resumable_config,
    weights,
)

from sim_training.data import FrameSampler, FrameSet  # noqa: E402
from sim_training.fda import FDASampler, fda  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _to_unit(img255: np.ndarray) -> torch.Tensor:
    """0-255 float64 ``(N, 3, H, W)`` -> the [-1, 1] float32 training tensor."""
    return torch.from_numpy((img255 / 127.5 - 1).astype(np.float32))


def _to_255(x: torch.Tensor) -> np.ndarray:
    return (x.double().numpy() + 1) * 127.5


def _cos(h: int, w: int, ky: int, kx: int, phase: float) -> np.ndarray:
    """``cos(2 pi (ky y / h + kx x / w) + phase)`` on an ``h x w`` grid."""
    y, x = np.mgrid[:h, :w]
    return np.cos(2 * np.pi * (ky * y / h + kx * x / w) + phase)


def test_beta_zero_is_the_identity():
    """Beta 0 (b = floor(min(H, W) * 0) = 0): nothing swapped, the frame comes back."""
    g = torch.Generator().manual_seed(0)
    src = torch.rand(2, 3, 16, 20, generator=g) * 2 - 1
    trg = torch.rand(2, 3, 16, 20, generator=g) * 2 - 1
    out = fda(src, trg, 0.0)
    assert out.shape == src.shape
    assert torch.allclose(out, src, atol=1e-5)
    # 0.06 * 16 = 0.96 -> b = 0 as well: the square's side is floored, never rounded
    assert torch.allclose(fda(src, trg, 0.06), src, atol=1e-5)


def test_mean_colour_becomes_the_targets_when_nothing_clips():
    """The DC bin (mean colour of each channel) is swapped: out's channel means are trg's."""
    g = torch.Generator().manual_seed(1)
    src = torch.rand(3, 3, 32, 32, generator=g) * 0.4 - 0.2       # 102..153 in 0-255
    trg = torch.rand(3, 3, 32, 32, generator=g) * 0.4 + 0.1       # 140..191
    out = fda(src, trg, 0.05)
    assert out.abs().max() < 0.99  # nothing clipped, so the arithmetic is exact
    assert torch.allclose(out.mean((2, 3)), trg.mean((2, 3)), atol=1e-5)
    assert not torch.allclose(out.mean((2, 3)), src.mean((2, 3)), atol=1e-2)


def test_low_bins_get_the_targets_amplitude_and_keep_the_sources_phase():
    """Constant + cosines with known spectra, every channel different.

    src = 120 + 30 cos(low, phase 0.7) + 20 cos(high, phase 0.3); trg = 90 + 10 cos(low,
    phase -1.2) + 25 cos(other high, phase 2). With H = W = 32 and beta = 0.1 (b = 3) the low
    frequency (ky, kx) = (1, 2) lies in the swapped corners, the high ones do not. Expected:
    90 + 10 cos(low, phase 0.7) + 20 cos(high, phase 0.3): the target's mean and low amplitude,
    the source's phase and high frequency, nothing of the target's high frequency.
    """
    h = w = 32
    src = np.zeros((1, 3, h, w))
    trg = np.zeros((1, 3, h, w))
    want = np.zeros((1, 3, h, w))
    for c in range(3):
        low_s, low_t = 30 + 5 * c, 10 + 3 * c
        src[0, c] = 120 + low_s * _cos(h, w, 1, 2, 0.7 + c) + 20 * _cos(h, w, 5, 9, 0.3)
        trg[0, c] = 90 + 10 * c + low_t * _cos(h, w, 1, 2, -1.2) + 25 * _cos(h, w, 0, 11, 2.0)
        want[0, c] = 90 + 10 * c + low_t * _cos(h, w, 1, 2, 0.7 + c) + 20 * _cos(h, w, 5, 9, 0.3)
    out = _to_255(fda(_to_unit(src), _to_unit(trg), 0.1))
    assert np.abs(out - want).max() < 1e-3
    # the same in the spectrum: swapped bins |trg| with arg(src), every other bin src's own
    f_out, f_src, f_trg = (np.fft.fft2(a) for a in (out, src, trg))
    b = math.floor(32 * 0.1)
    low = np.zeros((h, w), bool)
    low[:b, :b] = low[:b, -b:] = low[-b:, :b] = low[-b:, -b:] = True
    assert np.allclose(np.abs(f_out[..., low]), np.abs(f_trg[..., low]), atol=0.5)
    big = np.abs(f_src[..., low]) > 1  # the phase of an empty bin means nothing
    assert np.allclose(np.angle(f_out[..., low])[big], np.angle(f_src[..., low])[big],
                       atol=1e-3)
    assert np.allclose(f_out[..., ~low], f_src[..., ~low], atol=0.5)


def test_a_constant_colour_target_turns_the_mean_into_that_colour():
    """Targets of one flat colour c: every sampled frame's channel means become c."""
    rng = np.random.default_rng(2)
    imgs = rng.integers(100, 160, (6, 16, 16, 3), dtype=np.uint8)
    frames = FrameSet(imgs, np.zeros((6, 16, 16), np.uint8), 'tiny')
    colour = np.array([50, 128, 200], np.uint8)
    targets = np.broadcast_to(colour, (4, 16, 16, 3)).copy()
    x, y = FDASampler(frames, targets=targets, beta=0.1, seed=0, crop_pad=2).sample(5)
    assert x.shape == (5, 3, 16, 16) and y.shape == (5, 16, 16)
    assert x.abs().max() < 1  # no clipping
    want = torch.from_numpy(colour / 127.5 - 1).float()
    assert torch.allclose(x.mean((2, 3)), want.expand(5, 3), atol=1e-4)


def test_sampler_draws_frames_first_then_targets_from_its_own_generator():
    """The probe's order: the plain sampler's frames, then the targets, one generator.

    ``randint(len(targets))`` follows the frames on the same generator, so the same seed gives
    the probe's batches (and weights).
    """
    rng = np.random.default_rng(3)
    frames = FrameSet(rng.integers(0, 256, (7, 8, 8, 3), dtype=np.uint8),
                      rng.integers(0, 6, (7, 8, 8), dtype=np.uint8), 'tiny')
    targets = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    fs = FDASampler(frames, targets=targets, beta=0.25, seed=4, crop_pad=1)
    plain = FrameSampler(frames, seed=4, crop_pad=1)
    for _ in range(3):
        x, y = fs.sample(3)
        px, py = plain.sample(3)
        idx = torch.randint(len(targets), (3,), generator=plain.generator)
        trg = torch.from_numpy(targets)[idx].permute(0, 3, 1, 2).float() / 127.5 - 1
        assert torch.equal(y, py)
        assert torch.equal(x, fda(px, trg, 0.25))
    assert torch.equal(fs.generator.get_state(), plain.generator.get_state())


def test_sampler_refuses_a_bad_beta_or_no_targets():
    """A beta outside [0, 0.5] would overlap the corner squares; no target, nothing to lend."""
    frames = FrameSet(np.zeros((2, 8, 8, 3), np.uint8), None, 'tiny')
    with pytest.raises(ValueError, match='fda_beta: 0.6'):
        FDASampler(frames, targets=np.zeros((1, 8, 8, 3), np.uint8), beta=0.6, seed=0)
    with pytest.raises(ValueError, match='no target frames'):
        FDASampler(frames, targets=np.zeros((0, 8, 8, 3), np.uint8), beta=0.1, seed=0)


# -- the trainer ---------------------------------------------------------------------------------


def test_trainer_with_fda_real_records_it_and_learns_other_weights(tmp_path):
    """The trainer with --fda-real on tiny synthetic data: its card names it.

    The card's config and task record fda_real/fda_beta; FDA changes what is learned (the same
    seed without it gives other weights).
    """
    from sim_training.train_segmenter import SegmenterConfig, train
    from vr_goggles.weights import load_card

    cam = camera_folder(tmp_path / 'cam')
    base = dict(synthetic=8, size=16, width=4, steps=3, batch_size=4)
    train(SegmenterConfig(fda_real=str(cam), fda_beta=0.1, out=str(tmp_path / 'fda'), **base),
          command='pytest')
    train(SegmenterConfig(out=str(tmp_path / 'plain'), **base), command='pytest')
    card = load_card(tmp_path / 'fda')
    assert card.extra['config']['fda_real'] == str(cam)
    assert card.extra['config']['fda_beta'] == 0.1
    assert f'{cam} (FDA, beta 0.1)' in card.task
    assert load_card(tmp_path / 'plain').extra['config']['fda_real'] == ''
    fda_w, plain_w = weights(tmp_path / 'fda'), weights(tmp_path / 'plain')
    assert not all(np.array_equal(fda_w[k], plain_w[k]) for k in fda_w)


def test_trainer_fda_run_resumes_to_the_same_weights_and_refuses_other_fda(tmp_path,
                                                                           monkeypatch):
    """An FDA run interrupted after its step-2 checkpoint resumes to the whole run's weights.

    A resume with another fda_beta or fda_real is refused (they change what is learned).
    """
    from sim_training.train_segmenter import checkpoint_path, train

    cam = camera_folder(tmp_path / 'cam')

    def cfg(out, **kw):
        return resumable_config(tmp_path, out, **{'fda_real': str(cam), 'fda_beta': 0.1, **kw})

    train(cfg('whole'), command='pytest')
    interrupted_run(monkeypatch, FDASampler, 'sample', lambda: train(cfg('cut'), command='pytest'))
    ckpt = checkpoint_path(tmp_path / 'cut')
    with pytest.raises(ValueError, match=r'checkpoint of a different run \(fda_beta=0.1 vs 0.2\)'):
        train(cfg('cut', resume='auto', fda_beta=0.2), command='pytest')
    other = camera_folder(tmp_path / 'other')
    with pytest.raises(ValueError, match=r'different run \(fda_real='):
        train(cfg('cut', resume='auto', fda_real=str(other)), command='pytest')
    with pytest.raises(ValueError, match=r'different run \(fda_real='):
        train(cfg('cut', resume='auto', fda_real=''), command='pytest')
    train(cfg('cut', resume='auto'), command='pytest')
    assert not ckpt.exists()
    whole, cut = weights(tmp_path / 'whole'), weights(tmp_path / 'cut')
    assert all(np.array_equal(whole[k], cut[k]) for k in whole)


@pytest.mark.parametrize('flag', ['--fda-real', '--dacs-real'])
def test_missing_unlabelled_folder_is_one_line_naming_it(tmp_path, capsys, flag):
    """A missing --fda-real / --dacs-real folder: exit 2, one line naming the flag and folder.

    It fails before the labelled data is read (that folder is missing too and is not named).
    """
    from sim_training import train_segmenter as seg

    missing = tmp_path / 'no_camera'
    rc = seg.main(['--data', str(tmp_path / 'no_data'), flag, str(missing), '--steps', '1'])
    err = capsys.readouterr().err
    assert rc == 2
    assert f'{flag}: {missing}: no such folder or bag' in err
    assert 'no_data' not in err and 'Traceback' not in err
    assert len(err.strip().splitlines()) == 1
    assert seg.main(['--synthetic', '4', '--fda-real', str(tmp_path / 'cam'),
                     '--fda-beta', '0.7', '--steps', '1']) == 2
    assert '--fda-beta: 0.7 is not in [0, 0.5]' in capsys.readouterr().err


def test_semantic_fda_config_differs_from_the_semantic_one_only_in_the_segmenter():
    """config/goggles_semantic_fda.yaml: valid goggles_node values, segmenter_fda, no more.

    It is goggles_semantic.yaml with the no-label segmenter, so the two must not drift apart.
    """
    from pathlib import Path

    import yaml

    from vr_goggles.nodes import params as P

    config = Path(__file__).resolve().parents[1] / 'config'

    def values(name):
        return yaml.safe_load((config / name).read_text())['/**']['ros__parameters']

    fda_values = values('goggles_semantic_fda.yaml')
    assert P.validate(P.GOGGLES_PARAMS, fda_values) == []
    assert fda_values == {**values('goggles_semantic.yaml'), 'floor_segmenter': 'segmenter_fda'}
