"""Real->sim translator training (CycleGAN, CyCADA, VR-Goggles), in four parts.

- :mod:`~sim_training.translator.config`: :class:`TranslatorConfig` (every setting) and the
  three ``PRESETS``;
- :mod:`~sim_training.translator.objective`: the table of named weight -> loss term (each term
  a pure function of :mod:`sim_training.losses`) and the discriminator losses;
- :mod:`~sim_training.translator.trainer`: models, the step, exact checkpoints, snapshots,
  export and the training loop :func:`train`;
- the command line is ``python -m sim_training.train_translator``.
"""

from sim_training.translator.config import PRESETS, TranslatorConfig
from sim_training.translator.trainer import TranslatorTrainer, train

__all__ = ['PRESETS', 'TranslatorConfig', 'TranslatorTrainer', 'train']
