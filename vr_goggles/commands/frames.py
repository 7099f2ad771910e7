"""``vr-goggles frames BAG --topic T --out DIR``: a robot camera's frames from a bag, as PNGs.

The first step from a recording to the robot's own goggles: the camera frames of one topic
(``sensor_msgs/Image`` in any encoding the codec reads, or ``CompressedImage`` jpeg/png) of a
ROS 1 ``.bag`` or a ROS 2 bag (folder, ``.mcap`` or ``.db3``; cut recordings salvaged as by
``vr-goggles replay``) become ``DIR/images/000000.png ...`` (RGB, the camera's own size, so the
frames can be labelled as they are) and ``DIR/frames.json`` (for each frame its message index,
header stamp, frame_id and size). The trainers take ``DIR`` as ``--real`` (or ``--data`` once
``DIR/labels`` exists).

A camera at 30 Hz records mostly the same view again: ``--every S`` keeps at most one frame per
S seconds of header time (the bag's receive time where a header has no stamp), and ``--dedup
D`` then drops a frame whose 32x32 grey thumbnail differs from the last kept one by less than D
grey levels on average (a robot standing still). Messages that do not decode are skipped,
counted and named with their reason; nothing written at all exits 3. An ``--out`` that already
holds ``images/`` is refused unless ``--overwrite``. Runtime only: no training code is involved.
"""

from __future__ import annotations

import argparse
from collections import Counter
import json
from pathlib import Path
import shutil
import sys
from typing import Any

import numpy as np

#: Exit status when nothing could be written (as ``vr-goggles replay`` for a run that
#: translated nothing).
EXIT_NOTHING = 3
THUMB = 32  #: thumbnail side for the near-duplicate test


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``frames``."""
    p = subparsers.add_parser('frames', help="a bag topic's camera frames as PNGs (subsampled, "
                              'near-duplicates dropped)', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('bag', help='ROS 1 .bag, ROS 2 bag folder, .mcap or .db3')
    p.add_argument('--topic', default=None,
                   help="the camera topic (default: the bag's only image topic)")
    p.add_argument('--out', required=True, help='output folder (DIR/images/*.png, frames.json)')
    p.add_argument('--every', type=float, default=0.0, metavar='SECONDS',
                   help='keep at most one frame per SECONDS of stamp time (default 0: all)')
    p.add_argument('--dedup', type=float, default=2.0, metavar='THRESHOLD',
                   help='drop a frame whose 32x32 grey thumbnail differs from the last kept '
                        'one by less than THRESHOLD grey levels on average (default 2; 0: off)')
    p.add_argument('--max-frames', type=int, default=0, help='stop after N frames (0: all)')
    p.add_argument('--overwrite', action='store_true',
                   help='replace DIR/images and frames.json of an earlier run')
    p.set_defaults(func=run)
    return p


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """The 32x32 grey float thumbnail the near-duplicate test compares."""
    import cv2

    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)


class FrameFilter:
    """``--every`` then ``--dedup``: whether to keep each frame, and why not when not."""

    def __init__(self, every: float, dedup: float):
        self.every_ns = int(round(every * 1e9))
        self.dedup = dedup
        self.last_t: int | None = None
        self.last_thumb: np.ndarray | None = None
        self.dropped: Counter = Counter()

    def keep(self, t_ns: int, rgb: np.ndarray) -> bool:
        """Keep the frame at ``t_ns`` (counting the reason when not)."""
        if self.every_ns and self.last_t is not None and t_ns - self.last_t < self.every_ns:
            self.dropped['--every'] += 1
            return False
        if self.dedup > 0:
            thumb = thumbnail(rgb)
            if self.last_thumb is not None and \
                    float(np.abs(thumb - self.last_thumb).mean()) < self.dedup:
                self.dropped['--dedup (near-duplicate)'] += 1
                return False
            self.last_thumb = thumb
        self.last_t = t_ns
        return True


def _decode(reader: Any, conn: Any, raw: bytes) -> tuple[np.ndarray, Any]:
    """One camera message -> (RGB at its own size, header), through the runtime's codec."""
    from vr_goggles.image import codec
    from vr_goggles.replay.reader import COMPRESSED_TYPE

    msg = reader.deserialize(raw, conn.msgtype)
    if conn.msgtype == COMPRESSED_TYPE:
        return codec.compressed_to_numpy(msg), msg.header
    return codec.image_to_rgb(msg), msg.header


