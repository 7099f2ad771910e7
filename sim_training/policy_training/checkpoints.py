"""A run's checkpoints: atomic writes, loading, resume checks and ``--init-from``.

A run directory holds ``checkpoint.zip`` (the SB3 PPO model) and ``checkpoint.json`` (the
training state: counters, wall time, every session's command and the run's ``Args``), written
atomically at rollout boundaries, i.e. after a PPO update and before the next rollout, so
``--resume`` loses no trained-on step. ``--keep-checkpoints`` also keeps each periodic pair
under ``checkpoints/``. The exporter (``sim_training.export_policy``) reads the same files, so
this module imports neither the trainer nor the exporter.
"""

from __future__ import annotations

from collections.abc import Callable
import json
import os
from pathlib import Path
from typing import Any
import zipfile

from stable_baselines3.common.callbacks import BaseCallback
import torch

from sim_training.config_cli import setting_differences
from sim_training.policy_training.args import extra_planes
from vr_goggles.weights import atomic_write_bytes

CHECKPOINT = 'checkpoint.zip'
STATE = 'checkpoint.json'

#: Settings of policy experiments that were measured, rejected and removed, with the value
#: that means "off". A saved run that used one cannot be continued or exported by this code;
#: docs/results/policy_history.md names the commit whose code can.
REMOVED_SETTINGS: dict[str, Any] = {
    'frame_offsets': '', 'lstm_hidden': 0, 'dagger_steps': 0, 'spin_penalty': 0.0,
    'floor_augment': 0.0, 'detour_keep': 1.0,
}


def removed_settings_used(args: dict[str, Any]) -> str:
    """Which removed experiments a saved run's ``args`` switched on (``''`` if none)."""
    keys = [k for k in REMOVED_SETTINGS if k in args]
    return setting_differences(args, REMOVED_SETTINGS, keys)


def refuse_removed(args: dict[str, Any], what: str | os.PathLike) -> None:
    """Raise ValueError naming the removed settings a saved run used, and where that code is."""
    used = removed_settings_used(args)
    if used:
        raise ValueError(f'{what}: trained with a removed experiment ({used}, saved vs off); '
                         'its code is at commit 083bc5e (docs/results/policy_history.md)')


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's training state (``.json`` beside the ``.zip``); ``{}`` if there is none."""
    state_path = Path(path).with_suffix('.json')
    if not state_path.exists():
        return {}
    return json.loads(state_path.read_text(encoding='utf-8'))


def is_recurrent_checkpoint(path: str | os.PathLike) -> bool:
    """Whether an SB3 checkpoint zip holds sb3-contrib's RecurrentPPO (the removed LSTM policy).

    Read from the zip's ``data`` JSON, so such a checkpoint is refused by name rather than
    failing deep inside SB3's loader.
    """
    try:
        with zipfile.ZipFile(path) as z:
            data = json.loads(z.read('data'))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f'{path}: not a stable-baselines3 checkpoint ({e})') from None
    return str(data.get('policy_class', {}).get('__module__', '')).startswith('sb3_contrib')


def load_checkpoint(path: str | os.PathLike, **kwargs: Any):
    """Load a ``train_policy`` checkpoint (PPO) on CPU; ``kwargs`` go to ``PPO.load``."""
    from stable_baselines3 import PPO

    if is_recurrent_checkpoint(path):
        raise ValueError(f'{path}: a RecurrentPPO (LSTM) checkpoint; the LSTM policy was removed '
                         '(commit 083bc5e has its code, docs/results/policy_history.md)')
    return PPO.load(path, device='cpu', **kwargs)


def write_checkpoint(run_dir: str | os.PathLike, model: Any, state: dict[str, Any],
                     keep: bool = False) -> None:
    """Write ``checkpoint.zip`` then ``checkpoint.json``, each atomically.

    The zip goes first so the json's step count never runs ahead of the weights. With
    ``keep`` the pair is also kept as ``checkpoints/checkpoint_<steps>.zip`` (+ ``.json``).
    """
    import io

    run_dir = Path(run_dir)
    buf = io.BytesIO()
    model.save(buf)
    atomic_write_bytes(run_dir / CHECKPOINT, buf.getvalue())
    text = (json.dumps(state, indent=1) + '\n').encode()
    atomic_write_bytes(run_dir / STATE, text)
    if keep:
        kept = run_dir / 'checkpoints' / f'checkpoint_{model.num_timesteps}'
        kept.parent.mkdir(exist_ok=True)
        atomic_write_bytes(kept.with_suffix('.zip'), buf.getvalue())
        atomic_write_bytes(kept.with_suffix('.json'), text)


