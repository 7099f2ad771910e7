"""The sim-trained policy as the robot runs it.

The actor, its frame history, turn memory and the discrete actions with their velocities.

``Policy`` (in ``policy``) is re-exported lazily, so the simulator can import
``vr_goggles.policy.actions`` without loading the network stack.
"""

from __future__ import annotations

from typing import Any

__all__ = ['Policy']


def __getattr__(name: str) -> Any:
    if name in __all__:
        from vr_goggles.policy import policy
        return getattr(policy, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
