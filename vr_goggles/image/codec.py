"""``sensor_msgs/Image`` and ``CompressedImage`` <-> numpy, without needing ROS.

The goggles run on robots (rclpy messages), in replay (rosbags messages) and in tests (plain
dataclasses), so every function here works on *any* object with the message's fields, and
``data`` may be ``bytes``, ``bytearray``, ``array.array('B')``, a list of ints or a uint8 array.

Decoding honours ``step`` (rows may be padded past ``width * bytes_per_pixel``) and
``is_bigendian`` (16-bit encodings), and validates every field first: a malformed message is a
:class:`ValueError` naming the field and its value, never a numpy/OpenCV error deep inside a
node. cv_bridge is used for the plain encodings only when it imports *and* agrees with this
module on a self-check (the apt build breaks under numpy 2, and some versions ignore ``step``);
otherwise the pure numpy path is used. Set ``VR_GOGGLES_CV_BRIDGE=0`` to never try it.

Colour conventions follow cv_bridge / image_transport: ``8UC3`` / ``8UC4`` are BGR(A);
``yuv422`` is UYVY and ``yuv422_yuy2`` is YUYV, both BT.601 limited range (OpenCV's
``COLOR_YUV2RGB_UYVY`` / ``_YUY2``); Bayer patterns are named by their top-left 2x2 block as in
ROS (``bayer_rggb8``: row 0 = R G, row 1 = G B).
"""

from __future__ import annotations

import array
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
import logging
import numbers
import os
import sys
from typing import Any, NamedTuple

import cv2
import numpy as np

from vr_goggles.image.preprocess import to_rgb

_LOG = logging.getLogger(__name__)


class _Spec(NamedTuple):
    """How one encoding is laid out in ``data``."""

    dtype: str  # numpy dtype of one channel value ('u1' or 'u2')
    channels: int  # channels of the native array (for yuv/bayer: of the raw layout)
    bpp: int  # bytes per pixel in a row
    kind: str  # 'plain', 'yuv' or 'bayer'
    order: str  # colour order for image_to_rgb ('rgb', 'bgr', 'rgba', 'bgra', 'gray')


_SPECS: dict[str, _Spec] = {
    'rgb8': _Spec('u1', 3, 3, 'plain', 'rgb'),
    'bgr8': _Spec('u1', 3, 3, 'plain', 'bgr'),
    'rgba8': _Spec('u1', 4, 4, 'plain', 'rgba'),
    'bgra8': _Spec('u1', 4, 4, 'plain', 'bgra'),
    'mono8': _Spec('u1', 1, 1, 'plain', 'gray'),
    'mono16': _Spec('u2', 1, 2, 'plain', 'gray'),
    '8UC1': _Spec('u1', 1, 1, 'plain', 'gray'),
    '8UC3': _Spec('u1', 3, 3, 'plain', 'bgr'),  # cv_bridge treats 3-channel as BGR
    '8UC4': _Spec('u1', 4, 4, 'plain', 'bgra'),
    '16UC1': _Spec('u2', 1, 2, 'plain', 'gray'),
    'yuv422': _Spec('u1', 2, 2, 'yuv', 'rgb'),  # UYVY: U0 Y0 V0 Y1
    'yuv422_yuy2': _Spec('u1', 2, 2, 'yuv', 'rgb'),  # YUY2/YUYV: Y0 U0 Y1 V0
    'bayer_rggb8': _Spec('u1', 1, 1, 'bayer', 'rgb'),
    'bayer_bggr8': _Spec('u1', 1, 1, 'bayer', 'rgb'),
    'bayer_gbrg8': _Spec('u1', 1, 1, 'bayer', 'rgb'),
    'bayer_grbg8': _Spec('u1', 1, 1, 'bayer', 'rgb'),
}

#: Every encoding this module decodes and encodes.
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_SPECS)

