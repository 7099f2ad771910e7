"""The sim-trained navigation policy as the robot runs it (no Stable-Baselines3, no ROS).

``Policy.load('policy_sim')`` rebuilds the exported :class:`vr_goggles.models.actor.NavActor`
from its safetensors + card, and ``act`` applies the one preprocessing path of the project
(``vr_goggles.preprocess.Preprocessor`` at the card's input size) before a deterministic argmax.
``sim_training.evaluate_policy`` evaluates this very class, so the reported success rate is the
success rate of what runs on the robot.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from vr_goggles.actions import ACTION_NAMES, action_to_velocity
from vr_goggles.preprocess import NORMALIZATION, Preprocessor
from vr_goggles.weights import ModelCard, WeightsError, build_module, resolve


class Policy:
    """Camera image (uint8, any size/colour order) -> discrete action / ``cmd_vel`` velocity."""

    def __init__(self, module: Any, card: ModelCard, *, name: str = ''):
        if card.architecture != 'NavActor':
            raise WeightsError(name or card.name,
                               f'expected a NavActor policy, card says {card.architecture!r}')
        norm = card.normalization or {}
        if norm.get('range') != NORMALIZATION['range'] or norm.get('color_order', 'rgb') != 'rgb':
            raise WeightsError(name or card.name,
                               f'card normalization {norm} differs from vr_goggles.preprocess '
                               f'({NORMALIZATION}); refusing to guess the input scaling')
        n_actions = int(card.kwargs.get('n_actions', len(ACTION_NAMES)))
        if n_actions != len(ACTION_NAMES):
            raise WeightsError(name or card.name,
                               f'policy has {n_actions} actions, vr_goggles.actions defines '
                               f'{len(ACTION_NAMES)} {ACTION_NAMES}')
        self.module = module
        self.card = card
        self.name = name or card.name
        keep_aspect = bool(card.extra.get('preprocessing', {}).get('keep_aspect', True))
        self.preprocessor = Preprocessor(size=tuple(card.input_size), keep_aspect=keep_aspect)

    @classmethod
    def load(cls, name_or_path: str | os.PathLike = 'policy_sim') -> Policy:
        """Load a shipped policy by name or a ``.safetensors``/``.json`` path.

        Raises :class:`vr_goggles.weights.WeightsError` for a missing, corrupt or mismatched file.
        """
        module, card = build_module(name_or_path)
        return cls(module, card, name=str(resolve(name_or_path)))

    def logits(self, images: np.ndarray | list[np.ndarray],
               color_order: str = 'rgb') -> np.ndarray:
        """One image or a list of images -> action logits ``(N, n_actions)``."""
        import torch

        x = torch.from_numpy(self.preprocessor(images, color_order))
        with torch.inference_mode():
            return self.module(x).numpy()

    def act(self, image: np.ndarray, color_order: str = 'rgb') -> int:
        """Deterministic action index (argmax) for one camera image."""
        return int(np.argmax(self.logits(image, color_order)[0]))

    def act_batch(self, images: list[np.ndarray], color_order: str = 'rgb') -> np.ndarray:
        """Deterministic actions for a batch of images (same preprocessing as :meth:`act`)."""
        return np.argmax(self.logits(images, color_order), axis=1)

    def velocity(self, image: np.ndarray,
                 color_order: str = 'rgb') -> tuple[int, tuple[float, float]]:
        """``(action, (linear m/s, angular rad/s))`` via ``vr_goggles.actions``."""
        action = self.act(image, color_order)
        return action, action_to_velocity(action)

    __call__ = act

    @property
    def action_names(self) -> tuple[str, ...]:
        """Names of the discrete actions, index-aligned with :meth:`act`'s result."""
        return ACTION_NAMES
