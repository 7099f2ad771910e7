"""GL settings that must be in place before pyglet loads; import this module first.

The simulator renders off-screen: pyglet must use headless EGL (no X display on the training
machines), and Mesa's software rasteriser should draw in the calling thread (its worker threads
cost more than they save on 64x64 frames, badly so on a busy machine). Both only take effect
if set before pyglet (or miniworld, which imports it) is first imported, so every module of
this package that draws imports this one before anything GL. ``setdefault`` leaves a caller's
explicit choice (``PYGLET_HEADLESS=0`` to debug with a window) alone.
"""

from __future__ import annotations

import os

os.environ.setdefault('PYGLET_HEADLESS', '1')
os.environ.setdefault('LP_NUM_THREADS', '0')

import pyglet  # noqa: E402

if os.environ.get('PYGLET_HEADLESS', '').lower() in ('1', 'true', 'yes'):
    pyglet.options['headless'] = True
