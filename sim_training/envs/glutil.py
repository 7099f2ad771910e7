"""Small legacy-OpenGL helpers for the chair-navigation renderer (pyglet 1.5 bindings).

Miniworld draws with immediate-mode calls and one hard-coded display list (id 1), which
(a) leaves no hook to swap textures per domain or to draw flat label colours, and (b) breaks
with several environments in one process, because pyglet contexts share display lists. This
module gives each environment its own textures, display lists and an exact (single-sample)
frame buffer for the label pass, and draws geometry from numpy arrays.

Every function expects the environment's GL context to be current.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
import functools
from pathlib import Path

import cv2
import numpy as np
from pyglet import gl

from vr_goggles.image.preprocess import resize


@dataclass
class GLTexture:
    """A 2D RGB texture with mipmaps, repeating in both directions."""

    id: int
    width: int
    height: int

    @classmethod
    def from_array(cls, img: np.ndarray) -> GLTexture:
        """Upload an RGB uint8 ``(H, W, 3)`` image (row 0 = top)."""
        img = np.ascontiguousarray(np.flip(np.asarray(img, dtype=np.uint8)[:, :, :3], axis=0))
        h, w = img.shape[:2]
        tex = gl.GLuint(0)
        gl.glGenTextures(1, ctypes.byref(tex))
        gl.glBindTexture(gl.GL_TEXTURE_2D, tex)
        gl.glPixelStorei(gl.GL_UNPACK_ALIGNMENT, 1)
        gl.glTexImage2D(gl.GL_TEXTURE_2D, 0, gl.GL_RGB8, w, h, 0, gl.GL_RGB,
                        gl.GL_UNSIGNED_BYTE, img.ctypes.data_as(ctypes.POINTER(gl.GLubyte)))
        gl.glGenerateMipmap(gl.GL_TEXTURE_2D)
        gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_WRAP_S, gl.GL_REPEAT)
        gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_WRAP_T, gl.GL_REPEAT)
        gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_MAG_FILTER, gl.GL_LINEAR)
        gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_MIN_FILTER,
                           gl.GL_LINEAR_MIPMAP_LINEAR)
        gl.glBindTexture(gl.GL_TEXTURE_2D, 0)
        return cls(int(tex.value), w, h)

    def bind(self) -> None:
        """Bind for drawing (the caller enables ``GL_TEXTURE_2D``)."""
        gl.glBindTexture(gl.GL_TEXTURE_2D, self.id)

    def delete(self) -> None:
        """Free the GL object."""
        if self.id:
            gl.glDeleteTextures(1, ctypes.byref(gl.GLuint(self.id)))
            self.id = 0


@functools.lru_cache(maxsize=128)
def read_image(path: str, max_size: int = 256) -> np.ndarray:
    """Read a PNG as RGB uint8, shrunk so its longer side is at most ``max_size`` (cached).

    Textures are seen at 64x64 through mipmaps, so larger sources only cost upload time.
    """
    bgr = cv2.imread(str(Path(path)), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f'{path}: not a readable image')
    img = np.ascontiguousarray(bgr[:, :, ::-1])
    h, w = img.shape[:2]
    if max(h, w) > max_size:
        s = max_size / max(h, w)
        img = resize(img, (max(1, round(h * s)), max(1, round(w * s))))
    img.setflags(write=False)
    return img


class LabelFrameBuffer:
    """Single-sample RGBA8 + depth frame buffer: exact flat colours, no MSAA blends."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.fbo = gl.GLuint(0)
        gl.glGenFramebuffers(1, ctypes.byref(self.fbo))
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, self.fbo)
        self.color_rb = gl.GLuint(0)
        gl.glGenRenderbuffers(1, ctypes.byref(self.color_rb))
        gl.glBindRenderbuffer(gl.GL_RENDERBUFFER, self.color_rb)
        gl.glRenderbufferStorage(gl.GL_RENDERBUFFER, gl.GL_RGBA8, width, height)
        gl.glFramebufferRenderbuffer(gl.GL_FRAMEBUFFER, gl.GL_COLOR_ATTACHMENT0,
                                     gl.GL_RENDERBUFFER, self.color_rb)
        self.depth_rb = gl.GLuint(0)
        gl.glGenRenderbuffers(1, ctypes.byref(self.depth_rb))
        gl.glBindRenderbuffer(gl.GL_RENDERBUFFER, self.depth_rb)
        gl.glRenderbufferStorage(gl.GL_RENDERBUFFER, gl.GL_DEPTH_COMPONENT24, width, height)
        gl.glFramebufferRenderbuffer(gl.GL_FRAMEBUFFER, gl.GL_DEPTH_ATTACHMENT,
                                     gl.GL_RENDERBUFFER, self.depth_rb)
        status = gl.glCheckFramebufferStatus(gl.GL_FRAMEBUFFER)
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, 0)
        if status != gl.GL_FRAMEBUFFER_COMPLETE:
            raise RuntimeError(f'label frame buffer incomplete (status 0x{status:x})')
        self._red = np.zeros((height, width), dtype=np.uint8)

    def bind(self) -> None:
        """Bind and set the viewport; multisampling off so every pixel is one sample."""
        gl.glDisable(gl.GL_MULTISAMPLE)
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, self.fbo)
        gl.glViewport(0, 0, self.width, self.height)

    def read_red(self) -> np.ndarray:
        """The red channel, top row first (a fresh array)."""
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, self.fbo)
        gl.glPixelStorei(gl.GL_PACK_ALIGNMENT, 1)
        gl.glReadPixels(0, 0, self.width, self.height, gl.GL_RED, gl.GL_UNSIGNED_BYTE,
                        self._red.ctypes.data_as(ctypes.POINTER(gl.GLubyte)))
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, 0)
        return self._red[::-1].copy()

    def delete(self) -> None:
        """Free the GL objects."""
        if self.fbo.value:
            gl.glDeleteFramebuffers(1, ctypes.byref(self.fbo))
            gl.glDeleteRenderbuffers(1, ctypes.byref(self.color_rb))
            gl.glDeleteRenderbuffers(1, ctypes.byref(self.depth_rb))
            self.fbo = gl.GLuint(0)


