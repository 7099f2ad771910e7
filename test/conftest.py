"""Shared pytest fixtures. Keep this generic and cheap: it is imported by every test run."""

from __future__ import annotations

import os
import sys

import pytest

# The machine is shared: one thread per library unless a test asks for more.
for _var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
    os.environ.setdefault(_var, '1')
os.environ.setdefault('PYGLET_HEADLESS', '1')  # must be set before pyglet/miniworld import


@pytest.fixture(autouse=True, scope='session')
def _torch_single_thread():
    """Pin torch to one thread if a test module imported it (never import it here)."""
    torch = sys.modules.get('torch')
    if torch is not None:
        torch.set_num_threads(1)
    yield


@pytest.fixture
def rng():
    """A seeded numpy generator, so failures reproduce."""
    import numpy as np

    return np.random.default_rng(0)


@pytest.fixture(scope='session')
def ros2_typestore():
    """The rosbags typestore with the real ROS 2 Humble message definitions."""
    typesys = pytest.importorskip('rosbags.typesys')
    return typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)
