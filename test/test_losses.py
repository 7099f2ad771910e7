"""Known-answer tests for every translator loss term, the shift metric and the image pool."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
import torch.nn.functional as F

from sim_training import losses as L
from sim_training.image_pool import ImagePool
from vr_goggles.goggles import quality as M

torch.set_num_threads(1)


def test_lsgan_label_smoothing_targets():
    """Lsgan label smoothing targets."""
    real = torch.full((2, 1, 3, 3), 0.9)
    fake = torch.zeros(2, 1, 3, 3)
    assert float(L.lsgan_d_loss(real, fake, real_label=0.9)) == pytest.approx(0.0)
    # real scored 1.0 is *penalised* under smoothing: 0.5 * (1 - 0.9)^2
    assert float(L.lsgan_d_loss(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2),
                                real_label=0.9)) == pytest.approx(0.005)
    assert float(L.lsgan_d_loss(real, torch.ones_like(fake), real_label=0.9)) == \
        pytest.approx(0.5)
    assert float(L.lsgan_g_loss(torch.zeros(1, 1, 2, 2), target=1.0)) == pytest.approx(1.0)
    assert float(L.lsgan_g_loss(torch.full((1, 1, 2, 2), 0.5), target=1.0)) == \
        pytest.approx(0.25)


def test_cycle_identity_selfreg_known_values():
    """Cycle identity selfreg known values."""
    x = torch.zeros(1, 3, 8, 8)
    y = torch.full((1, 3, 8, 8), 0.5)
    assert float(L.cycle_loss(y, x)) == pytest.approx(0.5)
    assert float(L.identity_loss(x, x)) == 0.0
    assert float(L.self_regularization(y, x, space='pixel')) == pytest.approx(0.5)
    # pooled space ignores zero-mean texture inside each 4x4 cell
    tex = torch.zeros(1, 3, 8, 8)
    tex[..., ::2, :] = 0.3
    tex[..., 1::2, :] = -0.3
    assert float(L.self_regularization(tex, x, space='pooled')) == pytest.approx(0.0, abs=1e-7)
    assert float(L.self_regularization(tex, x, space='pixel')) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        L.self_regularization(x, x, space='vgg')


def test_pseudo_labels_ignore_low_confidence():
    """Pseudo labels ignore low confidence."""
    logits = torch.zeros(1, 3, 1, 2)
    logits[0, 2, 0, 0] = 10.0  # confident class 2
    logits[0, 1, 0, 1] = 0.1   # nearly uniform -> ignored
    lab = L.pseudo_labels(logits, threshold=0.9)
    assert lab.tolist() == [[[2, L.IGNORE_INDEX]]]


def test_semantic_loss_uses_ignore_index():
    """Semantic loss uses ignore index."""
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 5, requires_grad=True)
    labels = torch.randint(0, 4, (2, 5, 5))
    masked = labels.clone()
    masked[:, :2] = L.IGNORE_INDEX
    got = L.semantic_loss(logits, masked)
    keep = masked != L.IGNORE_INDEX
    want = F.cross_entropy(logits.permute(0, 2, 3, 1)[keep], labels[keep])
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    # every pixel ignored: zero loss that still backpropagates (no NaN)
    none = torch.full_like(labels, L.IGNORE_INDEX)
    z = L.semantic_loss(logits, none)
    z.backward()
    assert float(z) == 0.0 and torch.isfinite(logits.grad).all()


def test_semantic_loss_class_weights_weighted_mean():
    """Per-class weights give torch's weighted mean: sum(w_y * nll) / sum(w_y)."""
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 0, 0, 0] = 2.0             # pixel 0: class 0 favoured, label 0
    logits[0, 0, 0, 1] = 2.0             # pixel 1: class 0 favoured, label 1 (wrong)
    labels = torch.tensor([[[0, 1]]])
    nll0 = -F.log_softmax(torch.tensor([2.0, 0.0]), 0)[0]
    nll1 = -F.log_softmax(torch.tensor([2.0, 0.0]), 0)[1]
    plain = L.semantic_loss(logits, labels)
    assert float(plain) == pytest.approx(float((nll0 + nll1) / 2), rel=1e-6)
    got = L.semantic_loss(logits, labels, weight=torch.tensor([1.0, 4.0]))
    assert float(got) == pytest.approx(float((nll0 + 4 * nll1) / 5), rel=1e-6)
    assert float(got) > float(plain)     # the up-weighted class is the misclassified one


