"""vr_goggles.image.codec: known answers built by hand, containers, errors, fuzzing, real types."""

from __future__ import annotations

import array
import sys
import types

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from vr_goggles.image import codec
from vr_goggles.image.codec import (
    SUPPORTED_ENCODINGS,
    CompressedImageFields,
    ImageFields,
    compressed_to_numpy,
    image_to_numpy,
    image_to_rgb,
    numpy_to_compressed,
    numpy_to_image,
)

PLAIN = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16', '8UC1', '8UC3', '8UC4', '16UC1')
BAYER = ('bayer_rggb8', 'bayer_bggr8', 'bayer_gbrg8', 'bayer_grbg8')
YUV = ('yuv422', 'yuv422_yuy2')


def msg(encoding, height, width, step, data, is_bigendian=0):
    """A hand-built Image with explicit fields (no encoder involved)."""
    return ImageFields(header=None, height=height, width=width, encoding=encoding,
                       is_bigendian=is_bigendian, step=step, data=data)


def padded(rows, pad):
    """Join byte rows, appending ``pad`` junk bytes (0xEE) to each, as a padded ``step``."""
    return b''.join(bytes(r) + b'\xee' * pad for r in rows)


@pytest.fixture(autouse=True)
def _numpy_path(monkeypatch):
    """Test the numpy decoder itself unless a test installs a bridge explicitly."""
    monkeypatch.setattr(codec, '_bridge_state', [None])


# ------------------------------------------------------------------------------------------
# Known answers, built byte by byte


def test_supported_list_is_the_brief():
    """The decoder covers exactly the encodings the goggles promise."""
    assert set(SUPPORTED_ENCODINGS) == set(PLAIN) | set(BAYER) | set(YUV)


def test_rgb8_padded_step():
    """Row padding past width*3 is skipped, not read as pixels."""
    # 2x2 image, step 8 = 6 payload bytes + 2 junk per row.
    data = padded([[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]], 2)
    m = msg('rgb8', 2, 2, 8, data)
    want = np.array([[[1, 2, 3], [4, 5, 6]], [[7, 8, 9], [10, 11, 12]]], np.uint8)
    got = image_to_numpy(m)
    assert got.dtype == np.uint8 and got.shape == (2, 2, 3)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(image_to_rgb(m), want)


@pytest.mark.parametrize('encoding', ['bgr8', '8UC3'])
def test_bgr_is_reversed_for_rgb(encoding):
    """bgr8 (and 8UC3, BGR as in cv_bridge) stay native but flip for RGB."""
    m = msg(encoding, 1, 2, 7, padded([[10, 20, 30, 40, 50, 60]], 1))
    np.testing.assert_array_equal(image_to_numpy(m), [[[10, 20, 30], [40, 50, 60]]])
    np.testing.assert_array_equal(image_to_rgb(m), [[[30, 20, 10], [60, 50, 40]]])


@pytest.mark.parametrize('encoding, rgb', [('rgba8', [1, 2, 3]), ('bgra8', [3, 2, 1]),
                                           ('8UC4', [3, 2, 1])])
def test_four_channel(encoding, rgb):
    """Alpha is dropped and BGRA flipped for RGB."""
    m = msg(encoding, 2, 1, 5, padded([[1, 2, 3, 4], [5, 6, 7, 8]], 1))
    native = image_to_numpy(m)
    assert native.shape == (2, 1, 4)
    np.testing.assert_array_equal(native[1, 0], [5, 6, 7, 8])
    out = image_to_rgb(m)
    assert out.shape == (2, 1, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out[0, 0], rgb)


@pytest.mark.parametrize('encoding', ['mono8', '8UC1'])
def test_mono8(encoding):
    """Mono decodes to (H, W) and is replicated to three channels for RGB."""
    m = msg(encoding, 2, 3, 4, padded([[0, 1, 2], [253, 254, 255]], 1))
    got = image_to_numpy(m)
    assert got.shape == (2, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, [[0, 1, 2], [253, 254, 255]])
    rgb = image_to_rgb(m)
    assert rgb.shape == (2, 3, 3)
    np.testing.assert_array_equal(rgb[1, 2], [255, 255, 255])