class ObsFrameBuffer:
    """Multisampled RGBA8 frame buffer resolved into a single-sample one for reading.

    Miniworld's own uses an RGBA32F multisample texture and also resolves depth, which costs
    about twice as much on a software rasteriser for the same 8-bit result.
    """

    def __init__(self, width: int, height: int, samples: int = 4) -> None:
        self.width, self.height = width, height
        max_samples = gl.GLint(0)
        gl.glGetIntegerv(gl.GL_MAX_SAMPLES, ctypes.byref(max_samples))
        self.samples = max(0, min(samples, max_samples.value))
        self._objects: list[tuple[str, gl.GLuint]] = []
        self.msaa_fbo = self._fbo(self.samples)
        self.final_fbo = self._fbo(0) if self.samples else self.msaa_fbo
        self._rgb = np.zeros((height, width, 3), dtype=np.uint8)

    def _fbo(self, samples: int) -> gl.GLuint:
        fbo = gl.GLuint(0)
        gl.glGenFramebuffers(1, ctypes.byref(fbo))
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, fbo)
        self._objects.append(('fb', fbo))
        for fmt, attach in ((gl.GL_RGBA8, gl.GL_COLOR_ATTACHMENT0),
                            (gl.GL_DEPTH_COMPONENT24, gl.GL_DEPTH_ATTACHMENT)):
            rb = gl.GLuint(0)
            gl.glGenRenderbuffers(1, ctypes.byref(rb))
            gl.glBindRenderbuffer(gl.GL_RENDERBUFFER, rb)
            if samples:
                gl.glRenderbufferStorageMultisample(gl.GL_RENDERBUFFER, samples, fmt,
                                                    self.width, self.height)
            else:
                gl.glRenderbufferStorage(gl.GL_RENDERBUFFER, fmt, self.width, self.height)
            gl.glFramebufferRenderbuffer(gl.GL_FRAMEBUFFER, attach, gl.GL_RENDERBUFFER, rb)
            self._objects.append(('rb', rb))
        status = gl.glCheckFramebufferStatus(gl.GL_FRAMEBUFFER)
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, 0)
        if status != gl.GL_FRAMEBUFFER_COMPLETE:
            raise RuntimeError(f'frame buffer incomplete (status 0x{status:x})')
        return fbo

    def bind(self) -> None:
        """Bind for drawing and set the viewport."""
        if self.samples:
            gl.glEnable(gl.GL_MULTISAMPLE)
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, self.msaa_fbo)
        gl.glViewport(0, 0, self.width, self.height)

    def resolve(self) -> np.ndarray:
        """Resolve the samples and read RGB, top row first (a fresh array)."""
        if self.samples:
            gl.glBindFramebuffer(gl.GL_READ_FRAMEBUFFER, self.msaa_fbo)
            gl.glBindFramebuffer(gl.GL_DRAW_FRAMEBUFFER, self.final_fbo)
            gl.glBlitFramebuffer(0, 0, self.width, self.height, 0, 0, self.width, self.height,
                                 gl.GL_COLOR_BUFFER_BIT, gl.GL_NEAREST)
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, self.final_fbo)
        gl.glPixelStorei(gl.GL_PACK_ALIGNMENT, 1)
        gl.glReadPixels(0, 0, self.width, self.height, gl.GL_RGB, gl.GL_UNSIGNED_BYTE,
                        self._rgb.ctypes.data_as(ctypes.POINTER(gl.GLubyte)))
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, 0)
        return self._rgb[::-1].copy()

    def delete(self) -> None:
        """Free the GL objects."""
        for kind, obj in self._objects:
            if kind == 'fb':
                gl.glDeleteFramebuffers(1, ctypes.byref(obj))
            else:
                gl.glDeleteRenderbuffers(1, ctypes.byref(obj))
        self._objects.clear()


