"""Export a PPO checkpoint's actor as a plain :class:`vr_goggles.models.actor.NavActor`.

``python -m sim_training.export_policy --checkpoint runs/policy_sim/checkpoint.zip
--out vr_goggles/weights/policy_sim [--onnx]`` writes ``policy_sim.safetensors`` + ``.json``
through ``vr_goggles.weights.save``. The actor is the SB3 features extractor's
:class:`NavEncoder` plus ``action_net`` (``net_arch=[]``, so nothing sits between them), so its
argmax equals SB3 ``predict(deterministic=True)`` on the same normalised frames. The card
records architecture, preprocessing, action set, velocity map and the training figures from
``checkpoint.json``; ``evaluate_policy --update-card`` adds evaluation figures later.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import sys
from typing import Any

os.environ.setdefault('PYGLET_HEADLESS', '1')

from sim_training.policy_training.args import extra_planes  # noqa: E402
from sim_training.policy_training.checkpoints import (  # noqa: E402
    init_is_checkpoint,
    load_checkpoint,
    read_state,
    refuse_removed,
)
from vr_goggles.image.preprocess import NORMALIZATION, Preprocessor  # noqa: E402
from vr_goggles.policy.actions import ACTION_NAMES, ACTION_VELOCITIES, CONTROL_PERIOD  # noqa: E402
from vr_goggles.weights import (  # noqa: E402
    ModelCard,
    atomic_write_bytes,
    load_card,
    paths_for,
    resolve,
    save,
)

__all__ = ['actor_from_sb3', 'export', 'export_onnx', 'lineage', 'load_checkpoint',
           'update_card_metrics']


def actor_from_sb3(model: Any) -> tuple[Any, dict[str, Any]]:
    """Copy the encoder and action head of an SB3 PPO from ``train_policy``.

    Returns ``(NavActor in eval mode, its keyword sizes for the card)``.
    """
    from vr_goggles.models.actor import NavActor

    policy = model.policy
    extractor = policy.features_extractor
    if not hasattr(extractor, 'nav_kwargs'):
        raise TypeError(f'checkpoint policy uses {type(extractor).__name__}, not '
                        'NavFeaturesExtractor from sim_training.policy_training')
    if policy.mlp_extractor.latent_dim_pi != extractor.features_dim or list(
            policy.mlp_extractor.policy_net.parameters()):
        raise TypeError('checkpoint policy has hidden policy layers (net_arch != []); '
                        'NavActor cannot represent them')
    n_actions = int(policy.action_net.out_features)
    kwargs = {**json.loads(json.dumps(extractor.nav_kwargs)), 'n_actions': n_actions}
    actor = NavActor(**kwargs)
    actor.features.load_state_dict(extractor.encoder.state_dict())
    actor.action_net.load_state_dict(policy.action_net.state_dict())
    return actor.eval(), kwargs


def lineage(args: dict[str, Any], depth: int = 8) -> list[dict[str, Any]]:
    """The runs this one was warm-started from (``--init-from``), oldest first.

    Read from each init checkpoint's ``.json`` training state, so a policy's card records the
    whole chain of commands, steps and wall time that produced it.
    """
    init = args.get('init_from')
    if not init or depth <= 0:
        return []
    if not init_is_checkpoint(init):  # an exported policy (checkpoints.init_from_exported)
        try:
            card = load_card(resolve(init))
        except (OSError, ValueError) as e:
            return [{'policy': str(init), 'state': f'unknown ({e})'}]
        return [{'policy': str(init), 'sha256': card.sha256,
                 'commands': [card.training_command]}]
    prev = read_state(init)
    if not prev:
        return [{'checkpoint': str(init), 'state': 'unknown (no training state file)'}]
    return [*lineage(prev.get('args', {}), depth - 1),
            {'checkpoint': str(init), 'num_timesteps': prev.get('num_timesteps'),
             'wall_s': prev.get('wall_s'), 'frame_stack': prev.get('args', {}).get(
                 'frame_stack', 1),
             'commands': [s['command'] for s in prev.get('sessions', [])]}]


def export(checkpoint: str | os.PathLike, out: str | os.PathLike, *,
           onnx: bool = False, metrics: dict[str, Any] | None = None) -> Path:
    """Checkpoint zip -> ``out.safetensors`` + ``out.json`` (and ``out.onnx``); returns path."""
    import stable_baselines3
    import torch

    checkpoint = Path(checkpoint)
    training = read_state(checkpoint)
    args = training.get('args', {})
    refuse_removed(args, checkpoint)
    actor, kwargs = actor_from_sb3(load_checkpoint(checkpoint))
    sessions = training.get('sessions', [])
    chain = lineage(args)
    commands = [c for stage in chain for c in stage.get('commands', [])]
    commands += [s['command'] for s in sessions]
    size = [int(v) for v in kwargs['input_size']]
    pre = Preprocessor(size=(int(size[0]), int(size[1])), keep_aspect=True)
    turn_memory = int(args.get('turn_memory', 0))
    turn_window = int(args.get('turn_window', 0)) if turn_memory else 0
    k = (int(kwargs['in_channels']) - extra_planes(args)) // 3
    name = Path(out).name
    card = ModelCard(
        name=name,
        architecture=type(actor).__name__,
        kwargs=kwargs,
        input_size=size,
        task=(f'chair navigation policy (PPO actor) trained in VrGoggles/ChairNav-v0 '
              f'domain={args.get("domain", "?")!r}; input '
              f'vr_goggles.image.preprocess.Preprocessor '
              f'(size={size}, keep_aspect=True) output, float (N, 3, H, W) in [-1, 1]'
              + ('' if k == 1 else
                 f', the last {k} frames one control period apart'
                 f' stacked on channels oldest first (vr_goggles.policy.frame_stack), '
                 f'(N, {3 * k}, H, W)')
              + (f', then one plane of the control steps since the last forward step, '
                 f'2 * min(n, {turn_memory}) / {turn_memory} - 1'
                 + (f', and one of the turns among the last {turn_window} steps, '
                    f'2 * n / {turn_window} - 1' if turn_window else '')
                 + f' (vr_goggles.policy.turn_memory), (N, {kwargs["in_channels"]}, H, W)'
                 if turn_memory else '')
              + '; output logits over ACTION_NAMES, act = argmax'),
        normalization=dict(NORMALIZATION),
        training_command=' && '.join(commands),
        metrics={'training': {
            **{k: training.get(k) for k in ('num_timesteps', 'n_updates', 'wall_s',
                                            'steps_per_s', 'ep_success_mean', 'ep_len_mean')},
            # The whole chain when warm-started: what it took to get here from scratch.
            'total_timesteps_incl_init': sum(int(st.get('num_timesteps') or 0) for st in chain)
            + int(training.get('num_timesteps') or 0),
            'total_wall_s_incl_init': round(sum(float(st.get('wall_s') or 0) for st in chain)
                                            + float(training.get('wall_s') or 0), 1),
        }, **(metrics or {})},
        extra={
            'action_names': list(ACTION_NAMES),
            'action_velocities': {ACTION_NAMES[a]: list(v) for a, v in ACTION_VELOCITIES.items()},
            'velocity_units': '(linear m/s, angular rad/s, CCW positive), held CONTROL_PERIOD s',
            'control_period_s': CONTROL_PERIOD,
            'frame_stack': k,
            # The slots' steps back, oldest first: always the consecutive stack.
            'frame_offsets': list(range(k - 1, -1, -1)),
            'turn_memory': turn_memory,
            'turn_window': turn_window,
            'preprocessing': pre.card(),
            'preprocessing_path': (f'uint8 RGB image -> '
                                   f'vr_goggles.image.preprocess.Preprocessor -> '
                                   f'{type(actor).__name__}; training fed SB3 the same '
                                   f'normalize() output (normalize_images=False)'),
            'algorithm': 'PPO (stable-baselines3), deterministic argmax at inference',
            'hyperparameters': args,
            'training_sessions': sessions,
            'warm_started_from': chain,
            'checkpoint': str(checkpoint),
            'versions': {'stable_baselines3': stable_baselines3.__version__,
                         'torch': torch.__version__, 'python': platform.python_version()},
            'machine': f'{os.cpu_count()} CPU cores, shared; torch threads '
                       f'{args.get("torch_threads", "?")}',
        },
    )
    path = save(out, actor.state_dict(), card)
    if onnx:
        export_onnx(actor, paths_for(out)[0].with_suffix('.onnx'), card.input_size,
                    in_channels=int(kwargs['in_channels']))
    return path


def export_onnx(actor: Any, path: Path, input_size: list[int], in_channels: int = 3) -> Path:
    """Legacy-exporter ONNX (opset 17, dynamic batch): ``image`` -> ``logits``."""
    import torch

    x = torch.zeros(1, in_channels, *input_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name('.' + path.name + '.tmp')
    torch.onnx.export(actor, x, str(tmp), input_names=['image'], output_names=['logits'],
                      dynamic_axes={'image': {0: 'batch'}, 'logits': {0: 'batch'}},
                      opset_version=17, dynamo=False)
    os.replace(tmp, path)
    return path


def update_card_metrics(name_or_path: str | os.PathLike, key: str, value: Any) -> Path:
    """Set ``card.metrics[key] = value`` in place (atomic; the tensors and hash are unchanged)."""
    from dataclasses import asdict

    tensors = resolve(name_or_path)
    card = load_card(tensors)
    card.metrics[key] = value
    _, card_path = paths_for(tensors)
    atomic_write_bytes(card_path, (json.dumps(asdict(card), indent=2) + '\n').encode())
    return card_path


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--checkpoint', required=True, help='train_policy checkpoint.zip')
    p.add_argument('--out', required=True, help='output path without suffix')
    p.add_argument('--onnx', action='store_true', help='also write OUT.onnx')
    args = p.parse_args(argv)
    path = export(args.checkpoint, args.out, onnx=args.onnx)
    print(f'wrote {path} and {paths_for(path)[1]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