@pytest.mark.parametrize('encoding', ['mono16', '16UC1'])
@pytest.mark.parametrize('big, want', [(0, [0x0201, 0xFFFE]), (1, [0x0102, 0xFEFF])])
def test_mono16_byte_order(encoding, big, want):
    """is_bigendian picks the byte order; the result is native uint16."""
    # One row of two pixels, bytes 01 02 | FE FF, then 3 junk bytes (odd step is legal).
    m = msg(encoding, 1, 2, 7, padded([[0x01, 0x02, 0xFE, 0xFF]], 3), is_bigendian=big)
    got = image_to_numpy(m)
    assert got.dtype == np.uint16 and got.dtype.isnative and got.shape == (1, 2)
    np.testing.assert_array_equal(got, [want])


def test_mono16_to_rgb_scales_like_cv_bridge():
    """mono16 -> 8 bits scales by 255/65535 with rounding."""
    values = [0, 128, 257, 32768, 65535]  # * 255 / 65535, rounded: 0, 0, 1, 128, 255
    m = numpy_to_image(np.array([values], np.uint16), 'mono16')
    rgb = image_to_rgb(m)
    assert rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 0, 1, 128, 255])
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


# BT.601 limited range, computed by hand for U=50, V=200, Y0=100, Y1=200:
#   R = 1.164 (Y - 16) + 1.596 (V - 128)
#   G = 1.164 (Y - 16) - 0.813 (V - 128) - 0.391 (U - 128)
#   B = 1.164 (Y - 16) + 2.018 (U - 128)
# pixel 0: 97.8 + 114.9 = 212.7 -> 213; 97.8 - 58.5 + 30.5 = 69.7 -> 70; 97.8 - 157.4 -> 0
# pixel 1: 214.2 + 114.9 -> 255;       214.2 - 58.5 + 30.5 = 186.2 -> 186; 214.2 - 157.4 -> 57
YUV_WANT = np.array([[[213, 70, 0], [255, 186, 57]]])


@pytest.mark.parametrize('encoding, row', [('yuv422', [50, 100, 200, 200]),  # U Y0 V Y1
                                           ('yuv422_yuy2', [100, 50, 200, 200])])  # Y0 U Y1 V
def test_yuv422_hand_computed(encoding, row):
    """UYVY and YUY2 bytes of the same pixels decode to the BT.601 answer."""
    m = msg(encoding, 2, 2, 6, padded([row, row], 2))
    got = image_to_numpy(m)
    assert got.shape == (2, 2, 3) and got.dtype == np.uint8
    np.testing.assert_allclose(got[0].astype(int), YUV_WANT[0], atol=1)
    np.testing.assert_array_equal(got[0], got[1])
    np.testing.assert_array_equal(image_to_rgb(m), got)


def mosaic_by_hand(rgb, pattern):
    """Sample ``rgb`` per a ROS pattern name: 'rggb' = row 0: R G, row 1: G B."""
    out = np.zeros(rgb.shape[:2], np.uint8)
    for i, letter in enumerate(pattern):
        dy, dx = divmod(i, 2)
        out[dy::2, dx::2] = rgb[dy::2, dx::2, 'rgb'.index(letter)]
    return out


@pytest.mark.parametrize('encoding', BAYER)
def test_bayer_flat_colour_known_answer(encoding):
    """ROS pattern names map to the right OpenCV demosaic codes."""
    colour = np.array([200, 100, 30], np.uint8)
    rgb = np.broadcast_to(colour, (8, 10, 3))
    raw = mosaic_by_hand(rgb, encoding[6:10])
    m = msg(encoding, 8, 10, 13, padded(raw, 3))
    got = image_to_rgb(m)
    assert got.shape == (8, 10, 3)
    np.testing.assert_array_equal(got[2:-2, 2:-2], np.broadcast_to(colour, (4, 6, 3)))
    # Our encoder produces the same mosaic as the hand-written definition.
    np.testing.assert_array_equal(numpy_to_image(rgb, encoding).data.reshape(8, 10), raw)