# OpenCV names Bayer codes after the 2x2 block starting at pixel (1, 1), ROS after (0, 0): ROS
# rggb is OpenCV "BG". Pinned by a known-answer test on a hand-built mosaic.
_BAYER_CODES = {
    'bayer_rggb8': cv2.COLOR_BayerBG2RGB,
    'bayer_bggr8': cv2.COLOR_BayerRG2RGB,
    'bayer_gbrg8': cv2.COLOR_BayerGR2RGB,
    'bayer_grbg8': cv2.COLOR_BayerGB2RGB,
}
# Channel (0=R, 1=G, 2=B) at [row % 2][col % 2] for each ROS pattern.
_BAYER_LAYOUT = {
    'bayer_rggb8': ((0, 1), (1, 2)),
    'bayer_bggr8': ((2, 1), (1, 0)),
    'bayer_gbrg8': ((1, 2), (0, 1)),
    'bayer_grbg8': ((1, 0), (2, 1)),
}
_CV_TO_RGB = {'bgr': cv2.COLOR_BGR2RGB, 'bgra': cv2.COLOR_BGRA2RGB, 'rgba': cv2.COLOR_RGBA2RGB,
              'gray': cv2.COLOR_GRAY2RGB}
_YUV_CODES = {'yuv422': cv2.COLOR_YUV2RGB_UYVY, 'yuv422_yuy2': cv2.COLOR_YUV2RGB_YUY2}


@dataclass
class ImageFields:
    """A stand-in for ``sensor_msgs/msg/Image`` when no message class is given."""

    header: Any = None
    height: int = 0
    width: int = 0
    encoding: str = ''
    is_bigendian: int = 0
    step: int = 0
    data: Any = field(default_factory=lambda: np.zeros(0, np.uint8))


@dataclass
class CompressedImageFields:
    """A stand-in for ``sensor_msgs/msg/CompressedImage`` when no message class is given."""

    header: Any = None
    format: str = ''
    data: Any = field(default_factory=lambda: np.zeros(0, np.uint8))


# ---------------------------------------------------------------------------------------------
# Field validation


def _spec(encoding: Any) -> _Spec:
    try:
        return _SPECS[encoding]
    except (KeyError, TypeError):
        raise ValueError(f'encoding: unsupported value {encoding!r} (supported: '
                         f'{", ".join(SUPPORTED_ENCODINGS)})') from None


def bytes_per_pixel(encoding: str) -> int:
    """Bytes one pixel takes in a row of ``encoding`` (YUV422: 2, Bayer: 1)."""
    return _spec(encoding).bpp


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f'{name}: expected a positive integer, got {value!r}')
    return int(value)


def _as_uint8(data: Any, name: str = 'data') -> np.ndarray:
    """Message ``data`` of any of the usual containers -> flat uint8 array (maybe a view)."""
    if isinstance(data, np.ndarray):
        if data.dtype == np.uint8 or data.dtype == np.int8:
            return data.reshape(-1).view(np.uint8)
        if data.dtype.kind not in 'iu':
            raise ValueError(f'{name}: expected uint8 values, got an array of {data.dtype}')
        data = data.reshape(-1).tolist()
    elif isinstance(data, (bytes, bytearray, memoryview, array.array)):
        try:
            return np.frombuffer(data, dtype=np.uint8)
        except (ValueError, TypeError, BufferError) as e:
            raise ValueError(f'{name}: unreadable buffer: {e}') from None
    if isinstance(data, (str,)) or not isinstance(data, Sequence):
        raise ValueError(f'{name}: expected bytes, array.array, a list of ints or a uint8 '
                         f'array, got {type(data).__name__}')
    if not all(isinstance(v, numbers.Integral) and 0 <= v <= 255 for v in data):
        raise ValueError(f'{name}: values must be integers in 0..255')
    return np.array(data, dtype=np.uint8)


def _validated(msg: Any) -> tuple[_Spec, int, int, int, np.ndarray]:
    """Check every field of an Image; return (spec, height, width, step, data as uint8)."""
    encoding = getattr(msg, 'encoding', None)
    spec = _spec(encoding)
    height = _positive_int(getattr(msg, 'height', None), 'height')
    width = _positive_int(getattr(msg, 'width', None), 'width')
    step = getattr(msg, 'step', None)
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise ValueError(f'step: expected an integer, got {step!r}')
    step = int(step)
    if step < width * spec.bpp:
        raise ValueError(f'step: {step} is smaller than width*bytes_per_pixel = '
                         f'{width * spec.bpp} for encoding {encoding!r}')
    if spec.kind == 'yuv' and width % 2:
        raise ValueError(f'width: {width} is odd, but encoding {encoding!r} packs pixels in '
                         'pairs')
    data = _as_uint8(getattr(msg, 'data', None))
    if data.size < step * height:
        raise ValueError(f'data: {data.size} bytes is less than step*height = {step}*{height} = '
                         f'{step * height} (truncated message?)')
    return spec, height, width, step, data


