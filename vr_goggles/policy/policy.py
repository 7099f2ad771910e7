"""The sim-trained navigation policy as the robot runs it (no Stable-Baselines3, no ROS).

``Policy.load('policy_sim')`` rebuilds the exported :class:`vr_goggles.models.actor.NavActor`
from its safetensors + card, and ``act`` applies the one preprocessing path of the project
(``vr_goggles.image.preprocess.Preprocessor`` at the card's input size) before a deterministic
argmax.
``sim_training.evaluate_policy`` evaluates this very class, so the reported success rate is the
success rate of what runs on the robot.

The card's ``frame_stack`` (default 1) says how many frames the actor sees; with more than one
the policy is stateful: every ``act`` call pushes its frame into a :class:`FrameStack` history
(one call = one control step, or pass the frame time ``t`` and frames closer than the control
period replace the newest slot), and :meth:`Policy.reset` starts a new history (new episode,
interrupted stream). The slots are the last ``frame_stack`` control steps; a card's
``frame_offsets``, where present, must say exactly that (``[k - 1, ..., 1, 0]``). The card's
``turn_memory`` (default 0: none) adds the :class:`vr_goggles.policy.turn_memory.TurnMemory`
planes after the frames (two with ``turn_window``): the policy counts its own turning steps,
assuming the action it chose (the argmax) is the one the robot executed.

The actor runs in torch (``engine='torch'``, the default: what training and the evaluation
numbers use) or in ONNX Runtime (``engine='onnxruntime'``) from its ONNX export, with the same
logits within 1e-5 and without importing torch: the file beside the weights (shipped:
``vr_goggles/weights/policy_sim.onnx``) or the export cache, as
:mod:`vr_goggles.engines.onnx_files` finds and checks it.
"""

from __future__ import annotations

from collections.abc import Sequence
import os
from typing import Any

import numpy as np

from vr_goggles.image.preprocess import NORMALIZATION, Preprocessor
from vr_goggles.policy.actions import ACTION_NAMES, CONTROL_PERIOD, action_to_velocity
from vr_goggles.policy.frame_stack import FrameStack
from vr_goggles.policy.turn_memory import TurnMemory, n_planes
from vr_goggles.weights import ModelCard, WeightsError, build_module, resolve

#: ``engine`` of :meth:`Policy.load` (and the policy_node parameter).
POLICY_ENGINES = ('auto', 'torch', 'onnxruntime')