def _ptr(a: np.ndarray) -> ctypes.c_void_p:
    return a.ctypes.data_as(ctypes.c_void_p)


def draw_arrays(mode: int, verts: np.ndarray, *, texcs: np.ndarray | None = None,
                norms: np.ndarray | None = None) -> None:
    """Draw float32 vertex arrays with client-side pointers.

    Inside ``glNewList`` the data are copied into the display list, so the arrays may be freed
    afterwards. Colour arrays are never used: the current ``glColor`` applies, which is what
    both the tinted look pass and the flat label pass need.
    """
    verts = np.ascontiguousarray(verts, dtype=np.float32)
    keep = [verts]
    gl.glPushClientAttrib(gl.GL_CLIENT_VERTEX_ARRAY_BIT)
    gl.glBindBuffer(gl.GL_ARRAY_BUFFER, 0)
    gl.glEnableClientState(gl.GL_VERTEX_ARRAY)
    gl.glVertexPointer(3, gl.GL_FLOAT, 0, _ptr(verts))
    if texcs is not None:
        texcs = np.ascontiguousarray(texcs, dtype=np.float32)
        keep.append(texcs)
        gl.glEnableClientState(gl.GL_TEXTURE_COORD_ARRAY)
        gl.glTexCoordPointer(2, gl.GL_FLOAT, 0, _ptr(texcs))
    if norms is not None:
        norms = np.ascontiguousarray(norms, dtype=np.float32)
        keep.append(norms)
        gl.glEnableClientState(gl.GL_NORMAL_ARRAY)
        gl.glNormalPointer(gl.GL_FLOAT, 0, _ptr(norms))
    gl.glDrawArrays(mode, 0, len(verts))
    gl.glPopClientAttrib()
    del keep