class _Stride2(nn.Module):
    """Stride-2 conv then nearest upsampling: output depends on input position mod 2."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.down = nn.Conv2d(3, 3, 2, stride=2)

    def forward(self, x):
        return F.interpolate(self.down(x), scale_factor=2.0, mode='nearest')


def test_objective_terms_known_values():
    """Each paper term sums its primitive over both translation directions."""
    zero, half = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    one = torch.ones(1, 3, 4, 4)
    # LSGAN to target 1: D says 0 on one side (1.0), 0.5 on the other (0.25)
    assert float(L.adversarial(torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5),
                               gen_target=1.0)) == pytest.approx(1.25)
    assert float(L.feature_adversarial(torch.zeros(1, 1, 2, 2), gen_target=0.5)) == \
        pytest.approx(0.25)
    # |rec_real - x_real| = 0.5, |rec_sim - x_sim| = 1
    assert float(L.cycle(half, zero, one, zero)) == pytest.approx(1.5)
    assert float(L.identity(zero, zero, half, one)) == pytest.approx(0.5)
    assert float(L.selfreg(half, zero, zero, one, 'pixel')) == pytest.approx(1.5)
    logits = torch.zeros(1, 3, 1, 2)
    logits[0, 1] = 10.0                                   # confidently class 1 everywhere
    right, wrong = torch.ones(1, 1, 2, dtype=torch.long), torch.zeros(1, 1, 2, dtype=torch.long)
    for term in (L.semantic_sim, L.semantic_real, L.semantic_cycle):
        assert float(term(logits, right, None)) == pytest.approx(0.0, abs=1e-4)
        assert float(term(logits, wrong, None)) == pytest.approx(
            float(L.semantic_loss(logits, wrong)))
    weight = torch.tensor([1.0, 3.0, 1.0])
    assert float(L.semantic_real(logits, wrong, weight)) == pytest.approx(
        float(L.semantic_loss(logits, wrong, weight=weight)))


def test_shift_loss_zero_for_equivariant_maps_positive_for_stride2():
    """Shift loss zero for equivariant maps positive for stride2."""
    torch.manual_seed(1)
    x = torch.randn(2, 3, 16, 16)
    conv1x1 = nn.Conv2d(3, 3, 1)
    for i, j in [(1, 0), (0, 3), (2, 1), (3, 3)]:
        assert float(L.shift_loss(lambda t: t, x, i, j)) == 0.0
        assert float(L.shift_loss(conv1x1, x, i, j)) == pytest.approx(0.0, abs=1e-12)
    net = _Stride2()
    assert float(L.shift_loss(net, x, 1, 1)) > 1e-3
    assert float(L.shift_loss(net, x, 0, 0)) == 0.0
    # multiples of the stride are equivariant away from the wrap-around border
    y = net(x)
    a, b = M.overlap_pair(y, net(M.translate(x, 2, 2)), 2, 2)
    assert torch.allclose(a, b, atol=1e-6)
    # the precomputed-output path gives the same value
    assert float(L.shift_loss(net, x, 1, 2, y=y)) == pytest.approx(
        float(L.shift_loss(net, x, 1, 2)))


def test_shift_error_metric_torch_and_numpy():
    """Shift error metric torch and numpy."""
    x = torch.randn(1, 3, 8, 8)
    assert M.shift_error(lambda t: t, x, 4) == 0.0
    assert M.shift_error(lambda t: t * 2 + 1, x.numpy(), 4) == 0.0
    assert M.shift_error(_Stride2(), x, 2) > 0.0
    assert len(M.shift_pairs(4)) == 15
    with pytest.raises(ValueError):
        M.shift_error(lambda t: t, x, 1)


def test_miou_and_flicker_known_values():
    """Miou and flicker known values."""
    target = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1]])
    conf = M.confusion_matrix(pred, target, 3)
    assert conf.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    assert M.mean_iou(conf) == pytest.approx((0.5 + 2 / 3) / 2)  # class 2 absent: not counted
    frames = torch.randn(4, 3, 4, 4)
    assert M.flicker(frames, frames) == pytest.approx(1.0)
    assert M.flicker(frames * 0 + 0.3, frames) == 0.0


def test_object_presence_separates_painted_from_erased_objects():
    """Frames: empty + painted, empty + clean, present + found, present + erased."""
    target = np.zeros((4, 8, 8), np.int64)
    target[2:, :6, :] = 4                       # 48 chair pixels in frames 2 and 3
    pred = np.zeros_like(target)
    pred[0, :2, :] = 4                          # 16 painted into an empty frame
    pred[2, :6, :] = 4                          # found exactly
    pred[3, :1, :] = 4                          # 8 left of 48: below min_found, erased
    got = M.object_presence(pred, target, 4, min_found=15, min_true=40)
    assert got['false_frames'] == 0.5 and got['missed_frames'] == 0.5
    assert got['empty_frames'] == 2 and got['present_frames'] == 2
    assert got['precision'] == round(56 / 72, 4) and got['recall'] == round(56 / 96, 4)
    none = M.object_presence(target[:2], target[:2], 4)
    assert none['missed_frames'] is None and none['false_frames'] == 0.0


def test_image_pool_returns_old_samples_and_resumes():
    """Image pool returns old samples and resumes."""
    pool = ImagePool(3, seed=0)
    for k in range(3):  # filling phase: returns the input
        out = pool.query(torch.full((1, 1, 1, 1), float(k)))
        assert float(out) == k
    seen_old = 0
    for k in range(3, 40):
        out = pool.query(torch.full((2, 1, 1, 1), float(k)))
        assert out.shape == (2, 1, 1, 1)
        n_old = int((out < k).sum())
        assert n_old == 1  # exactly half of a batch of 2 comes from history
        seen_old += n_old
    assert seen_old > 0
    clone = ImagePool(3, seed=99)
    clone.load_state_dict(pool.state_dict())
    batch = torch.full((2, 1, 1, 1), 100.0)
    assert torch.equal(pool.query(batch), clone.query(batch))
    assert torch.equal(ImagePool(0).query(batch), batch)


def test_image_pool_batch_one_is_a_fair_coin():
    """Image pool batch one is a fair coin."""
    pool = ImagePool(5, seed=0)
    olds = 0
    for k in range(205):
        olds += int(float(pool.query(torch.full((1, 1, 1, 1), float(k)))) < k)
    assert 60 < olds < 140