@pytest.mark.parametrize('encoding', BAYER)
def test_bayer_tiny_images_decode(encoding):
    """OpenCV demosaics images smaller than the 2x2 pattern."""
    for h, w in ((1, 1), (1, 3), (2, 1), (3, 3)):
        assert image_to_rgb(msg(encoding, h, w, w, bytes(h * w))).shape == (h, w, 3)


# ------------------------------------------------------------------------------------------
# Round trips through numpy_to_image


@pytest.mark.parametrize('encoding', PLAIN)
@pytest.mark.parametrize('big', [False, True])
def test_plain_round_trip_exact(encoding, big, rng):
    """numpy_to_image then image_to_numpy is the identity."""
    spec = codec._SPECS[encoding]
    shape = (5, 7) if spec.channels == 1 else (5, 7, spec.channels)
    top = 65536 if spec.dtype == 'u2' else 256
    arr = rng.integers(0, top, size=shape).astype(spec.dtype)
    m = numpy_to_image(arr, encoding, is_bigendian=big)
    assert (m.height, m.width, m.step) == (5, 7, 7 * spec.bpp)
    assert m.is_bigendian == int(big)
    got = image_to_numpy(m)
    assert got.dtype == arr.dtype
    np.testing.assert_array_equal(got, arr)


def test_big_endian_bytes_on_the_wire():
    """is_bigendian=True writes the high byte first."""
    m = numpy_to_image(np.array([[0x0102]], np.uint16), 'mono16', is_bigendian=True)
    assert bytes(m.data) == b'\x01\x02'
    m = numpy_to_image(np.array([[0x0102]], np.uint16), 'mono16')
    assert bytes(m.data) == b'\x02\x01'


@pytest.mark.parametrize('encoding', YUV)
def test_yuv_round_trip(encoding):
    """RGB -> YUV422 -> RGB is within rounding; raw packed input also works."""
    # Pixel pairs share chroma, so give each pair one colour; 422 round trip is then ~exact.
    colours = np.array([[200, 100, 30], [20, 220, 140], [128, 128, 128], [250, 250, 10]])
    rgb = np.repeat(colours[None].astype(np.uint8), 2, axis=1).repeat(3, axis=0)  # (3, 8, 3)
    m = numpy_to_image(rgb, encoding)
    assert (m.width, m.step) == (8, 16)
    got = image_to_rgb(m).astype(int)
    assert np.abs(got - rgb).max() <= 2
    # The raw packed layout is accepted too and decodes identically.
    raw = np.frombuffer(bytes(m.data), np.uint8).reshape(3, 8, 2)
    np.testing.assert_array_equal(image_to_rgb(numpy_to_image(raw, encoding)), got)


def test_yuv_encoder_matches_hand_computed_row():
    """Black and white encode to the limited-range extremes."""
    m = numpy_to_image(np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8), 'yuv422')
    # black Y=16, white Y=235, mean chroma of black/white is neutral: U = V = 128
    assert list(m.data) == [128, 16, 128, 235]


def test_rgb_to_yuv_matches_opencv_when_available():
    """Our numpy encoder matches OpenCV's where it has one."""
    import cv2

    code = getattr(cv2, 'COLOR_RGB2YUV_UYVY', None)
    if code is None:
        pytest.skip('this OpenCV has no COLOR_RGB2YUV_UYVY (added in 4.8)')
    rgb = np.repeat(np.array([[[10, 200, 60]]], np.uint8), 2, axis=1)
    ours = numpy_to_image(rgb, 'yuv422').data
    theirs = cv2.cvtColor(rgb, code).reshape(-1)
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


@pytest.mark.parametrize('encoding', BAYER)
def test_bayer_round_trip_smooth(encoding):
    """Mosaic then demosaic of a smooth image is close inside."""
    yy, xx = np.mgrid[0:12, 0:16]
    rgb = np.stack([100 + 4 * xx, 80 + 3 * yy, 60 + 2 * xx + yy], axis=-1).astype(np.uint8)
    got = image_to_rgb(numpy_to_image(rgb, encoding)).astype(int)
    assert np.abs(got[2:-2, 2:-2] - rgb[2:-2, 2:-2]).max() <= 3