# ---------------------------------------------------------------------------------------------
# Decoding


def _decode(msg: Any, spec: _Spec, height: int, width: int, step: int,
            data: np.ndarray) -> np.ndarray:
    """The pure numpy/OpenCV decoder (fields already validated). Always returns a fresh array."""
    rows = data[:step * height].reshape(height, step)[:, :width * spec.bpp]
    if spec.kind == 'yuv':
        packed = np.ascontiguousarray(rows).reshape(height, width, 2)
        return cv2.cvtColor(packed, _YUV_CODES[msg.encoding])
    if spec.kind == 'bayer':
        return cv2.cvtColor(np.ascontiguousarray(rows), _BAYER_CODES[msg.encoding])
    if spec.dtype == 'u2':
        order = '>' if bool(getattr(msg, 'is_bigendian', 0)) else '<'
        out = np.ascontiguousarray(rows).view(order + 'u2').astype(np.uint16)
    else:
        out = np.array(rows, dtype=np.uint8)  # copy: never alias the message's buffer
    if spec.channels == 1:
        return out.reshape(height, width)
    return out.reshape(height, width, spec.channels)


def image_to_numpy(msg: Any) -> np.ndarray:
    """Decode an Image message to a fresh, writable numpy array in its native channels.

    mono8/8UC1 -> ``(H, W)`` uint8; mono16/16UC1 -> ``(H, W)`` uint16 (native byte order);
    rgb8/bgr8/8UC3 -> ``(H, W, 3)``; rgba8/bgra8/8UC4 -> ``(H, W, 4)`` in the message's channel
    order; YUV422 and Bayer -> RGB uint8 ``(H, W, 3)``. Raises :class:`ValueError` naming the
    bad field for an unsupported encoding, bad sizes, too small a ``step`` or truncated data.
    """
    spec, height, width, step, data = _validated(msg)
    if spec.kind == 'plain':
        bridged = _bridge_decode(msg, spec, height, width)
        if bridged is not None:
            return bridged
    return _decode(msg, spec, height, width, step, data)


