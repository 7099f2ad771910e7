"""Train the chair-navigation policy with PPO (Stable-Baselines3) in ``VrGoggles/ChairNav-v0``.

``python -m sim_training.train_policy`` trains in the clean simulator (``--domain sim``);
``--domain randomized --run-dir runs/policy_randomized --export vr_goggles/weights/
policy_randomized`` trains the domain-randomisation baseline with the same recipe. The shipped
policies' exact commands are their cards' ``training_command``.

Checkpoints (``RUN_DIR/checkpoint.zip`` + ``checkpoint.json``) are written atomically at rollout
boundaries, so ``--resume`` loses no trained-on step and continues with the same step / update
counters and learning-rate schedule. A rerun on a ``--run-dir`` holding a checkpoint is refused
unless ``--resume`` or ``--overwrite`` says which; Ctrl-C finishes the rollout and update under
way, saves the checkpoint and exits 130 with one line. The code lives in
:mod:`sim_training.policy_training`.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault('PYGLET_HEADLESS', '1')

from sim_training.policy_training import args as _args  # noqa: E402
from sim_training.policy_training.args import Args  # noqa: E402
from sim_training.policy_training.trainer import NavFeaturesExtractor, Trainer  # noqa: E402
from sim_training.run_control import run_as_tool  # noqa: E402

# NavFeaturesExtractor: checkpoints saved before sim_training.policy_training existed name it
# as sim_training.train_policy.NavFeaturesExtractor, so it must stay importable from here.
__all__ = ['Args', 'NavFeaturesExtractor', 'Trainer', 'main', 'parse_args']


def parse_args(argv: list[str] | None = None) -> Args:
    """``Args`` from the command line (``--help`` shows every field's doc)."""
    return _args.parse_args(argv, description=__doc__.split('\n\n')[0])


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    args = parse_args(argv)
    return run_as_tool('train_policy', lambda: Trainer(args, argv).train())


if __name__ == '__main__':
    sys.exit(main())