@pytest.mark.parametrize('make', [bytes, bytearray, lambda b: array.array('B', b), list, tuple,
                                  lambda b: np.frombuffer(b, np.uint8),
                                  lambda b: np.frombuffer(b, np.int8), memoryview,
                                  lambda b: np.array(list(b), np.int64)])
def test_data_containers(make):
    """Every container rclpy, rosbags or a user may put in data works."""
    raw = padded([[1, 2, 3, 4, 5, 6]], 2)
    got = image_to_numpy(msg('rgb8', 1, 2, 8, make(raw)))
    np.testing.assert_array_equal(got, [[[1, 2, 3], [4, 5, 6]]])


def test_result_is_a_writable_copy():
    """The result never aliases the message buffer."""
    data = bytearray(b'\x01\x02\x03')
    m = msg('mono8', 1, 3, 3, data)
    got = image_to_numpy(m)
    got[0, 0] = 99
    assert data[0] == 1 and got.flags.writeable


def test_extra_trailing_bytes_are_ignored():
    """Data longer than step*height is tolerated."""
    m = msg('mono8', 1, 2, 2, b'\x05\x06\x07\x08')
    np.testing.assert_array_equal(image_to_numpy(m), [[5, 6]])


# ------------------------------------------------------------------------------------------
# Errors name the field and the values


@pytest.mark.parametrize('fields, match', [
    (dict(encoding='rgb16'), r"encoding: unsupported value 'rgb16'"),
    (dict(encoding=None), r'encoding: unsupported value None'),
    (dict(encoding='RGB8'), r"encoding: unsupported value 'RGB8'"),
    (dict(step=10), r"step: 10 is smaller than width\*bytes_per_pixel = 12 for encoding 'rgb8'"),
    (dict(step=-1), r'step: -1 is smaller'),
    (dict(step=12.0), r'step: expected an integer, got 12.0'),
    (dict(height=0), r'height: expected a positive integer, got 0'),
    (dict(width=-3), r'width: expected a positive integer, got -3'),
    (dict(width='4'), r"width: expected a positive integer, got '4'"),
    (dict(data=bytes(23)), r'data: 23 bytes is less than step\*height = 12\*2 = 24'),
    (dict(data='abc'), r'data: expected bytes'),
    (dict(data=None), r'data: expected bytes'),
    (dict(data=[1, 2, 300] * 8), r'data: values must be integers in 0..255'),
    (dict(data=np.zeros(24, np.float32)), r'data: expected uint8 values'),
    (dict(encoding='yuv422', width=3, step=6, data=bytes(12)), r"width: 3 is odd"),
])
def test_errors_name_the_field(fields, match):
    """Every malformed field is a ValueError naming it and its value."""
    base = dict(encoding='rgb8', height=2, width=4, step=12, data=bytes(24))
    m = msg(**{**base, **fields})
    with pytest.raises(ValueError, match=match):
        image_to_numpy(m)
    with pytest.raises(ValueError, match=match):
        image_to_rgb(m)


def test_missing_fields_are_value_errors():
    """Objects lacking fields are ValueErrors, not AttributeErrors."""
    with pytest.raises(ValueError, match='encoding'):
        image_to_numpy(object())
    with pytest.raises(ValueError, match='height'):
        image_to_numpy(types.SimpleNamespace(encoding='rgb8'))


@pytest.mark.parametrize('arr, encoding, match', [
    (np.zeros((2, 2, 3), np.uint8), 'rgb16', 'encoding: unsupported'),
    (np.zeros((2, 2, 3), np.uint16), 'rgb8', 'arr: encoding .rgb8. needs dtype uint8'),
    (np.zeros((2, 2), np.uint8), 'rgb8', r'arr: encoding .rgb8. needs shape \(H, W, 3\)'),
    (np.zeros((2, 2, 3), np.uint8), 'mono8', r'needs shape \(H, W\)'),
    (np.zeros((2, 2), np.uint8), 'mono16', 'needs dtype uint16'),
    (np.zeros((2, 3, 3), np.uint8), 'yuv422', 'width 3 is odd'),
    (np.zeros((2, 3, 2), np.uint8), 'yuv422_yuy2', 'width 3 is odd'),
    (np.zeros((2, 2, 3), np.float32), 'bayer_rggb8', 'must be uint8'),
    (np.zeros((0, 2, 3), np.uint8), 'rgb8', 'arr: empty image'),
])
def test_encoder_errors(arr, encoding, match):
    """Arrays that do not fit the encoding are refused with the reason."""
    with pytest.raises(ValueError, match=match):
        numpy_to_image(arr, encoding)


