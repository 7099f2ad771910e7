"""Shapes, keyword-only sizes, registry and ONNX export of the translator-side networks."""

from __future__ import annotations

import io

import pytest
import torch

from vr_goggles.models import build
from vr_goggles.models.discriminator import PatchDiscriminator
from vr_goggles.models.generator import ResnetGenerator
from vr_goggles.models.segmenter import SegmentationNet
from vr_goggles.semantics import NUM_CLASSES

torch.set_num_threads(1)


@pytest.mark.parametrize('antialias', [False, True])
@pytest.mark.parametrize('upsample', ['transpose', 'resize'])
def test_generator_shapes(antialias, upsample):
    """Generator shapes."""
    g = ResnetGenerator(ngf=4, n_blocks=1, n_down=2, antialias=antialias, upsample=upsample)
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
        ResnetGenerator(upsample='bilinear')


@pytest.mark.parametrize('kwargs', [{}, {'antialias': True, 'upsample': 'resize'}])
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
