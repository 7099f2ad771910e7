"""Policy training (PPO in the simulator), behind ``python -m sim_training.train_policy``.

- :mod:`~sim_training.policy_training.args`: the typed ``Args`` (its field docstrings are the
  ``--help``) and their checks;
- :mod:`~sim_training.policy_training.wrappers`: ChairNav and the Gymnasium wrappers (reward
  shaping, camera augmentation, normalisation, frame stack, turn memory);
- :mod:`~sim_training.policy_training.checkpoints`: atomic checkpoints, resume, ``--init-from``;
- :mod:`~sim_training.policy_training.trainer`: the network, the PPO setup and the learn loop.

``sim_training.export_policy`` reads checkpoints through ``checkpoints`` and ``args`` only, and
the trainer calls the exporter, so the two never import each other in a circle.
"""