# ------------------------------------------------------------------------------------------
# Fuzzing: anything either decodes or is a ValueError

GARBAGE = ['', 'RGB8', 'rgb16', 'bgr16', 'jpeg', 'bayer_rggb16', 'yuv', '32FC1', 'mono8 ']
INTS = st.integers(min_value=-3, max_value=12)
DATA = st.one_of(
    st.binary(max_size=400),
    st.binary(max_size=400).map(bytearray),
    st.binary(max_size=400).map(lambda b: array.array('B', b)),
    st.binary(max_size=400).map(lambda b: np.frombuffer(b, np.uint8)),
    st.lists(st.integers(min_value=-2, max_value=300), max_size=60),
    st.sampled_from([None, 'abc', 3.5, np.zeros(4, np.float64), np.zeros((2, 2), np.uint16)]),
)


@settings(max_examples=300, deadline=None)
@given(encoding=st.sampled_from(list(SUPPORTED_ENCODINGS) + GARBAGE) | st.none(),
       height=INTS, width=INTS, step=st.integers(min_value=-3, max_value=50) | st.none(),
       is_bigendian=st.integers(min_value=0, max_value=2), data=DATA)
def test_fuzz_decoder(encoding, height, width, step, is_bigendian, data):
    """Arbitrary fields and bytes decode to the right shape or raise ValueError."""
    m = msg(encoding, height, width, step, data, is_bigendian)
    for fn in (image_to_numpy, image_to_rgb):
        try:
            out = fn(m)
        except ValueError:
            continue
        assert out.shape[:2] == (height, width)
        if fn is image_to_rgb:
            assert out.shape == (height, width, 3) and out.dtype == np.uint8


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), fmt=st.sampled_from(['jpeg', 'png', '', 'rgb8; jpeg '
                                                          'compressed bgr8', None]),
       cut=st.integers(min_value=0, max_value=400))
def test_fuzz_compressed(data, fmt, cut):
    """Garbage or truncated compressed data decodes or raises ValueError."""
    valid = numpy_to_compressed(np.full((8, 8, 3), 90, np.uint8), 'png').data.tobytes()
    for payload in (data, valid[:cut]):
        try:
            out = compressed_to_numpy(CompressedImageFields(format=fmt, data=payload))
        except ValueError:
            continue
        assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8


# ------------------------------------------------------------------------------------------
# CompressedImage


