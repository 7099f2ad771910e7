"""Replay a rosbag through the goggles (and optionally the policy), without ROS.

Public API: :func:`replay`, :class:`ReplayConfig`, :class:`ReplayError`,
:class:`OutputExistsError`, :func:`format_summary`, :func:`mcap_writer_class`; re-exported
lazily from the modules that implement them, so importing the package costs nothing.

One module per stage, in the order a frame meets them:

* :mod:`~vr_goggles.replay.config`: :class:`ReplayConfig` (the CLI flags) and the errors;
* :mod:`~vr_goggles.replay.reader`: opening ROS 1/ROS 2 bags with rosbags, salvaging a cut
  MCAP file, picking the camera topic, decoding its messages, input/output path checks;
* :mod:`~vr_goggles.replay.pipeline`: :func:`replay`, the threaded read -> translate -> write
  pipeline;
* :mod:`~vr_goggles.replay.writer`: the output ROS 2 MCAP bag;
* :mod:`~vr_goggles.replay.metrics`: latency, flicker, shift error, policy statistics, the
  engine-only benchmark and the CLI summary;
* :mod:`~vr_goggles.replay.domain`: the per-frame domain score, ``policy_node``'s stop rule
  replayed over it, and where the goggles stop working;
* :mod:`~vr_goggles.replay.report` with :mod:`~vr_goggles.replay.html`: the HTML report.
"""

from __future__ import annotations

from typing import Any

_WHERE = {
    'replay': 'pipeline', 'ReplayConfig': 'config', 'ReplayError': 'config',
    'OutputExistsError': 'config', 'format_summary': 'metrics', 'mcap_writer_class': 'writer',
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib
        return getattr(importlib.import_module(f'vr_goggles.replay.{_WHERE[name]}'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
