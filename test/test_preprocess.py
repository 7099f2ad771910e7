"""vr_goggles.image.preprocess: the one resize/colour/normalise path vs known answers."""

from __future__ import annotations

import numpy as np
import pytest

from vr_goggles.image.preprocess import (
    NORMALIZATION,
    Preprocessor,
    center_crop_to_aspect,
    denormalize,
    normalize,
    resize,
    to_rgb,
)


def test_normalize_known_values_and_layout():
    """0 -> -1, 255 -> +1, and HWC becomes NCHW float32."""
    img = np.zeros((2, 3, 3), np.uint8)
    img[0, 1] = [0, 255, 51]
    out = normalize(img)
    assert out.shape == (1, 3, 2, 3) and out.dtype == np.float32 and out.flags.c_contiguous
    assert out[0, :, 0, 1].tolist() == pytest.approx([-1.0, 1.0, 51 / 127.5 - 1.0])
    assert out.min() >= -1.0 and out.max() <= 1.0


def test_normalize_denormalize_exact_round_trip_every_value():
    """Every uint8 value survives normalize -> denormalize exactly (batch layout too)."""
    values = np.arange(256, dtype=np.uint8)
    img = np.stack([values, values[::-1], np.roll(values, 7)], axis=-1).reshape(2, 8, 16, 3)
    out = denormalize(normalize(img))
    assert out.dtype == np.uint8 and out.shape == img.shape
    np.testing.assert_array_equal(out, img)


def test_denormalize_clips_and_rounds():
    """Out-of-range network outputs saturate instead of wrapping around."""
    t = np.array([-3.0, -1.0, 0.0, 1.0, 7.0, 0.5 / 127.5 - 1.0], np.float32)
    out = denormalize(np.broadcast_to(t, (3, 1, 6)).copy())
    assert out.shape == (1, 1, 6, 3)
    assert out[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255, 0]


def test_normalization_constants_match_the_maths():
    """The card's mean/std describe exactly what normalize computes."""
    x = np.array([[[10, 128, 250]]], np.uint8)
    mean = np.array(NORMALIZATION['mean'])
    std = np.array(NORMALIZATION['std'])
    want = (x[0, 0] / 255.0 - mean) / std
    np.testing.assert_allclose(normalize(x)[0, :, 0, 0], want, atol=1e-6)


@pytest.mark.parametrize('arg, fn, match', [
    (np.zeros((2, 2, 4), np.uint8), normalize, r'images: expected \(N, H, W, 3\)'),
    (np.zeros((2, 2, 3), np.float32), normalize, 'images: expected dtype uint8'),
    (np.zeros((2, 2), np.uint8), normalize, 'images'),
    (np.zeros((1, 4, 2, 2), np.float32), denormalize, r'tensor: expected \(N, 3, H, W\)'),
    (np.zeros((3, 2), np.float32), denormalize, 'tensor'),
])
def test_normalize_errors_name_the_argument(arg, fn, match):
    """Wrong shapes/dtypes are ValueErrors naming the argument."""
    with pytest.raises(ValueError, match=match):
        fn(arg)


