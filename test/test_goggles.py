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


class _LeftHalfFloor:
    """A stand-in segmenter: the left half of every frame is floor (class 1), the rest wall."""

    def __call__(self, frames):
        self.seen = frames[0]  # the camera frame it was given
        labels = np.full((len(frames), *SIZE), 2, np.uint8)
        labels[:, :, :SIZE[1] // 2] = 1
        return labels


def _prior(paint=None):
    from vr_goggles.goggles.floor_prior import FloorPrior, FloorRenderer

    return FloorPrior(_LeftHalfFloor(), 1, FloorRenderer(SIZE[0]), paint=paint)


def test_frame_is_translation_then_floor_prior_then_output_size(weights):
    """Goggles.frame owns the node's whole path: the same pixels as the steps done by hand."""
    from vr_goggles.image.preprocess import resize

    plain = Goggles.from_model(weights, engine='torch')
    g = plain.with_floor_prior(_prior(paint={2: (9, 8, 7)}))
    assert g.needs_pose and not plain.needs_pose and g.engine is plain.engine
    img, pose = _image(), (0.3, -0.2, 0.4)
    translated = plain(img)
    want = g.floor_prior(img, translated, pose)
    floor = g.floor_prior.floor_mask(img)
    assert floor.sum() > 0 and not np.array_equal(want[floor], translated[floor])
    assert (want[:, SIZE[1] // 2:] == (9, 8, 7)).all()  # the wall painted flat
    np.testing.assert_array_equal(g.frame(img, pose=pose), want)
    # no pose yet (no odometry): translated only, so the caller can count and warn
    np.testing.assert_array_equal(g.frame(img), translated)
    # output size: the model's, the camera frame's, or WxH, resized after the prior
    np.testing.assert_array_equal(g.frame(img, pose=pose, output_size='input'),
                                  resize(want, img.shape[:2]))
    assert g.frame(img, pose=pose, output_size=(20, 30)).shape == (20, 30, 3)
    np.testing.assert_array_equal(plain.frame(img), translated)
    # a BGR camera: translation and the prior's segmenter both see the frame as RGB
    bgr = np.ascontiguousarray(img[:, :, ::-1])
    np.testing.assert_array_equal(g.frame(bgr, pose=pose, color_order='bgr'), want)
    np.testing.assert_array_equal(g.floor_prior.segment.seen, img)


def test_paint_only_goggles_have_no_generator():
    """The semantic goggles: the camera frame resized, then rendered and painted by the prior."""
    from vr_goggles.image.preprocess import resize

    g = Goggles.paint_only(_prior(paint={2: (9, 8, 7)}))
    assert g.engine is None and g.input_size == SIZE and 'paint_only' in repr(g)
    img, pose = _image(), (1.0, 2.0, -0.3)
    want = g.floor_prior(img, resize(img, SIZE, keep_aspect=True), pose)
    np.testing.assert_array_equal(g.frame(img, pose=pose), want)


def test_floor_prior_of_another_size_is_refused(weights):
    from vr_goggles.goggles.floor_prior import FloorPrior, FloorRenderer

    g = Goggles.from_model(weights, engine='torch')
    with pytest.raises(ValueError, match='floor prior size'):
        g.with_floor_prior(FloorPrior(_LeftHalfFloor(), 1, FloorRenderer(SIZE[0] * 2)))


def test_output_size_parsing():
    from vr_goggles.goggles.facade import parse_output_size, target_size

    assert parse_output_size(' Input ') == 'input' and parse_output_size('128x96') == (96, 128)
    with pytest.raises(ValueError, match='output_size'):
        parse_output_size('banana')
    assert target_size('model', (480, 640), (64, 64)) == (64, 64)
    assert target_size((96, 128), (480, 640), (64, 64)) == (96, 128)