def mono16_to_mono8(img: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 scaled by 255/65535 with rounding, as cv_bridge converts mono16->mono8."""
    wide = np.asarray(img, dtype=np.uint32)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def image_to_rgb(msg: Any) -> np.ndarray:
    """Decode any supported Image message to uint8 RGB ``(H, W, 3)``: what the goggles eat."""
    spec = _spec(getattr(msg, 'encoding', None))
    img = image_to_numpy(msg)
    if spec.kind != 'plain':
        return img
    if img.dtype == np.uint16:
        img = mono16_to_mono8(img)
    if spec.order in _CV_TO_RGB:  # same result as to_rgb, ~5x faster than numpy at 1080p
        return cv2.cvtColor(img, _CV_TO_RGB[spec.order])
    return np.ascontiguousarray(to_rgb(img, spec.order))


# ---------------------------------------------------------------------------------------------
# Encoding


def _rgb_to_yuv422(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` -> packed ``(H, W, 2)`` BT.601 limited range (OpenCV's inverse).

    Chroma is the mean of each horizontal pixel pair. Done in numpy because OpenCV only gained
    ``COLOR_RGB2YUV_UYVY`` in 4.8 and Humble ships 4.5.
    """
    f = rgb.astype(np.float64)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16.0 + 0.256788 * r + 0.504129 * g + 0.097906 * b
    u = 128.0 - 0.148223 * r - 0.290993 * g + 0.439216 * b
    v = 128.0 + 0.439216 * r - 0.367788 * g - 0.071427 * b
    u = (u[:, 0::2] + u[:, 1::2]) / 2.0
    v = (v[:, 0::2] + v[:, 1::2]) / 2.0

    def q(x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)

    y, u, v = q(y), q(u), q(v)
    h, w = y.shape
    out = np.empty((h, w // 2, 4), np.uint8)
    if encoding == 'yuv422':  # U0 Y0 V0 Y1
        out[..., 0], out[..., 1], out[..., 2], out[..., 3] = u, y[:, 0::2], v, y[:, 1::2]
    else:  # Y0 U0 Y1 V0
        out[..., 0], out[..., 1], out[..., 2], out[..., 3] = y[:, 0::2], u, y[:, 1::2], v
    return out.reshape(h, w, 2)


def _rgb_to_bayer(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` -> the ``(H, W)`` mosaic a sensor with that pattern would see."""
    out = np.empty(rgb.shape[:2], np.uint8)
    for dy, row in enumerate(_BAYER_LAYOUT[encoding]):
        for dx, ch in enumerate(row):
            out[dy::2, dx::2] = rgb[dy::2, dx::2, ch]
    return out


def _raw_layout(arr: np.ndarray, encoding: str, spec: _Spec) -> np.ndarray:
    """Check ``arr`` against ``encoding`` and return the array whose bytes are the rows."""
    want = np.dtype(spec.dtype)
    if spec.kind in ('yuv', 'bayer') and arr.ndim == 3 and arr.shape[2] == 3:
        if arr.dtype != np.uint8:
            raise ValueError(f'arr: RGB for {encoding!r} must be uint8, got {arr.dtype}')
        if spec.kind == 'yuv':
            if arr.shape[1] % 2:
                raise ValueError(f'arr: width {arr.shape[1]} is odd, but encoding {encoding!r} '
                                 'packs pixels in pairs')
            return _rgb_to_yuv422(arr, encoding)
        return _rgb_to_bayer(arr, encoding)
    if arr.dtype != want:
        raise ValueError(f'arr: encoding {encoding!r} needs dtype {want.name}, got {arr.dtype}')
    if spec.channels == 1 and arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    ok = (arr.ndim == 2) if spec.channels == 1 else (
        arr.ndim == 3 and arr.shape[2] == spec.channels)
    if not ok:
        expect = '(H, W)' if spec.channels == 1 else f'(H, W, {spec.channels})'
        if spec.kind != 'plain':
            expect += ' raw or (H, W, 3) RGB'
        raise ValueError(f'arr: encoding {encoding!r} needs shape {expect}, got {arr.shape}')
    if spec.kind == 'yuv' and arr.shape[1] % 2:
        raise ValueError(f'arr: width {arr.shape[1]} is odd, but encoding {encoding!r} packs '
                         'pixels in pairs')
    return arr


def _default_header(msg_cls: type) -> Any:
    """A zero header for a rosbags-style dataclass, whose fields are all required."""
    hdr_field = {f.name: f for f in fields(msg_cls)}.get('header')
    if hdr_field is None or (hdr_field.default is not MISSING
                             or hdr_field.default_factory is not MISSING):
        return None  # our own stand-ins default to None
    hdr_cls = hdr_field.type
    if isinstance(hdr_cls, str):
        hdr_cls = getattr(sys.modules.get(msg_cls.__module__), hdr_cls, None)
    stamp_field = ({f.name: f for f in fields(hdr_cls)}.get('stamp')
                   if isinstance(hdr_cls, type) and is_dataclass(hdr_cls) else None)
    time_cls = stamp_field.type if stamp_field else None
    if isinstance(time_cls, str):
        time_cls = getattr(sys.modules.get(hdr_cls.__module__), time_cls, None)
    if not isinstance(time_cls, type):
        raise ValueError(f'header: {msg_cls.__name__} requires a header and its Header class '
                         'could not be found; pass header=')
    return hdr_cls(stamp=time_cls(sec=0, nanosec=0), frame_id='')


def _make_msg(msg_cls: type, header: Any, payload: bytes, **values: Any) -> Any:
    """Build a message of ``msg_cls`` with ``payload`` as its data.

    Dataclasses (rosbags, ours) take a uint8 array as ``data``, rclpy an ``array.array('B')``.
    """
    if is_dataclass(msg_cls):
        if header is None:
            header = _default_header(msg_cls)
        data = np.frombuffer(payload, dtype=np.uint8).copy()
        return msg_cls(header=header, data=data, **values)
    msg = msg_cls(**values)
    if header is not None:
        msg.header = header
    buf = array.array('B')
    buf.frombytes(payload)
    msg.data = buf
    return msg


def numpy_to_image(arr: np.ndarray, encoding: str, header: Any = None,
                   msg_cls: type | None = None, *, is_bigendian: bool = False) -> Any:
    """Build an Image message (of ``msg_cls``, default :class:`ImageFields`) from ``arr``.

    ``arr`` is in the native layout :func:`image_to_numpy` returns for ``encoding``; for YUV422
    and Bayer it may instead be uint8 RGB ``(H, W, 3)``, which is encoded (BT.601 422 / mosaic),
    or the raw ``(H, W, 2)`` / ``(H, W)`` layout. 16-bit data is written big-endian when
    ``is_bigendian``. Rows are unpadded (``step = width * bytes_per_pixel``).
    """
    spec = _spec(encoding)
    raw = _raw_layout(np.asarray(arr), encoding, spec)
    height, width = raw.shape[:2]
    if height < 1 or width < 1:
        raise ValueError(f'arr: empty image of shape {np.shape(arr)}')
    if spec.dtype == 'u2':
        raw = raw.astype('>u2' if is_bigendian else '<u2')
    payload = np.ascontiguousarray(raw).tobytes()
    return _make_msg(msg_cls or ImageFields, header, payload, height=int(height),
                     width=int(width), encoding=encoding, is_bigendian=int(bool(is_bigendian)),
                     step=int(width * spec.bpp))


# ---------------------------------------------------------------------------------------------
# CompressedImage


def compressed_to_numpy(msg: Any) -> np.ndarray:
    """Decode a CompressedImage (JPEG, PNG, anything ``cv2.imdecode`` reads) to uint8 RGB.

    ``format`` follows image_transport (``"rgb8; jpeg compressed bgr8"``): the pixels were
    handed to the encoder in BGR order unless it says ``compressed rgb``. ``compressedDepth``
    (a private header before the PNG) is refused.
    """
    fmt = getattr(msg, 'format', '')
    fmt = fmt if isinstance(fmt, str) else str(fmt)
    if 'compresseddepth' in fmt.lower():
        raise ValueError(f'format: {fmt!r} (compressedDepth) is not supported')
    buf = _as_uint8(getattr(msg, 'data', None))
    if buf.size == 0:
        raise ValueError('data: empty CompressedImage')
    try:
        img = cv2.imdecode(np.ascontiguousarray(buf), cv2.IMREAD_COLOR)
    except cv2.error as e:
        raise ValueError(f'data: {buf.size} bytes could not be decoded ({fmt!r}): '
                         f'{str(e).strip()}') from None
    if img is None:
        raise ValueError(f'data: {buf.size} bytes could not be decoded as an image '
                         f'(format {fmt!r})')
    if 'compressed rgb' in fmt.lower():  # encoder was given RGB as if it were BGR
        return img
    return np.ascontiguousarray(img[:, :, ::-1])


def numpy_to_compressed(rgb: np.ndarray, fmt: str = 'jpeg', quality: int = 90,
                        header: Any = None, msg_cls: type | None = None) -> Any:
    """Encode uint8 RGB ``(H, W, 3)`` (or mono ``(H, W)``) as a CompressedImage.

    ``fmt`` is ``jpeg`` (``quality`` 1-100) or ``png`` (lossless). The ``format`` string follows
    image_transport so ROS subscribers decode the colours correctly.
    """
    name = str(fmt).lower()
    if name in ('jpeg', 'jpg'):
        name, ext = 'jpeg', '.jpg'
        if (isinstance(quality, bool) or not isinstance(quality, numbers.Integral)
                or not 1 <= quality <= 100):
            raise ValueError(f'quality: expected an integer in 1..100, got {quality!r}')
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif name == 'png':
        ext, params = '.png', [cv2.IMWRITE_PNG_COMPRESSION, 3]
    else:
        raise ValueError(f"fmt: unsupported value {fmt!r} (expected 'jpeg' or 'png')")
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8:
        raise ValueError(f'rgb: expected dtype uint8, got {arr.dtype}')
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        src, fmt_str = arr, f'mono8; {name} compressed mono8'
    elif arr.ndim == 3 and arr.shape[2] == 3:
        src, fmt_str = arr[:, :, ::-1], f'rgb8; {name} compressed bgr8'
    else:
        raise ValueError(f'rgb: expected (H, W, 3) RGB or (H, W) mono, got shape {arr.shape}')
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f'rgb: empty image of shape {arr.shape}')
    ok, enc = cv2.imencode(ext, np.ascontiguousarray(src), params)
    if not ok:  # pragma: no cover - OpenCV only fails here on exotic builds
        raise ValueError(f'fmt: OpenCV could not encode {name}')
    return _make_msg(msg_cls or CompressedImageFields, header, enc.tobytes(), format=fmt_str)


# ---------------------------------------------------------------------------------------------
# Optional cv_bridge


_bridge_state: list[Any] = []  # [] = not tried yet; [None] = unusable; [bridge] = agreed


def _self_check_messages() -> list[ImageFields]:
    """Tiny messages covering padded rows, 3/4 channels and big-endian 16-bit."""
    rng = np.random.default_rng(0)
    msgs = []
    for enc, shape in (('rgb8', (2, 3, 3)), ('bgra8', (2, 3, 4)), ('mono8', (3, 2)),
                       ('mono16', (2, 3))):
        spec = _SPECS[enc]
        arr = rng.integers(0, 256 ** np.dtype(spec.dtype).itemsize, size=shape)
        for big in (False, True) if spec.dtype == 'u2' else (False,):
            m = numpy_to_image(arr.astype(spec.dtype), enc, is_bigendian=big)
            rows = np.frombuffer(m.data.tobytes(), np.uint8).reshape(m.height, m.step)
            pad = np.full((m.height, 3), 7, np.uint8)  # step padding must be skipped
            m.data = np.concatenate([rows, pad], axis=1).tobytes()
            m.step += 3
            msgs.append(m)
    return msgs


def _load_bridge() -> Any:
    if os.environ.get('VR_GOGGLES_CV_BRIDGE', '1').strip().lower() in ('0', 'false', 'no'):
        return None
    try:
        from cv_bridge import CvBridge

        bridge = CvBridge()
    except Exception as e:  # ImportError, or an ABI error under numpy 2
        _LOG.debug('cv_bridge unavailable (%s: %s); using numpy decoding',
                   type(e).__name__, e)
        return None
    for m in _self_check_messages():
        spec = _SPECS[m.encoding]
        ours = _decode(m, spec, m.height, m.width, m.step, _as_uint8(m.data))
        try:
            theirs = np.asarray(bridge.imgmsg_to_cv2(m, 'passthrough')).reshape(ours.shape)
            agree = (theirs.dtype.kind == 'u' and theirs.dtype.itemsize == ours.itemsize
                     and np.array_equal(theirs, ours))
        except Exception:
            agree = False
        if not agree:
            _LOG.warning('cv_bridge disagrees with vr_goggles.image.codec on %s (step padding or '
                         'byte order); using numpy decoding', m.encoding)
            return None
    return bridge


def cv_bridge_in_use() -> bool:
    """Whether plain encodings are decoded through cv_bridge (it imported and agreed)."""
    if not _bridge_state:
        _bridge_state.append(_load_bridge())
    return _bridge_state[0] is not None


def _bridge_decode(msg: Any, spec: _Spec, height: int, width: int) -> np.ndarray | None:
    if not cv_bridge_in_use():
        return None
    try:
        out = np.asarray(_bridge_state[0].imgmsg_to_cv2(msg, 'passthrough'))
    except Exception:  # e.g. a list as data: cv_bridge needs a buffer
        return None
    shape = (height, width) if spec.channels == 1 else (height, width, spec.channels)
    want = np.dtype(spec.dtype)
    if (out.dtype.kind != 'u' or out.dtype.itemsize != want.itemsize
            or out.size != height * width * spec.channels):
        return None
    return np.array(out.reshape(shape), dtype=want)  # a native-order copy