def blocks(h, w, block=2):
    """A (h, w, 3) image of distinct values, and its ``block``x``block`` means."""
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8)
    means = img.reshape(h // block, block, w // block, block, 3).astype(np.float64).mean((1, 3))
    return img, means


def test_resize_2x_downsample_is_block_mean():
    """INTER_AREA at exactly 1/2 is the mean of each 2x2 block (anti-aliased)."""
    img, means = blocks(8, 12)
    out = resize(img, (4, 6))
    assert out.shape == (4, 6, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(np.float64) - means).max() <= 0.5 + 1e-9


def test_resize_constant_and_identity():
    """A flat image stays flat at any size; same size returns the image unchanged."""
    flat = np.full((10, 7, 3), 77, np.uint8)
    for size in ((3, 3), (20, 31), (10, 7)):
        out = resize(flat, size)
        assert out.shape == size + (3,) and (out == 77).all()
    img, _ = blocks(6, 6)
    np.testing.assert_array_equal(resize(img, (6, 6)), img)


def test_resize_upsample_2x_bilinear_known_answer():
    """Enlarging uses bilinear: a 2-pixel ramp 0..200 becomes 0, 50, 150, 200."""
    img = np.zeros((1, 2, 3), np.uint8)
    img[0, 1] = 200
    out = resize(img, (1, 4))
    assert out[0, :, 0].tolist() == [0, 50, 150, 200]


def test_resize_gray_keeps_channel_axis():
    """Gray input comes back as (h, w, 1), not a squeezed (h, w)."""
    out = resize(np.zeros((8, 8), np.uint8), (4, 4))
    assert out.shape == (4, 4, 1)


def test_keep_aspect_crops_the_centre():
    """A 4x8 image into a square keeps the middle 4 columns, unstretched."""
    img = np.zeros((4, 8, 3), np.uint8)
    img[:, :, 0] = np.arange(8)[None, :] * 10  # column index * 10
    crop = center_crop_to_aspect(img, (4, 4))
    assert crop[0, :, 0].tolist() == [20, 30, 40, 50]
    np.testing.assert_array_equal(resize(img, (4, 4), keep_aspect=True), crop)
    # Without keep_aspect the whole width is squeezed in instead.
    assert resize(img, (4, 4))[0, 0, 0] != 20


def test_keep_aspect_tall_image():
    """A tall image loses rows top and bottom equally."""
    img = np.repeat((np.arange(10) * 10).astype(np.uint8)[:, None, None], 5, axis=1)
    img = np.repeat(img, 3, axis=2)  # (10, 5, 3), row index * 10
    crop = center_crop_to_aspect(img, (1, 1))
    assert crop.shape == (5, 5, 3)
    assert crop[:, 0, 0].tolist() == [20, 30, 40, 50, 60]


@pytest.mark.parametrize('size', [(0, 4), (4, -1)])
def test_resize_bad_size(size):
    """Non-positive target sizes name ``size``."""
    with pytest.raises(ValueError, match='size'):
        resize(np.zeros((4, 4, 3), np.uint8), size)


@pytest.mark.parametrize('img', [np.zeros((4, 4, 2), np.uint8), np.zeros((4,), np.uint8),
                                 np.zeros((0, 4, 3), np.uint8)])
def test_resize_bad_image(img):
    """Images of unusable shape name ``image``."""
    with pytest.raises(ValueError, match='image'):
        resize(img, (2, 2))


def test_to_rgb_orders():
    """bgr/bgra flip, rgba drops alpha, gray replicates."""
    px = np.array([[[1, 2, 3, 4]]], np.uint8)
    assert to_rgb(px[..., :3], 'rgb').tolist() == [[[1, 2, 3]]]
    assert to_rgb(px[..., :3], 'bgr').tolist() == [[[3, 2, 1]]]
    assert to_rgb(px, 'rgba').tolist() == [[[1, 2, 3]]]
    assert to_rgb(px, 'BGRA').tolist() == [[[3, 2, 1]]]
    assert to_rgb(np.array([[9]], np.uint8), 'gray').tolist() == [[[9, 9, 9]]]
    assert to_rgb(np.array([[[9]]], np.uint8), 'rgb').tolist() == [[[9, 9, 9]]]


def test_to_rgb_errors():
    """Unknown orders and bad shapes are ValueErrors naming the argument."""
    with pytest.raises(ValueError, match="color_order: unsupported value 'yuv'"):
        to_rgb(np.zeros((2, 2, 3), np.uint8), 'yuv')
    with pytest.raises(ValueError, match='image'):
        to_rgb(np.zeros((2, 2, 5), np.uint8), 'rgb')


def test_preprocessor_pipeline():
    """A BGR camera frame of any size -> normalised model input -> RGB image at a given size."""
    pre = Preprocessor(size=(4, 4))
    frame = np.zeros((6, 12, 3), np.uint8)
    frame[:, :, 0] = 255  # blue in BGR
    x = pre(frame, color_order='bgr')
    assert x.shape == (1, 3, 4, 4) and x.dtype == np.float32
    assert x[0, 2].min() == 1.0 and x[0, 0].max() == -1.0  # blue channel full, red empty
    batch = pre([frame, frame[:, ::-1]], color_order='bgr')
    assert batch.shape == (2, 3, 4, 4)
    out = pre.postprocess(x, output_size=(8, 8))
    assert out.shape == (1, 8, 8, 3) and (out[..., 2] == 255).all()
    assert pre.postprocess(x).shape == (1, 4, 4, 3)


def test_preprocessor_card_is_json_ready():
    """The card records size as a list plus the normalisation."""
    import json

    card = Preprocessor(size=(64, 64), keep_aspect=False).card()
    assert json.loads(json.dumps(card)) == {'size': [64, 64], 'keep_aspect': False,
                                            'normalization': NORMALIZATION}