class Policy:
    """Camera image (uint8, any size/colour order) -> discrete action / ``cmd_vel`` velocity."""

    def __init__(self, module: Any, card: ModelCard, *, name: str = '',
                 runner: Any = None, source: Any = None):
        if card.architecture != 'NavActor':
            raise WeightsError(name or card.name, f'expected a NavActor policy, card says '
                                                  f'{card.architecture!r}')
        norm = card.normalization or {}
        if norm.get('range') != NORMALIZATION['range'] or norm.get('color_order', 'rgb') != 'rgb':
            raise WeightsError(name or card.name,
                               f'card normalization {norm} differs from '
                               f'vr_goggles.image.preprocess '
                               f'({NORMALIZATION}); refusing to guess the input scaling')
        n_actions = int(card.kwargs.get('n_actions', len(ACTION_NAMES)))
        if n_actions != len(ACTION_NAMES):
            raise WeightsError(name or card.name,
                               f'policy has {n_actions} actions, '
                               f'vr_goggles.policy.actions defines '
                               f'{len(ACTION_NAMES)} {ACTION_NAMES}')
        self.frame_stack = int(card.extra.get('frame_stack', 1))
        self.turn_memory = int(card.extra.get('turn_memory', 0))
        self.turn_window = int(card.extra.get('turn_window', 0)) if self.turn_memory else 0
        in_channels = int(card.kwargs.get('in_channels', 3))
        want = 3 * self.frame_stack + n_planes(self.turn_memory, self.turn_window)
        if (self.frame_stack < 1 or self.turn_memory < 0 or self.turn_window < 0
                or in_channels != want):
            raise WeightsError(name or card.name,
                               f'card frame_stack={self.frame_stack}, '
                               f'turn_memory={self.turn_memory}, turn_window={self.turn_window}'
                               f' needs in_channels={want}, the actor has {in_channels}')
        offsets = card.extra.get('frame_offsets')
        consecutive = list(range(self.frame_stack - 1, -1, -1))
        if offsets is not None and (not isinstance(offsets, (list, tuple))
                                    or list(offsets) != consecutive):
            raise WeightsError(name or card.name,
                               f'card frame_offsets={offsets!r}: only the consecutive stack '
                               f'{consecutive} is supported (the dilated stack was removed; '
                               f'commit 083bc5e runs it)')
        #: the torch actor (built from ``source`` on first use when not given)
        self._module = module
        self._source = source
        #: numpy logits function replacing the torch module (ONNX Runtime), or None
        self.runner = runner
        self.card = card
        self.name = name or card.name
        keep_aspect = bool(card.extra.get('preprocessing', {}).get('keep_aspect', True))
        self.preprocessor = Preprocessor(size=tuple(card.input_size), keep_aspect=keep_aspect)
        self.period = float(card.extra.get('control_period_s', CONTROL_PERIOD))
        self.history = FrameStack(self.frame_stack, period=self.period)
        self.turns = (TurnMemory(self.turn_memory, period=self.period, window=self.turn_window)
                      if self.turn_memory else None)

    @property
    def module(self) -> Any:
        """The torch actor (imports torch; built on first use for an ONNX Runtime policy)."""
        if self._module is None and self._source is not None:
            self._module = self._source.module
        return self._module

    @module.setter
    def module(self, value: Any) -> None:
        self._module = value

    @property
    def engine(self) -> str:
        """``torch`` or ``onnxruntime``: what runs the actor."""
        return 'torch' if self.runner is None else 'onnxruntime'

    @classmethod
    def load(cls, name_or_path: str | os.PathLike = 'policy_sim', *,
             engine: str = 'torch') -> Policy:
        """Load a shipped policy by name or a ``.safetensors``/``.json`` path.

        ``engine``: ``torch`` (default), ``onnxruntime`` (the ONNX export; no torch import
        when the file exists beside the weights or in the cache) or ``auto`` (ONNX Runtime when
        an export of these weights exists or torch cannot be imported, else torch).
        Raises :class:`vr_goggles.weights.WeightsError` for a missing, corrupt or mismatched
        file, :class:`vr_goggles.engines.EngineUnavailable` when the engine cannot run here.
        """
        from vr_goggles.engines.factory import source_from_weights
        from vr_goggles.engines.onnx_files import onnx_ready

        if engine not in POLICY_ENGINES:
            raise ValueError(f'engine: expected one of {", ".join(POLICY_ENGINES)}, got '
                             f'{engine!r}')
        if engine == 'torch':
            from vr_goggles.engines.factory import require_torch

            require_torch('torch')  # one line, not an ImportError traceback, without torch
            module, card = build_module(name_or_path)
            return cls(module, card, name=str(resolve(name_or_path)))
        source, card = source_from_weights(name_or_path, engine='onnxruntime')
        policy = cls(None, card, name=str(resolve(name_or_path)), source=source)
        if engine == 'auto' and not onnx_ready(source):
            policy.module  # noqa: B018 (torch; a state dict that does not fit fails here)
            return policy
        policy.runner = open_actor(source)
        return policy

    def reset(self) -> None:
        """Forget the frame history (a new episode, or the camera stream was interrupted)."""
        self.history.reset()
        if self.turns is not None:
            self.turns.reset()

    def logits(self, images: np.ndarray | list[np.ndarray], color_order: str = 'rgb',
               times: Sequence[float] | None = None) -> np.ndarray:
        """One image or a list of images -> action logits ``(N, n_actions)``.

        With ``frame_stack > 1`` the images are consecutive frames in time order (taken at
        ``times`` s, optional): each one is pushed into the history and scored with it.
        """
        x = self.preprocessor(images, color_order)  # (N, 3, H, W)
        if times is not None and len(times) != len(x):
            raise ValueError(f'times: expected {len(x)} values, got {len(times)}')
        if self.frame_stack > 1:
            x = np.stack([self.history.push(f, None if times is None else float(times[i]))
                          for i, f in enumerate(x)])
        if self.turns is not None:
            return self._turn_memory_logits(x, times)
        return self.run(x)

    def run(self, x: np.ndarray) -> np.ndarray:
        """The actor alone: float32 ``(N, C, H, W)`` planes -> logits ``(N, n_actions)``."""
        if self.runner is not None:
            return self.runner(x)
        import torch

        with torch.inference_mode():
            return self.module(torch.from_numpy(x)).numpy()

    def _turn_memory_logits(self, x: np.ndarray, times: Sequence[float] | None) -> np.ndarray:
        """Frame stacks ``x`` one at a time: each choice feeds the next frame's turn plane."""
        out = []
        for i, stack in enumerate(x):
            values = self.turns.observe(None if times is None else float(times[i]))
            inp = np.concatenate([stack, self.turns.planes(stack.shape[1:], values)])
            logits = self.run(inp[None])[0]
            self.turns.record(int(np.argmax(logits)))
            out.append(logits)
        return np.stack(out)

    def act(self, image: np.ndarray, color_order: str = 'rgb', t: float | None = None) -> int:
        """Deterministic action index (argmax) for one camera image (taken at ``t`` s)."""
        return int(np.argmax(self.logits(image, color_order,
                                         None if t is None else [t])[0]))

    def act_batch(self, images: list[np.ndarray], color_order: str = 'rgb',
                  times: Sequence[float] | None = None) -> np.ndarray:
        """Deterministic actions for a batch of images (same preprocessing as :meth:`act`).

        With ``frame_stack > 1`` the images are consecutive frames in time order.
        """
        return np.argmax(self.logits(images, color_order, times), axis=1)

    def velocity(self, image: np.ndarray, color_order: str = 'rgb',
                 t: float | None = None) -> tuple[int, tuple[float, float]]:
        """``(action, (linear m/s, angular rad/s))`` via ``vr_goggles.policy.actions``."""
        action = self.act(image, color_order, t)
        return action, action_to_velocity(action)

    __call__ = act

    @property
    def action_names(self) -> tuple[str, ...]:
        """Names of the discrete actions, index-aligned with :meth:`act`'s result."""
        return ACTION_NAMES


def open_actor(source: Any) -> Any:
    """The actor's ONNX export in an onnxruntime session (``OnnxModel``), shape-checked.

    The file comes from :func:`vr_goggles.engines.onnx_files.open_for_source`; one whose input
    is not ``(N, C, H, W)`` with the card's channels and size is refused by path.
    """
    from vr_goggles.engines.base import EngineFileError
    from vr_goggles.engines.onnx_engine import OnnxModel
    from vr_goggles.engines.onnx_files import open_for_source

    want = [source.in_channels, *source.input_size]

    def open_file(path: Any) -> Any:
        model = OnnxModel(path)
        shape = model.input_shape
        if len(shape) != 4 or list(shape[1:]) != want:
            raise EngineFileError(path, f'expected an actor input (N, {want[0]}, {want[1]}, '
                                        f'{want[2]}), got {shape}')
        return model

    return open_for_source(source, open_file)
