"""Self-contained HTML reports: one file, plots and image strips embedded as base64 PNG.

Used by ``vr-goggles replay --report`` and the closed-loop demo. A report is something an
operator mails around or opens on a robot without network, so nothing is linked externally.
matplotlib is imported lazily and forced onto the Agg backend (no display on robots/CI).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
import html
import io
import json
from typing import Any

import cv2
import numpy as np

#: A section: (heading, HTML body). Bodies are trusted HTML built with the helpers below.
Section = tuple[str, str]

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f4f4f4}img{max-width:100%;image-rendering:pixelated}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;white-space:pre-wrap}
.warn{color:#a00;font-weight:bold}figure{margin:.5em 0}figcaption{font-size:.9em;color:#555}
"""


def escape(value: Any) -> str:
    """HTML-escape any value's ``str``."""
    return html.escape(str(value), quote=True)


def png_data_uri(png: bytes) -> str:
    """PNG bytes -> ``data:image/png;base64,...``."""
    return 'data:image/png;base64,' + base64.b64encode(png).decode('ascii')


def figure_to_data_uri(fig: Any, *, dpi: int = 100, close: bool = True) -> str:
    """A matplotlib figure -> PNG data URI (and close it, so long runs do not leak figures)."""
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=dpi, bbox_inches='tight')
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return png_data_uri(buf.getvalue())


def new_figure(width: float = 7.0, height: float = 3.0):
    """``(fig, ax)`` on the Agg backend, whatever backend the process had selected."""
    import matplotlib  # lazy: heavy, and only reports with plots need it

    matplotlib.use('Agg', force=True)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def image_strip(images: Sequence[np.ndarray], *, height: int | None = None,
                gap: int = 4, background: int = 255) -> np.ndarray:
    """Lay uint8 RGB (or gray) images out left to right at a common height -> one RGB image."""
    if not images:
        raise ValueError('images: need at least one image for a strip')
    rgb = []
    for im in images:
        im = np.asarray(im)
        if im.ndim == 2:
            im = im[:, :, None]
        if im.shape[2] == 1:
            im = np.repeat(im, 3, axis=2)
        rgb.append(np.ascontiguousarray(im[:, :, :3].astype(np.uint8)))
    h = height or max(im.shape[0] for im in rgb)
    scaled = []
    for im in rgb:
        w = max(1, round(im.shape[1] * h / im.shape[0]))
        interp = cv2.INTER_NEAREST if h >= im.shape[0] else cv2.INTER_AREA
        scaled.append(cv2.resize(im, (w, h), interpolation=interp) if im.shape[:2] != (h, w)
                      else im)
    total = sum(im.shape[1] for im in scaled) + gap * (len(scaled) - 1)
    out = np.full((h, total, 3), background, np.uint8)
    x = 0
    for im in scaled:
        out[:, x:x + im.shape[1]] = im
        x += im.shape[1] + gap
    return out


def image_to_data_uri(image: np.ndarray) -> str:
    """uint8 RGB image -> PNG data URI."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[:, :, ::-1]  # OpenCV writes BGR
    ok, buf = cv2.imencode('.png', np.ascontiguousarray(arr))
    if not ok:
        raise ValueError(f'could not PNG-encode an image of shape {arr.shape}')
    return png_data_uri(buf.tobytes())


def image_strip_data_uri(images: Sequence[np.ndarray], *, height: int | None = None,
                         gap: int = 4) -> str:
    """Images side by side (see :func:`image_strip`) as one PNG data URI."""
    return image_to_data_uri(image_strip(images, height=height, gap=gap))


def img_tag(uri: str, alt: str = '', caption: str = '') -> str:
    """An ``<img>`` (in a ``<figure>`` when captioned) for a data URI."""
    tag = f'<img src="{uri}" alt="{escape(alt)}">'
    if caption:
        return f'<figure>{tag}<figcaption>{escape(caption)}</figcaption></figure>'
    return tag


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f'{value:.4g}'
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)


def table(rows: Mapping[str, Any] | Iterable[Sequence[Any]],
          header: Sequence[str] | None = None) -> str:
    """Key/value mapping or rows of cells -> HTML; values escaped, floats shortened."""
    items = rows.items() if isinstance(rows, Mapping) else rows
    parts = ['<table>']
    if header:
        parts.append('<tr>' + ''.join(f'<th>{escape(h)}</th>' for h in header) + '</tr>')
    for row in items:
        cells = list(row)
        parts.append('<tr><th>' + escape(_fmt(cells[0])) + '</th>'
                     + ''.join(f'<td>{escape(_fmt(c))}</td>' for c in cells[1:]) + '</tr>')
    parts.append('</table>')
    return '\n'.join(parts)


def pre(text: str) -> str:
    """Preformatted, escaped text (commands, errors)."""
    return f'<pre>{escape(text)}</pre>'


def html_page(title: str, sections: Iterable[Section], *, subtitle: str = '') -> str:
    """A complete standalone HTML document: ``title`` then each ``(heading, body_html)``."""
    body = [f'<h1>{escape(title)}</h1>']
    if subtitle:
        body.append(f'<p>{escape(subtitle)}</p>')
    for heading, content in sections:
        body.append(f'<section><h2>{escape(heading)}</h2>\n{content}\n</section>')
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>\n'
            + '\n'.join(body) + '\n</body></html>\n')