def box_geometry(size: np.ndarray, tile_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quads of an axis-aligned box standing on y=0, centred on x/z (miniworld's winding).

    Returns ``(verts (24, 3), texcs (24, 2), norms (24, 3))``; texture coordinates are in
    metres / ``tile_m`` so textures keep their physical scale on boxes of any size.
    """
    sx, sy, sz = (float(v) for v in size)
    x0, x1, y0, y1, z0, z1 = -sx / 2, sx / 2, 0.0, sy, -sz / 2, sz / 2
    faces = [  # (normal, 4 vertices, (u, v) axes as vertex components)
        ((0, 0, 1), [(x1, y1, z1), (x0, y1, z1), (x0, y0, z1), (x1, y0, z1)], (0, 1)),
        ((0, 0, -1), [(x0, y1, z0), (x1, y1, z0), (x1, y0, z0), (x0, y0, z0)], (0, 1)),
        ((-1, 0, 0), [(x0, y1, z1), (x0, y1, z0), (x0, y0, z0), (x0, y0, z1)], (2, 1)),
        ((1, 0, 0), [(x1, y1, z0), (x1, y1, z1), (x1, y0, z1), (x1, y0, z0)], (2, 1)),
        ((0, 1, 0), [(x1, y1, z1), (x1, y1, z0), (x0, y1, z0), (x0, y1, z1)], (0, 2)),
        ((0, -1, 0), [(x1, y0, z0), (x1, y0, z1), (x0, y0, z1), (x0, y0, z0)], (0, 2)),
    ]
    verts, texcs, norms = [], [], []
    for n, vs, (ua, va) in faces:
        for v in vs:
            verts.append(v)
            norms.append(n)
            texcs.append((v[ua] / tile_m, v[va] / tile_m))
    return (np.asarray(verts, np.float32), np.asarray(texcs, np.float32),
            np.asarray(norms, np.float32))


def set_light(position: np.ndarray, ambient: np.ndarray, diffuse: np.ndarray,
              attenuation: float = 0.0) -> None:
    """Configure ``GL_LIGHT0`` (positional; position in world space under the view matrix)."""
    def vec4(v: np.ndarray) -> ctypes.Array:
        return (gl.GLfloat * 4)(*[float(x) for x in v])

    gl.glLightfv(gl.GL_LIGHT0, gl.GL_POSITION, vec4([*position[:3], 1.0]))
    gl.glLightfv(gl.GL_LIGHT0, gl.GL_AMBIENT, vec4([*ambient[:3], 1.0]))
    gl.glLightfv(gl.GL_LIGHT0, gl.GL_DIFFUSE, vec4([*diffuse[:3], 1.0]))
    gl.glLightf(gl.GL_LIGHT0, gl.GL_CONSTANT_ATTENUATION, 1.0)
    gl.glLightf(gl.GL_LIGHT0, gl.GL_LINEAR_ATTENUATION, float(attenuation))
    gl.glLightf(gl.GL_LIGHT0, gl.GL_QUADRATIC_ATTENUATION, 0.0)


def begin_look_state() -> None:
    """GL state of the appearance pass (miniworld's: lit, coloured material, textured)."""
    gl.glEnable(gl.GL_LIGHTING)
    gl.glEnable(gl.GL_LIGHT0)
    gl.glShadeModel(gl.GL_SMOOTH)
    gl.glEnable(gl.GL_COLOR_MATERIAL)
    gl.glColorMaterial(gl.GL_FRONT_AND_BACK, gl.GL_AMBIENT_AND_DIFFUSE)
    gl.glEnable(gl.GL_DITHER)
    gl.glTexEnvi(gl.GL_TEXTURE_ENV, gl.GL_TEXTURE_ENV_MODE, gl.GL_MODULATE)


def begin_label_state() -> None:
    """GL state of the label pass: no lighting, texturing, fog, dithering or blending."""
    gl.glDisable(gl.GL_LIGHTING)
    gl.glDisable(gl.GL_TEXTURE_2D)
    gl.glDisable(gl.GL_FOG)
    gl.glDisable(gl.GL_DITHER)
    gl.glDisable(gl.GL_BLEND)
    gl.glDisable(gl.GL_COLOR_MATERIAL)
    gl.glShadeModel(gl.GL_FLAT)
