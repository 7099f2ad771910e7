"""Shapes, keyword-only sizes, registry and ONNX export of the translator-side networks."""

from __future__ import annotations

import io

import pytest
import torch

from vr_goggles.image.semantics import NUM_CLASSES
from vr_goggles.models import build
from vr_goggles.models.discriminator import PatchDiscriminator
from vr_goggles.models.generator import BlurPool2d, ResizeConv2d, ResnetGenerator
from vr_goggles.models.segmenter import SegmentationNet

torch.set_num_threads(1)


@pytest.mark.parametrize('antialias,blur_first', [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize('upsample', ['transpose', 'resize'])
def test_generator_shapes(antialias, blur_first, upsample):
    """Generator shapes."""
    g = ResnetGenerator(ngf=4, n_blocks=1, n_down=2, antialias=antialias,
                        blur_first=blur_first, upsample=upsample)
    y = g(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 3, 32, 32)
    assert float(y.abs().max()) <= 1.0
    assert g.stride == 4


def test_discriminator_and_segmenter_shapes():
    """Discriminator and segmenter shapes."""
    d = PatchDiscriminator(ndf=8, n_layers=3)
    assert d(torch.randn(1, 3, 64, 64)).shape == (1, 1, 6, 6)
    d2 = PatchDiscriminator(in_channels=64, ndf=8, n_layers=1)
    assert d2(torch.randn(1, 64, 16, 16)).shape[1] == 1
    s = SegmentationNet(width=8)
    assert s(torch.randn(2, 3, 64, 64)).shape == (2, NUM_CLASSES, 64, 64)
    assert s.features(torch.randn(1, 3, 64, 64)).shape == (1, s.feature_channels, 16, 16)


def test_sizes_are_keyword_only_and_registered():
    """Sizes are keyword only and registered."""
    with pytest.raises(TypeError):
        ResnetGenerator(3, 3)  # type: ignore[misc]
    with pytest.raises(TypeError):
        PatchDiscriminator(3)  # type: ignore[misc]
    with pytest.raises(TypeError):
        SegmentationNet(3)  # type: ignore[misc]
    assert isinstance(build('PatchDiscriminator', ndf=4, n_layers=1), PatchDiscriminator)
    assert isinstance(build('SegmentationNet', width=4), SegmentationNet)
    with pytest.raises(ValueError):
        ResnetGenerator(upsample='bicubic')
    with pytest.raises(ValueError):
        ResnetGenerator(blur_first=True)  # blur_first without antialias


def test_blur_first_puts_the_conv_after_the_subsampling():
    """With blur_first every down conv runs on the BlurPool's half-size output."""
    g = ResnetGenerator(ngf=4, n_blocks=0, n_down=2, antialias=True, blur_first=True)
    mods = list(g.net)
    blurs = [i for i, m in enumerate(mods) if isinstance(m, BlurPool2d)]
    assert len(blurs) == 2
    assert all(isinstance(mods[i + 1], torch.nn.Conv2d) and mods[i + 1].stride == (1, 1)
               for i in blurs)


@pytest.mark.parametrize('h,w', [(8, 10), (7, 9)])
def test_blurpool_is_the_reflect_padded_binomial_depthwise_conv(h, w):
    """BlurPool2d = [1, 2, 1]^T [1, 2, 1] / 16 depthwise conv, stride 2, reflection padding.

    Even sizes take the concatenation path, odd ones the padded one; gradients match too.
    """
    torch.manual_seed(0)
    x = torch.randn(2, 3, h, w, dtype=torch.float64, requires_grad=True)
    k1 = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    k = (k1[:, None] * k1[None, :] / 16).expand(3, 1, 3, 3)
    ref = torch.nn.functional.conv2d(
        torch.nn.functional.pad(x, (1, 1, 1, 1), mode='reflect'), k, stride=2, groups=3)
    y = BlurPool2d(channels=3)(x)
    assert y.dtype == torch.float64 and y.shape == ref.shape == (2, 3, (h + 1) // 2, (w + 1) // 2)
    assert torch.allclose(y, ref.float().double(), atol=1e-6)
    g = torch.autograd.grad(y.square().sum(), x)[0]
    g_ref = torch.autograd.grad(ref.square().sum(), x)[0]
    assert torch.allclose(g, g_ref, atol=1e-5)


def test_resize_conv_equals_nearest_resize_then_reflect_padded_conv():
    """ResizeConv2d (one low-res conv + pixel shuffle) = nn.Upsample + 3x3 conv, grads too."""
    torch.manual_seed(0)
    m = ResizeConv2d(5, 3)
    x = torch.randn(2, 5, 6, 7, requires_grad=True)
    ref = torch.nn.functional.conv2d(torch.nn.functional.pad(
        torch.nn.functional.interpolate(x, scale_factor=2, mode='nearest'), (1, 1, 1, 1),
        mode='reflect'), m.weight, m.bias)
    y = m(x)
    assert y.shape == (2, 3, 12, 14)
    assert torch.allclose(y, ref, atol=1e-5)
    g_fast = torch.autograd.grad(y.square().sum(), [x, m.weight])
    g_ref = torch.autograd.grad(ref.square().sum(), [x, m.weight])
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(g_fast, g_ref, strict=True))


def test_resize_conv_no_grad_weight_cache_follows_weight_updates():
    """Inference reuses the phase weight until the weight changes in place (an optimiser step)."""
    torch.manual_seed(0)
    m = ResizeConv2d(4, 2)
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        first = m(x)
        assert m._inference_phase_weight() is m._inference_phase_weight()  # reused
        m.weight.mul_(2.0)
        second = m(x)
    assert torch.allclose(second, m(x), atol=1e-6)  # the grad path agrees after the update
    assert not torch.allclose(first, second)


@pytest.mark.parametrize('kwargs', [{}, {'antialias': True, 'upsample': 'resize'},
                                    {'antialias': True, 'blur_first': True,
                                     'upsample': 'resize'}])
def test_generator_exports_to_onnx_opset17(kwargs):
    """Generator exports to onnx opset17."""
    pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    g = ResnetGenerator(ngf=4, n_blocks=1, n_down=2, **kwargs).eval()
    x = torch.randn(1, 3, 32, 32)
    buf = io.BytesIO()
    torch.onnx.export(g, (x,), buf, opset_version=17, dynamo=False,
                      input_names=['input'], output_names=['output'])
    sess = ort.InferenceSession(buf.getvalue(), providers=['CPUExecutionProvider'])
    (out,) = sess.run(None, {'input': x.numpy()})
    with torch.no_grad():
        assert abs(out - g(x).numpy()).max() < 1e-4


def test_train_segmenter_tiny_saves_loadable_card(tmp_path):
    """The segmenter trainer learns synthetic labels and writes a loadable card."""
    from sim_training.train_segmenter import SegmenterConfig, train
    from vr_goggles.weights import build_module

    cfg = SegmenterConfig(synthetic=24, size=16, width=4, steps=100, batch_size=4, lr=5e-3,
                          out=str(tmp_path / 'seg'))
    model, metrics = train(cfg, command='pytest')
    assert metrics['sim_val']['miou'] > 20
    loaded, card = build_module(tmp_path / 'seg')
    assert card.architecture == 'SegmentationNet' and card.kwargs['width'] == 4
    assert not any('num_batches_tracked' in k for k in loaded.state_dict())
    x = torch.randn(1, 3, 16, 16)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_train_segmenter_class_weights_are_checked_first():
    """A bad --class-weights is refused, naming the flag, before any data is read."""
    from sim_training.train_segmenter import SegmenterConfig, train

    with pytest.raises(ValueError, match="class_weights: expected name=weight .*'sofa=2'"):
        train(SegmenterConfig(data='/nonexistent', class_weights='sofa=2'), command='pytest')
    with pytest.raises(ValueError, match='class_weights: weight of chair must be >= 0'):
        train(SegmenterConfig(data='/nonexistent', class_weights='chair=-1'), command='pytest')


def test_train_segmenter_class_weights_reach_the_loss():
    """Same seed and data: a class weight changes what one step learns, a weight of 1 not."""
    from sim_training.train_segmenter import SegmenterConfig, train

    def weights_after(spec):
        cfg = SegmenterConfig(synthetic=8, size=16, width=4, steps=2, batch_size=4,
                              class_weights=spec)
        model, _ = train(cfg, command='pytest')
        return torch.cat([t.flatten() for t in model.state_dict().values()
                          if t.is_floating_point()])

    plain = weights_after('')
    assert torch.equal(plain, weights_after('floor=1'))
    assert not torch.equal(plain, weights_after('floor=5'))


def test_train_segmenter_resumes_an_interrupted_run_to_the_same_weights(tmp_path, monkeypatch):
    """An interrupted run resumed with --resume auto ends bit-identical to a whole one.

    It is killed after its step-2 checkpoint; the checkpoint is removed once the weights are
    saved.
    """
    import numpy as np
    from segmenter_runs import interrupted_run, resumable_config, weights

    from sim_training.data import FrameSampler
    from sim_training.train_segmenter import checkpoint_path, train

    def cfg(out, **kw):
        return resumable_config(tmp_path, out, **kw)

    train(cfg('whole', tb=str(tmp_path / 'tb')), command='pytest')
    assert not checkpoint_path(tmp_path / 'whole').exists()
    assert list((tmp_path / 'tb').glob('events.out.tfevents.*'))

    interrupted_run(monkeypatch, FrameSampler, 'sample',
                    lambda: train(cfg('cut'), command='pytest'))
    ckpt = checkpoint_path(tmp_path / 'cut')
    assert ckpt.is_file() and torch.load(ckpt, weights_only=True)['step'] == 2
    _, metrics = train(cfg('cut', resume='auto'), command='pytest')
    assert not ckpt.exists() and metrics['steps'] == 6
    whole, cut = weights(tmp_path / 'whole'), weights(tmp_path / 'cut')
    assert whole.keys() == cut.keys()
    assert all(np.array_equal(whole[k], cut[k]) for k in whole)


def test_train_segmenter_refuses_a_corrupt_or_foreign_checkpoint(tmp_path):
    """A checkpoint that does not load, or comes from other settings, is refused by path."""
    from sim_training.train_segmenter import SegmenterConfig, checkpoint_path, train

    base = dict(synthetic=8, size=16, width=4, batch_size=4, ckpt_every=2,
                out=str(tmp_path / 'seg'))
    ckpt = checkpoint_path(tmp_path / 'seg')
    ckpt.write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match=f'{ckpt}: unreadable checkpoint'):
        train(SegmenterConfig(steps=4, resume='auto', **base), command='pytest')
    ckpt.unlink()
    with pytest.raises(ValueError, match='no such checkpoint'):
        train(SegmenterConfig(steps=4, resume=str(ckpt), **base), command='pytest')
    from sim_training import train_segmenter

    state = {'config': vars(SegmenterConfig(steps=4, **base)), 'step': 2}
    train_segmenter._save_checkpoint(ckpt, state)
    with pytest.raises(ValueError, match=r'checkpoint of a different run \(steps=4 vs 6\)'):
        train(SegmenterConfig(steps=6, resume='auto', **base), command='pytest')


def test_train_segmenter_holds_out_the_tail_of_each_source():
    """Several --data sources: every source gives its last val_fraction to validation."""
    import numpy as np

    from sim_training.data import FrameSet
    from sim_training.train_segmenter import _split

    def frames(n, value, name):
        img = np.full((n, 4, 4, 3), value, np.uint8)
        return FrameSet(img, np.full((n, 4, 4), value, np.uint8), name)

    train_set, val_set = _split([frames(10, 1, 'sim'), frames(20, 2, 'rand')], 0.1)
    assert len(train_set) == 9 + 18 and len(val_set) == 1 + 2
    assert val_set.labels[:, 0, 0].tolist() == [1, 2, 2]
    assert train_set.name == 'sim+rand' and val_set.name == 'sim+rand:val'
