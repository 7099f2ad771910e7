"""DACS (sim_training.dacs, train_segmenter --dacs-real): known answers on hand-built batches.

DACS self-trains the segmenter on unlabelled camera frames: half of a labelled frame's classes
pasted onto a camera frame (ClassMix), the teacher's pseudo-labels elsewhere, weighted by the
teacher's confident share; the teacher is an EMA of the student (issue #40,
docs/results/no_label_dacs.md). The checks: ClassMix of a hand-built pair pastes exactly the
drawn classes' pixels; the confident share, the weighting and the EMA on known numbers; the
trainer records the settings, resumes exactly (teacher and both generators included) and
names a missing folder.
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

from sim_training.dacs import (  # noqa: E402
    DACS,
    classmix,
    confident_share,
    ema_update,
    mixed_loss,
)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _pair():
    """A labelled frame of three classes in vertical bands, +1 everywhere, and a -1 target.

    Labels: columns 0-1 class 1 (floor), 2-3 class 2 (wall), 4-5 class 4 (chair); the teacher's
    labels for the target are all 3 (ceiling).
    """
    ys = torch.tensor([[1, 1, 2, 2, 4, 4]] * 4).unsqueeze(0)  # (1, 4, 6)
    xs = torch.ones(1, 3, 4, 6)
    xt = -torch.ones(1, 3, 4, 6)
    pt = torch.full((1, 4, 6), 3)
    return xs, ys, xt, pt


def test_classmix_of_a_hand_built_pair_pastes_exactly_the_drawn_classes():
    """Three classes present -> ceil(3 / 2) = 2 pasted, the two the generator's randperm draws.

    The mix is the labelled frame (+1) on those classes' pixels and the target (-1) elsewhere;
    its labels are the true ones there and the teacher's (3) elsewhere.
    """
    xs, ys, xt, pt = _pair()
    g = torch.Generator().manual_seed(5)
    picked = torch.tensor([1, 2, 4])[torch.randperm(3, generator=torch.Generator()
                                                    .manual_seed(5))[:2]]
    xm, ym, m = classmix(xs, ys, xt, pt, g)
    want = torch.isin(ys, picked)
    assert torch.equal(m, want)
    assert int(m.sum()) == 2 * 4 * 2  # two bands of 4 x 2 pixels
    assert torch.equal(xm, torch.where(want[:, None], 1.0, -1.0).expand(1, 3, 4, 6))
    assert torch.equal(ym, torch.where(want, ys, 3))
    assert set(ym.unique().tolist()) == set(picked.tolist()) | {3}


def test_classmix_pastes_at_least_one_class_and_half_of_an_even_count():
    """One class present: it is pasted (the whole frame); four present: two of them."""
    g = torch.Generator().manual_seed(0)
    one = torch.full((1, 2, 2), 2)
    xm, ym, m = classmix(torch.ones(1, 3, 2, 2), one, -torch.ones(1, 3, 2, 2),
                         torch.zeros(1, 2, 2, dtype=torch.long), g)
    assert bool(m.all()) and torch.equal(ym, one) and bool((xm == 1).all())
    four = torch.tensor([[[0, 1], [2, 5]]])
    _, _, m = classmix(torch.ones(1, 3, 2, 2), four, -torch.ones(1, 3, 2, 2),
                       torch.zeros(1, 2, 2, dtype=torch.long), g)
    assert int(m.sum()) == 2


def test_jitter_scales_offsets_and_clamps_each_frame_with_its_own_draw():
    """Frame i: x * (1 + c (u_i - 0.5)) + b (v_i - 0.5), the u then v draws of the generator.

    Zero ranges leave the frames as they are; a frame pushed past 1 is clamped.
    (sim_training.data.jitter: DACS's mixed frames and the domain score's training frames.)
    """
    from sim_training.data import jitter

    x = torch.stack([torch.full((3, 2, 2), 0.5), torch.full((3, 2, 2), -0.2)])
    draws = torch.Generator().manual_seed(3)
    u, v = torch.rand(2, generator=draws), torch.rand(2, generator=draws)
    got = jitter(x, contrast=0.4, brightness=0.2, generator=torch.Generator().manual_seed(3))
    want = torch.tensor([0.5, -0.2]) * (1 + 0.4 * (u - 0.5)) + 0.2 * (v - 0.5)
    assert torch.allclose(got, want[:, None, None, None].expand_as(x))
    assert torch.equal(jitter(x, contrast=0.0, brightness=0.0, generator=draws), x)
    # seed 0 draws u = 0.496, v = 0.768: 1 + 4 (0.768 - 0.5) = 2.07, clamped to 1
    bright = jitter(torch.full((1, 3, 2, 2), 1.0), contrast=0.0, brightness=4.0,
                    generator=torch.Generator().manual_seed(0))
    assert bool((bright == 1.0).all())
    dim = jitter(torch.full((1, 3, 2, 2), -1.0), contrast=0.0, brightness=4.0,
                 generator=torch.Generator().manual_seed(1))  # v = 0.279: -1.88 -> -1
    assert bool((dim == -1.0).all())


def test_confident_share_counts_pixels_above_tau_per_frame():
    """Frame 0: 3 of 4 pixels at 0.98 > 0.968; frame 1: none (0.9)."""
    prob = torch.zeros(2, 2, 2, 2)
    prob[0, 0] = torch.tensor([[0.98, 0.98], [0.98, 0.5]])
    prob[0, 1] = 1 - prob[0, 0]
    prob[1, 0] = 0.9
    prob[1, 1] = 0.1
    assert torch.allclose(confident_share(prob, 0.968), torch.tensor([0.75, 0.0]))


def test_mixed_loss_weights_pasted_pixels_one_and_the_rest_the_share():
    """Uniform logits over C classes: each pixel's CE is ln C; two pixels pasted of four.

    Mean weighted CE = ln C * (2 * 1 + 2 * share) / 4.
    """
    c = 3
    logits = torch.zeros(1, c, 2, 2)
    labels = torch.tensor([[[0, 1], [2, 0]]])
    pasted = torch.tensor([[[True, False], [True, False]]])
    got = mixed_loss(logits, labels, pasted, torch.tensor([0.25]))
    assert math.isclose(float(got), math.log(c) * (2 + 2 * 0.25) / 4, rel_tol=1e-6)
    assert math.isclose(float(mixed_loss(logits, labels, pasted, torch.tensor([0.0]))),
                        math.log(c) / 2, rel_tol=1e-6)


def test_ema_update_moves_the_teacher_a_hundredth_and_copies_buffers():
    """Teacher weights 0, student 1, alpha 0.99 -> 0.01; BN statistics copied as they are."""
    student = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1), torch.nn.BatchNorm2d(1))
    teacher = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1), torch.nn.BatchNorm2d(1))
    for p in student.parameters():
        torch.nn.init.ones_(p)
    for p in teacher.parameters():
        torch.nn.init.zeros_(p)
    student[1].running_mean.fill_(7.0)
    ema_update(teacher, student, 0.99)
    for p in teacher.parameters():
        assert torch.allclose(p, torch.full_like(p, 0.01))
    assert float(teacher[1].running_mean) == 7.0


def test_dacs_refuses_bad_settings_and_keeps_its_teacher_out_of_the_gradient():
    """No targets, tau outside (0, 1), alpha outside [0, 1): refused by name."""
    model = torch.nn.Conv2d(3, 6, 1)
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match='no target frames'):
        DACS(model, frames[:0], seed=0)
    with pytest.raises(ValueError, match='dacs_tau: 1.5'):
        DACS(model, frames, seed=0, tau=1.5)
    with pytest.raises(ValueError, match='dacs_alpha: 1.0'):
        DACS(model, frames, seed=0, alpha=1.0)
    d = DACS(model, frames, seed=0)
    assert not any(p.requires_grad for p in d.teacher.parameters())
    loss, share = d.loss(model, torch.zeros(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long))
    assert loss.requires_grad and 0.0 <= share <= 1.0


# -- the trainer ---------------------------------------------------------------------------------


def test_trainer_dacs_run_records_it_resumes_exactly_and_refuses_other_dacs(tmp_path,
                                                                            monkeypatch):
    """A DACS run interrupted after its step-2 checkpoint resumes to the whole run's weights.

    The teacher and both DACS generators are in the checkpoint, so the resumed run is
    bit-identical; the card records dacs_real; another dacs_tau or no dacs_real is refused on
    resume; DACS changes what is learned.
    """
    from sim_training.train_segmenter import checkpoint_path, train
    from vr_goggles.weights import load_card

    cam = camera_folder(tmp_path / 'cam')

    def cfg(out, **kw):
        return resumable_config(tmp_path, out, **{'dacs_real': str(cam), **kw})

    train(cfg('whole'), command='pytest')
    card = load_card(tmp_path / 'whole')
    assert card.extra['config']['dacs_real'] == str(cam)
    assert f'unlabelled {cam}' in card.task and 'DACS, tau 0.968, alpha 0.99' in card.task
    interrupted_run(monkeypatch, DACS, 'loss', lambda: train(cfg('cut'), command='pytest'))
    ckpt = checkpoint_path(tmp_path / 'cut')
    assert 'dacs' in torch.load(ckpt, weights_only=True)
    with pytest.raises(ValueError, match=r'different run \(dacs_tau=0.968 vs 0.9\)'):
        train(cfg('cut', resume='auto', dacs_tau=0.9), command='pytest')
    with pytest.raises(ValueError, match=r'different run \(dacs_real='):
        train(cfg('cut', resume='auto', dacs_real=''), command='pytest')
    train(cfg('cut', resume='auto'), command='pytest')
    assert not ckpt.exists()
    whole, cut = weights(tmp_path / 'whole'), weights(tmp_path / 'cut')
    assert all(np.array_equal(whole[k], cut[k]) for k in whole)
    train(cfg('plain', dacs_real=''), command='pytest')
    plain = weights(tmp_path / 'plain')
    assert not all(np.array_equal(whole[k], plain[k]) for k in whole)


def test_fda_with_dacs_is_refused_in_one_line(tmp_path, capsys):
    """Asking for FDA and DACS together is refused (their combination is not measured).

    (A missing --dacs-real folder: test_fda.py's test of both flags.)
    """
    from sim_training import train_segmenter as seg

    cam = camera_folder(tmp_path / 'cam')
    assert seg.main(['--synthetic', '4', '--dacs-real', str(cam), '--fda-real', str(cam),
                     '--steps', '1']) == 2
    err = capsys.readouterr().err
    assert '--fda-real and --dacs-real: pick one' in err
    assert len(err.strip().splitlines()) == 1 and 'Traceback' not in err