class CheckpointCallback(BaseCallback):
    """Call ``save`` every ``freq`` steps, at rollout start (right after a PPO update)."""

    def __init__(self, save: Callable[[], None], freq: int):
        super().__init__()
        self.save = save
        self.freq = freq
        self.last = 0

    def _on_training_start(self) -> None:
        self.last = self.model.num_timesteps

    def _on_rollout_start(self) -> None:
        if self.model.num_timesteps - self.last >= self.freq:
            self.save()
            self.last = self.model.num_timesteps

    def _on_step(self) -> bool:
        return True


def init_is_checkpoint(init: str | os.PathLike) -> bool:
    """Whether ``--init-from`` names a training checkpoint (``.zip``), not an exported policy."""
    return str(init).endswith('.zip')


def init_from_checkpoint(model: Any, path: str | os.PathLike, extra: int = 0) -> None:
    """Copy a checkpoint's policy weights into ``model`` (see ``Args.init_from``).

    Every tensor must match in shape, except input-channel-widened convolutions: the old
    frame weights go to the newest frames' channels (the last of the stack), the old extra
    planes' (``extra_planes``, read from the checkpoint's ``.json``) to the first of this
    model's ``extra`` planes after the stack, and the rest are zero.
    """
    saved_args = read_state(path).get('args', {})
    refuse_removed(saved_args, path)
    old_extra = extra_planes(saved_args)
    old = load_checkpoint(path).policy.state_dict()
    new = model.policy.state_dict()
    if set(old) != set(new):
        raise ValueError(f'{path}: parameter names differ from this run\'s '
                         f'({sorted(set(old) ^ set(new))[:4]}...)')
    for key, w in old.items():
        target = new[key]
        if w.shape == target.shape:
            new[key] = w.clone()
        elif (w.ndim == 4 and target.ndim == 4 and w.shape[0] == target.shape[0]
              and w.shape[2:] == target.shape[2:] and old_extra <= extra
              and (w.shape[1] - old_extra) % 3 == 0 and (target.shape[1] - extra) % 3 == 0
              and w.shape[1] - old_extra <= target.shape[1] - extra):
            frames, old_frames = target.shape[1] - extra, w.shape[1] - old_extra
            widened = torch.zeros_like(target)
            widened[:, frames - old_frames:frames] = w[:, :old_frames]
            widened[:, frames:frames + old_extra] = w[:, old_frames:]
            new[key] = widened
        else:
            raise ValueError(f'{path}: {key} has shape {tuple(w.shape)}, this run needs '
                             f'{tuple(target.shape)}')
    model.policy.load_state_dict(new)


def init_from_exported(model: Any, name_or_path: str) -> None:
    """Copy an exported :class:`NavActor` (encoder + action head) into ``model``'s policy.

    The value head keeps its fresh initialisation (an export has none), so the first updates
    learn values for a policy that already acts like the exported one. The architecture must
    match exactly: same input planes (frame stack, turn memory), channels and features.
    """
    from vr_goggles.weights import build_module, resolve

    path = resolve(name_or_path)
    actor, card = build_module(path)
    if card.architecture != 'NavActor':
        raise ValueError(f'{path}: --init-from takes a NavActor export, this is a '
                         f'{card.architecture}')
    policy = model.policy
    pairs = ((actor.features, policy.features_extractor.encoder, 'encoder'),
             (actor.action_net, policy.action_net, 'action head'))

    def shapes(module: Any) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in module.state_dict().items()}

    for src, dst, what in pairs:
        if shapes(src) != shapes(dst):
            raise ValueError(f'{path}: its {what} ({card.kwargs}) does not match this run\'s '
                             'architecture (frame stack, turn memory, channels, features)')
    for src, dst, _ in pairs:
        dst.load_state_dict(src.state_dict())