def smooth_rgb(h=32, w=48):
    """A smooth colour ramp that JPEG keeps well."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([4 * xx, 6 * yy, 255 - 3 * xx], axis=-1).clip(0, 255).astype(np.uint8)


def test_jpeg_round_trip_within_tolerance():
    """JPEG is lossy but close, and the channels are not swapped."""
    rgb = smooth_rgb()
    c = numpy_to_compressed(rgb, 'jpeg', quality=95)
    assert c.format == 'rgb8; jpeg compressed bgr8'
    assert bytes(c.data[:2]) == b'\xff\xd8'  # JPEG SOI marker
    got = compressed_to_numpy(c).astype(int)
    assert got.shape == rgb.shape
    assert np.abs(got - rgb).mean() < 2.0
    # Colours are not swapped: the red ramp is still in channel 0.
    assert np.corrcoef(got[..., 0].ravel(), rgb[..., 0].ravel())[0, 1] > 0.99


def test_png_round_trip_exact(rng):
    """PNG is lossless."""
    rgb = rng.integers(0, 256, size=(9, 11, 3)).astype(np.uint8)
    c = numpy_to_compressed(rgb, 'png')
    assert c.format == 'rgb8; png compressed bgr8'
    assert bytes(c.data[:8]) == b'\x89PNG\r\n\x1a\n'
    np.testing.assert_array_equal(compressed_to_numpy(c), rgb)


def test_png_mono_and_rgb_order_format(rng):
    """Mono PNGs and image_transport "compressed rgb8" decode right."""
    gray = rng.integers(0, 256, size=(5, 6)).astype(np.uint8)
    c = numpy_to_compressed(gray, 'png')
    assert c.format == 'mono8; png compressed mono8'
    np.testing.assert_array_equal(compressed_to_numpy(c), np.repeat(gray[..., None], 3, 2))
    # image_transport "compressed rgb8": the encoder was handed RGB as if it were BGR.
    rgb = rng.integers(0, 256, size=(5, 6, 3)).astype(np.uint8)
    swapped = numpy_to_compressed(rgb[..., ::-1], 'png')
    swapped.format = 'rgb8; png compressed rgb8'
    np.testing.assert_array_equal(compressed_to_numpy(swapped), rgb)


@pytest.mark.parametrize('kwargs, match', [
    (dict(fmt='webp'), "fmt: unsupported value 'webp'"),
    (dict(quality=0), 'quality: expected an integer in 1..100, got 0'),
    (dict(quality=101), 'quality'),
    (dict(quality=50.5), 'quality'),
])
def test_compress_errors(kwargs, match):
    """Bad fmt or quality is a ValueError naming the argument."""
    with pytest.raises(ValueError, match=match):
        numpy_to_compressed(np.zeros((4, 4, 3), np.uint8), **kwargs)


@pytest.mark.parametrize('arr, match', [
    (np.zeros((4, 4, 3), np.float32), 'rgb: expected dtype uint8'),
    (np.zeros((4, 4, 4), np.uint8), r'rgb: expected \(H, W, 3\)'),
    (np.zeros((0, 4, 3), np.uint8), 'rgb: empty'),
])
def test_compress_input_errors(arr, match):
    """Bad arrays are a ValueError naming rgb."""
    with pytest.raises(ValueError, match=match):
        numpy_to_compressed(arr)


@pytest.mark.parametrize('fields, match', [
    (dict(data=b''), 'data: empty'),
    (dict(data=b'not an image at all'), 'data: 19 bytes could not be decoded'),
    (dict(data=b'\x89PNG', format='16UC1; compressedDepth png'), 'format: .* compressedDepth'),
    (dict(data='text'), 'data: expected bytes'),
])
def test_decompress_errors(fields, match):
    """Empty, garbage and compressedDepth data are ValueErrors."""
    with pytest.raises(ValueError, match=match):
        compressed_to_numpy(CompressedImageFields(**{'format': 'jpeg', **fields}))


# ------------------------------------------------------------------------------------------
# Real ROS 2 message definitions via rosbags (+ CDR), and the rclpy classes


def _sample(encoding, rng):
    spec = codec._SPECS[encoding]
    if spec.kind != 'plain':
        return rng.integers(0, 256, size=(4, 6, 3)).astype(np.uint8)
    shape = (4, 6) if spec.channels == 1 else (4, 6, spec.channels)
    return rng.integers(0, 65536 if spec.dtype == 'u2' else 256, size=shape).astype(spec.dtype)


@pytest.mark.parametrize('encoding', SUPPORTED_ENCODINGS)
def test_rosbags_cdr_round_trip(encoding, ros2_typestore, rng):
    """Messages of the real Humble definition survive CDR and decode."""
    ts = ros2_typestore
    image_cls = ts.types['sensor_msgs/msg/Image']
    arr = _sample(encoding, rng)
    big = encoding in ('mono16', '16UC1')
    m = numpy_to_image(arr, encoding, msg_cls=image_cls, is_bigendian=big)
    assert isinstance(m, image_cls) and m.data.dtype == np.uint8
    assert m.header.frame_id == '' and m.header.stamp.sec == 0
    back = ts.deserialize_cdr(ts.serialize_cdr(m, image_cls.__msgtype__), image_cls.__msgtype__)
    assert back.is_bigendian == int(big)
    np.testing.assert_array_equal(image_to_numpy(back), image_to_numpy(m))
    np.testing.assert_array_equal(image_to_rgb(back), image_to_rgb(m))
    if codec._SPECS[encoding].kind == 'plain':
        np.testing.assert_array_equal(image_to_numpy(back), arr)


def test_rosbags_hand_built_padded_message(ros2_typestore):
    """A padded rosbags message with a header decodes; headers carry."""
    ts = ros2_typestore
    header = ts.types['std_msgs/msg/Header'](
        stamp=ts.types['builtin_interfaces/msg/Time'](sec=5, nanosec=6), frame_id='cam')
    image_cls = ts.types['sensor_msgs/msg/Image']
    data = np.frombuffer(padded([[9, 8, 7, 6, 5, 4]], 4), np.uint8)
    m = image_cls(header=header, height=1, width=2, encoding='bgr8', is_bigendian=0, step=10,
                  data=data)
    back = ts.deserialize_cdr(ts.serialize_cdr(m, image_cls.__msgtype__), image_cls.__msgtype__)
    assert back.header.frame_id == 'cam'
    np.testing.assert_array_equal(image_to_rgb(back), [[[7, 8, 9], [4, 5, 6]]])
    kept = numpy_to_image(image_to_rgb(back), 'rgb8', header=back.header, msg_cls=image_cls)
    assert kept.header.stamp.sec == 5


@pytest.mark.parametrize('fmt', ['jpeg', 'png'])
def test_rosbags_compressed(fmt, ros2_typestore):
    """CompressedImage of the real definition survives CDR."""
    ts = ros2_typestore
    cls = ts.types['sensor_msgs/msg/CompressedImage']
    rgb = smooth_rgb(16, 16)
    c = numpy_to_compressed(rgb, fmt, msg_cls=cls)
    back = ts.deserialize_cdr(ts.serialize_cdr(c, cls.__msgtype__), cls.__msgtype__)
    assert back.format == c.format
    got = compressed_to_numpy(back).astype(int)
    assert np.abs(got - rgb).mean() < (3.0 if fmt == 'jpeg' else 1e-9)


@pytest.fixture(scope='module')
def rclpy_msgs():
    """The PyPI rclpy Image/CompressedImage classes (skipped where not installed)."""
    mod = pytest.importorskip('sensor_msgs.msg')
    return mod.Image, mod.CompressedImage


@pytest.mark.parametrize('encoding', SUPPORTED_ENCODINGS)
def test_rclpy_round_trip(encoding, rclpy_msgs, rng):
    """Rclpy messages built by us or field by field (padded) decode."""
    image_cls, _ = rclpy_msgs
    arr = _sample(encoding, rng)
    m = numpy_to_image(arr, encoding, msg_cls=image_cls, is_bigendian=True)
    assert type(m) is image_cls and isinstance(m.data, array.array)
    got = image_to_rgb(m)
    assert got.shape == arr.shape[:2] + (3,)
    if codec._SPECS[encoding].kind == 'plain':
        np.testing.assert_array_equal(image_to_numpy(m), arr)
    # A message filled field by field, as a driver would, with a padded step.
    raw = padded(np.frombuffer(m.data.tobytes(), np.uint8).reshape(m.height, m.step), 2)
    m2 = image_cls(height=m.height, width=m.width, encoding=encoding,
                   is_bigendian=m.is_bigendian, step=m.step + 2, data=raw)
    np.testing.assert_array_equal(image_to_rgb(m2), got)


def test_rclpy_header_and_compressed(rclpy_msgs):
    """Headers are kept and rclpy CompressedImage round-trips."""
    image_cls, compressed_cls = rclpy_msgs
    from std_msgs.msg import Header

    header = Header(frame_id='camera')
    m = numpy_to_image(np.zeros((2, 2, 3), np.uint8), 'rgb8', header=header, msg_cls=image_cls)
    assert m.header.frame_id == 'camera'
    rgb = smooth_rgb(8, 8)
    c = numpy_to_compressed(rgb, 'png', header=header, msg_cls=compressed_cls)
    assert type(c) is compressed_cls and c.header.frame_id == 'camera'
    np.testing.assert_array_equal(compressed_to_numpy(c), rgb)


# ------------------------------------------------------------------------------------------
# Optional cv_bridge: used only when it imports and agrees


def _fake_cv_bridge(monkeypatch, imgmsg_to_cv2=None, broken=False):
    """Install a stand-in ``cv_bridge`` module; returns the list of calls it receives."""
    calls = []

    class CvBridge:
        def __init__(self):
            if broken:
                raise ImportError('numpy.core.multiarray failed to import')

        def imgmsg_to_cv2(self, m, desired_encoding='passthrough'):
            calls.append(m.encoding)
            return imgmsg_to_cv2(m)

    monkeypatch.setitem(sys.modules, 'cv_bridge', types.SimpleNamespace(CvBridge=CvBridge))
    monkeypatch.setattr(codec, '_bridge_state', [])
    return calls


def _correct(m):
    spec = codec._SPECS[m.encoding]
    dt = np.dtype(spec.dtype).newbyteorder('>' if m.is_bigendian else '<')
    rows = np.frombuffer(bytes(m.data), np.uint8)[:m.step * m.height].reshape(m.height, m.step)
    rows = np.ascontiguousarray(rows[:, :m.width * spec.bpp]).view(dt)
    return rows.reshape(m.height, m.width, spec.channels)


def _ignores_step(m):  # the classic bug: assumes unpadded rows
    spec = codec._SPECS[m.encoding]
    n = m.height * m.width * spec.bpp
    return np.frombuffer(bytes(m.data)[:n], np.dtype(spec.dtype)).reshape(
        m.height, m.width, spec.channels)


def test_agreeing_cv_bridge_is_used(monkeypatch):
    """A cv_bridge that passes the self-check decodes plain encodings."""
    calls = _fake_cv_bridge(monkeypatch, _correct)
    assert codec.cv_bridge_in_use()
    m = msg('mono16', 1, 2, 5, padded([[1, 2, 3, 4]], 1), is_bigendian=1)
    calls.clear()
    got = image_to_numpy(m)
    assert calls == ['mono16']
    assert got.dtype == np.uint16 and got.dtype.isnative and got.shape == (1, 2)
    np.testing.assert_array_equal(got, [[0x0102, 0x0304]])
    calls.clear()  # YUV/Bayer never go through the bridge
    image_to_rgb(msg('yuv422', 1, 2, 4, bytes(4)))
    assert calls == []


def test_disagreeing_cv_bridge_is_not_used(monkeypatch):
    """A cv_bridge that ignores step is rejected at self-check."""
    calls = _fake_cv_bridge(monkeypatch, _ignores_step)
    assert not codec.cv_bridge_in_use()
    calls.clear()
    m = msg('rgb8', 2, 1, 4, padded([[1, 2, 3], [4, 5, 6]], 1))
    np.testing.assert_array_equal(image_to_numpy(m), [[[1, 2, 3]], [[4, 5, 6]]])
    assert calls == []


def test_broken_cv_bridge_and_opt_out(monkeypatch):
    """An import-time failure or VR_GOGGLES_CV_BRIDGE=0 disables it."""
    _fake_cv_bridge(monkeypatch, _correct, broken=True)
    assert not codec.cv_bridge_in_use()
    _fake_cv_bridge(monkeypatch, _correct)
    monkeypatch.setenv('VR_GOGGLES_CV_BRIDGE', '0')
    assert not codec.cv_bridge_in_use()


def test_bridge_failure_per_message_falls_back(monkeypatch):
    """If cv_bridge fails on one message, numpy decodes it."""
    def picky(m):
        if isinstance(m.data, list):
            raise TypeError('a bytes-like object is required')
        return _correct(m)

    _fake_cv_bridge(monkeypatch, picky)
    assert codec.cv_bridge_in_use()
    got = image_to_numpy(msg('mono8', 1, 3, 3, [7, 8, 9]))
    np.testing.assert_array_equal(got, [[7, 8, 9]])