def _prepare_out(out: Path, overwrite: bool) -> Path:
    images = out / 'images'
    if images.exists() and any(images.iterdir()):
        if not overwrite:
            raise ValueError(f'{images} already holds frames; --overwrite replaces them, or '
                             'choose another --out')
        shutil.rmtree(images)
    images.mkdir(parents=True, exist_ok=True)
    return images


def extract(bag: Path, out: Path, *, topic: str | None = None, every: float = 0.0,
            dedup: float = 2.0, max_frames: int = 0, overwrite: bool = False) -> dict[str, Any]:
    """Write the kept frames of ``topic`` and ``frames.json``; return the summary.

    Raises ``ValueError`` / ``ReplayError`` (one sentence naming the bag) when the bag or the
    topic cannot be read; undecodable messages are skipped and counted in the summary.
    """
    import cv2

    from vr_goggles.replay.reader import open_bag, pick_topic

    if every < 0 or dedup < 0:
        raise ValueError('--every and --dedup take values >= 0')
    if not bag.exists():
        raise FileNotFoundError(f'{bag}: no such bag')
    keep = FrameFilter(every, dedup)
    frames: list[dict[str, Any]] = []
    skipped: Counter = Counter()
    first_reason: dict[str, str] = {}
    n_messages = 0
    with open_bag(bag) as handle:
        reader = handle.reader
        name, _msgtype = pick_topic(reader, topic, bag)
        images = _prepare_out(out, overwrite)
        conns = [c for c in reader.connections if c.topic == name]
        for index, (conn, t, raw) in enumerate(reader.messages(connections=conns)):
            n_messages += 1
            try:
                rgb, header = _decode(reader, conn, raw)
            except Exception as e:  # noqa: BLE001 - every undecodable message is counted
                kind = type(e).__name__
                skipped[kind] += 1
                first_reason.setdefault(kind, f'message {index}: {e}')
                continue
            stamp = (int(header.stamp.sec), int(header.stamp.nanosec))
            t_ns = stamp[0] * 1_000_000_000 + stamp[1] or int(t)
            if not keep.keep(t_ns, rgb):
                continue
            path = images / f'{len(frames):06d}.png'
            cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            frames.append({'file': f'images/{path.name}', 'index': index,
                           'stamp': list(stamp), 'log_time_ns': int(t),
                           'frame_id': str(header.frame_id),
                           'size_wh': [int(rgb.shape[1]), int(rgb.shape[0])]})
            if max_frames and len(frames) >= max_frames:
                break
    summary = {'bag': str(bag), 'topic': name, 'messages_read': n_messages,
               'written': len(frames), 'every_s': every, 'dedup': dedup,
               'dropped': dict(keep.dropped),
               'undecodable': {k: {'count': n, 'first': first_reason[k]}
                               for k, n in skipped.items()}}
    (out / 'frames.json').write_text(json.dumps({**summary, 'frames': frames}, indent=1) + '\n')
    return summary


def run(args: argparse.Namespace) -> int:
    """Extract; one line per problem on stderr, the summary on stdout."""
    from vr_goggles.replay.config import ReplayError

    out = Path(args.out)
    try:
        s = extract(Path(args.bag), out, topic=args.topic, every=args.every, dedup=args.dedup,
                    max_frames=args.max_frames, overwrite=args.overwrite)
    except (ValueError, FileNotFoundError, ReplayError) as e:
        print(f'vr-goggles frames: error: {e}', file=sys.stderr)
        return 2
    dropped = ', '.join(f'{n} by {why}' for why, n in s['dropped'].items())
    print(f"{out / 'images'}: {s['written']} frame(s) of {s['messages_read']} message(s) on "
          f"{s['topic']}" + (f' (dropped {dropped})' if dropped else ''))
    for kind, v in s['undecodable'].items():
        print(f"vr-goggles frames: skipped {v['count']} undecodable message(s) ({kind}), first: "
              f"{v['first']}", file=sys.stderr)
    if not s['written']:
        print(f"vr-goggles frames: nothing written: none of the {s['messages_read']} "
              f"message(s) on {s['topic']} gave a frame", file=sys.stderr)
        return EXIT_NOTHING
    return 0
