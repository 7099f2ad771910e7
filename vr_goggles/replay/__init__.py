"""Replay a rosbag through the goggles (and optionally the policy), without ROS.

Public API: :func:`replay`, :class:`ReplayConfig`, :class:`ReplayError`,
:class:`OutputExistsError`, :func:`format_summary`, :func:`mcap_writer_class`; re-exported
lazily from the modules that implement them.
"""

from __future__ import annotations

from typing import Any

_WHERE = {
    'replay': 'pipeline', 'ReplayConfig': 'pipeline', 'ReplayError': 'pipeline',
    'OutputExistsError': 'pipeline', 'format_summary': 'pipeline',
    'mcap_writer_class': 'pipeline',
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib
        return getattr(importlib.import_module(f'vr_goggles.replay.{_WHERE[name]}'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
