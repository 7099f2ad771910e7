"""Train the real->sim translator: CycleGAN, CyCADA or VR-Goggles (CyCADA + shift loss).

All three use the SimGAN training tricks (history pool, warm-up, k G steps per D step); the
objective is written out in :mod:`sim_training.translator.objective`, the presets and every
setting in :mod:`sim_training.translator.config`. Every flag overrides the chosen preset; the
start of a run prints and logs every weight and switch.

Run ``python -m sim_training.train_translator --preset vr_goggles --sim data/sim
--real data/real --segmenter segmenter --out runs/vr_goggles --export PATH``; multi-process
with ``torchrun --nproc_per_node N -m sim_training.train_translator ...`` (DDP, gloo on CPU).
"""

from __future__ import annotations

import argparse
import sys

import torch.distributed as dist

from sim_training.config_cli import add_config_flags, preset_config
from sim_training.run_control import command_line, run_as_tool
from sim_training.translator.config import PRESETS, TranslatorConfig
from sim_training.translator.trainer import train

__all__ = ['PRESETS', 'TranslatorConfig', 'build_parser', 'config_from_args', 'main', 'train']


def build_parser() -> argparse.ArgumentParser:
    """One flag per config field, its ``#:`` comment as help; None defaults let presets show."""
    p = argparse.ArgumentParser(prog='python -m sim_training.train_translator',
                                description=__doc__.split('\n\n')[0])
    add_config_flags(p, TranslatorConfig, presets=PRESETS, exclude=('extra',),
                     choices={'preset': sorted(PRESETS)},
                     bare={'resume': 'auto'})  # a bare --resume continues the run in --out
    return p


def config_from_args(argv: list[str] | None = None) -> TranslatorConfig:
    """Preset defaults, then explicitly given CLI flags on top."""
    args = build_parser().parse_args(argv)
    return preset_config(TranslatorConfig, args, PRESETS).resolved()


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    cfg = config_from_args(argv)
    command = command_line('sim_training.train_translator', argv)
    rc = run_as_tool('train_translator', lambda: train(cfg, command=command))
    if rc:
        return rc
    if dist.is_initialized():
        dist.barrier()  # leave together: gloo aborts a peer still connected at teardown
        dist.destroy_process_group()
    return 0


if __name__ == '__main__':
    sys.exit(main())
