"""Goggles facade: preprocessing + engine + postprocessing, identical for every caller."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import KWARGS, SIZE, save_tiny_generator
import torch

from vr_goggles.goggles import Goggles
from vr_goggles.image.preprocess import Preprocessor
from vr_goggles.models import build
from vr_goggles.weights import ModelCard, WeightsError


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv('VR_GOGGLES_CACHE_DIR', str(tmp_path / 'cache'))


@pytest.fixture
def weights(tmp_path):
    """Tiny random-init generator saved with its card in a tmp dir."""
    return save_tiny_generator(tmp_path / 'tiny_gen', seed=1)


def _image(h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_translate_one_image(weights):
    """Any-size image -> uint8 RGB at the model size."""
    g = Goggles.from_model(weights, engine='torch')
    assert (g.engine.name, g.engine.device, g.engine.precision) == ('torch', 'cpu', 'fp32')
    assert g.card.name == 'tiny_gen' and g.preprocessor == Preprocessor(size=SIZE)
    out = g(_image())
    assert out.shape == (*SIZE, 3) and out.dtype == np.uint8


def test_matches_manual_pipeline_and_color_order(weights):
    """Same as preprocess -> module -> postprocess."""
    g = Goggles.from_model(weights, engine='torch')
    img = _image()
    pre = Preprocessor(size=SIZE)
    module, _ = __import__('vr_goggles.weights', fromlist=['build_module']).build_module(weights)
    with torch.no_grad():
        want = pre.postprocess(module(torch.from_numpy(pre(img))).numpy())[0]
    np.testing.assert_array_equal(g(img), want)
    np.testing.assert_array_equal(g(np.ascontiguousarray(img[:, :, ::-1]), 'bgr'), want)


def test_translate_batch_and_engines_agree(weights):
    """Batches; torch/onnxruntime/auto agree."""
    imgs = [_image(seed=i) for i in range(3)]
    t = Goggles.from_model(weights, engine='torch').translate_batch(imgs)
    o = Goggles.from_model(weights, engine='onnxruntime').translate_batch(imgs)
    a = Goggles.from_model(weights)  # auto, device cpu
    assert t.shape == (3, *SIZE, 3)
    assert np.max(np.abs(t.astype(int) - o.astype(int))) <= 1  # 1e-3 in [-1, 1] < 1 level
    assert a.engine.device == 'cpu'
    assert Goggles.from_model(weights, engine='torch').translate_batch([]).shape == \
        (0, *SIZE, 3)


def test_static_batch_engine_is_chunked_and_padded(weights):
    """Static-batch engines get padded chunks."""
    g = Goggles.from_model(weights, engine='torch')
    inner = g.engine
    calls = []

    class Static:
        name, device, precision, batch_size, input_size = 'fake', 'cpu', 'fp32', 2, SIZE

        def __call__(self, batch):
            calls.append(batch.shape[0])
            assert batch.shape[0] == 2
            return inner(batch)

    g.engine = Static()
    imgs = [_image(seed=i) for i in range(5)]
    out = g.translate_batch(imgs)
    assert calls == [2, 2, 2] and out.shape == (5, *SIZE, 3)
    g.engine = inner
    np.testing.assert_array_equal(out, g.translate_batch(imgs))


def test_bf16_goggles_close(weights):
    """bf16 output within the stated 0.05 tolerance."""
    img = _image()
    a = Goggles.from_model(weights, engine='torch')(img).astype(int)
    b = Goggles.from_model(weights, engine='torch', precision='bf16')(img).astype(int)
    assert np.max(np.abs(a - b)) <= 0.05 * 127.5 + 1


def test_bad_model_errors_name_file(tmp_path, weights):
    """Missing/corrupt weights and non-generators are refused."""
    with pytest.raises(WeightsError, match='nope'):
        Goggles.from_model(tmp_path / 'nope')
    weights.write_bytes(weights.read_bytes()[:20])
    with pytest.raises(WeightsError, match='tiny_gen.safetensors'):
        Goggles.from_model(weights)
    disc_card = ModelCard(name='seg', architecture='NavActor', kwargs={}, input_size=list(SIZE))
    with pytest.raises(ValueError, match='not an image generator'):
        Goggles.from_module(torch.nn.Identity(), disc_card, engine='torch')


def test_unknown_engine(weights):
    """An unknown engine name is a ValueError."""
    with pytest.raises(ValueError, match='engine'):
        Goggles.from_model(weights, engine='tvm')


def test_from_module(weights):
    """An in-memory module with its own card size works."""
    torch.manual_seed(0)
    module = build('ResnetGenerator', **KWARGS)
    card = ModelCard(name='mem', architecture='ResnetGenerator', kwargs=dict(KWARGS),
                     input_size=[64, 64])
    g = Goggles.from_module(module, card, engine='torch')
    assert g(_image()).shape == (64, 64, 3) and 'Goggles(' in repr(g)
