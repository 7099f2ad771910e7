"""What a replay run is given (:class:`ReplayConfig`), the errors it raises and how it words them.

Kept apart from the pipeline so that the reader, the writer and the metrics can use them without
importing the pipeline that imports them.
"""

from __future__ import annotations

from dataclasses import dataclass
import os


@dataclass
class ReplayConfig:
    """Everything one replay run needs; mirrors the CLI flags."""

    bag: str | os.PathLike
    out: str | os.PathLike
    topic: str | None = None
    model: str = 'goggles_vr_goggles'
    engine: str = 'auto'
    device: str = 'cpu'
    precision: str = 'fp32'
    compile: bool = False
    engine_file_path: str | None = None
    force_engine_update: bool = False
    policy: str | None = None
    cmd_vel_topic: str = '/cmd_vel'
    # Domain score (vr_goggles.goggles.domain_score) of every translated frame: a shipped name
    # or a weights path; '' or None: off.
    domain_score: str | None = 'domain_score'
    sim_suffix: str = '_sim'
    report: str | os.PathLike | None = None
    metrics: str | os.PathLike | None = None
    overwrite: bool = False
    max_frames: int | None = None
    batch_size: int = 1
    decode_threads: int | None = None  # None: 2 for CompressedImage, 1 (no pool) for raw
    torch_threads: int | None = None  # None: min(current, cores - 1); 0: leave torch alone
    switch_interval: float | None = None  # seconds; None leaves sys.setswitchinterval alone
    shift_frames: int = 4
    max_shift: int = 4
    strip_frames: int = 6
    bench: bool = False
    bench_frames: int = 512
    progress: bool = True
    command: str = ''


class ReplayError(RuntimeError):
    """The bag cannot be replayed at all (the CLI prints it as one line)."""


class OutputExistsError(ValueError):
    """The output exists and ``overwrite`` was not given."""


def short_error(e: BaseException, limit: int = 200) -> str:
    """``e`` on one line of at most ``limit`` characters, for metrics and skip reasons.

    Our own messages (``ValueError``, :class:`ReplayError`) already say what happened; any
    other exception is prefixed with its type, which is often the only hint it carries.
    """
    text = f'{type(e).__name__}: {e}' if not isinstance(e, (ValueError, ReplayError)) else str(e)
    text = ' '.join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + '...'
