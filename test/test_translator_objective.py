"""The translator objective as a table: same training as before the split, terms by name."""

from __future__ import annotations

import json
from pathlib import Path
import shlex

import pytest
import torch

from sim_training import losses as L
from sim_training.data import synthetic_frames
from sim_training.train_translator import config_from_args
from sim_training.translator import PRESETS, TranslatorConfig, TranslatorTrainer, objective
from vr_goggles.models.segmenter import SegmentationNet

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(size=16, ngf=4, n_blocks=1, n_down=2, ndf=4, d_layers=2, synthetic=6,
            progress=False, log_every=1, image_every=2)

#: The first six steps of the vr_goggles preset on the tiny synthetic setup below (two warm-up
#: steps, the real-side term from step 3), logged by the code before the objective became a
#: table (commit 083bc5e, train_translator.py); the table reproduces them bit for bit on the
#: machine that recorded them, so the tolerance only absorbs other CPUs' kernels.
BEFORE_SPLIT = [
    {'warmup_selfreg': 1.1599795818328857, 'G_total': 1.1599795818328857, 'D_sim':
     0.32287418842315674, 'D_real': 0.5155966281890869},
    {'warmup_selfreg': 1.1516673564910889, 'G_total': 1.1516673564910889, 'D_sim':
     0.3954688012599945, 'D_real': 0.5198367238044739},
    {'adv': 2.02427339553833, 'cycle': 1.108731985092163, 'identity': 1.2195954322814941,
     'sem_sim': 1.9224060773849487, 'sem_cycle': 1.920248031616211, 'shift': 0.29965317249298096,
     'G_total': 22.221017837524414, 'D_sim': 0.27159860730171204, 'D_real': 0.4292248487472534},
    {'adv': 1.7684361934661865, 'cycle': 1.1629613637924194, 'identity': 1.1654298305511475,
     'sem_sim': 1.8518695831298828, 'sem_real': 2.3891282081604004, 'pseudo_valid': 0.625,
     'sem_cycle': 1.851569652557373, 'shift': 0.3141758441925049, 'G_total': 24.593612670898438,
     'D_sim': 0.449049174785614, 'D_real': 0.42013096809387207},
    {'adv': 1.7147798538208008, 'cycle': 1.2438715696334839, 'identity': 1.185721755027771,
     'sem_sim': 2.0076751708984375, 'sem_real': 2.3897364139556885, 'pseudo_valid': 0.6640625,
     'sem_cycle': 2.004970073699951, 'shift': 0.3132908046245575, 'G_total': 25.617450714111328,
     'D_sim': 0.2012310028076172, 'D_real': 0.4021233320236206},
    {'adv': 1.6587095260620117, 'cycle': 1.1389245986938477, 'identity': 1.1549923419952393,
     'sem_sim': 1.8907201290130615, 'sem_real': 2.3892858028411865, 'pseudo_valid': 0.62109375,
     'sem_cycle': 1.889874815940857, 'shift': 0.11579836905002594, 'G_total': 23.638545989990234,
     'D_sim': 0.23305177688598633, 'D_real': 0.20509880781173706},
]


def test_vr_goggles_preset_trains_as_before_the_split():
    """Same seed, same losses: the preset's first steps log what the pre-split code logged."""
    sim = synthetic_frames(6, (16, 16), domain='sim', seed=0)
    real = synthetic_frames(6, (16, 16), domain='real', seed=1)
    torch.manual_seed(0)
    seg = SegmentationNet(width=4)
    cfg = TranslatorConfig(**{**TINY, **PRESETS['vr_goggles'], 'preset': 'vr_goggles',
                              'warmup_steps': 2, 'pseudo_start_step': 3, 'pool_size': 2,
                              'steps': 8})
    tr = TranslatorTrainer(cfg, sim=sim, real=real, segmenter=seg)
    for step, want in enumerate(BEFORE_SPLIT):
        got = tr.train_step()
        got.pop('lr')
        assert set(got) == set(want), step
        for k, v in want.items():
            assert got[k] == pytest.approx(v, rel=1e-5, abs=1e-6), (step, k)


def test_every_term_has_a_config_weight_and_known_inputs():
    """The table names config weights; every term reads only outputs the step provides."""
    fields = TranslatorConfig.__dataclass_fields__
    assert all(name.startswith('lambda_') and name in fields for name in objective.TERMS)
    known = {n for stage in objective.STAGES for n in stage} | {
        'x_sim', 'y_sim', 'x_real', 'offset', 'gen_target', 'selfreg_space', 'class_weight'}
    for name, inputs in objective.INPUTS.items():
        assert inputs and set(inputs) <= known, name
    assert all(callable(fn) and fn.__module__ == 'sim_training.losses'
               for fn in [*objective.TERMS.values(), *objective.WARMUP_TERMS.values()])


def test_term_weights_follow_warmup_zero_weights_and_the_pseudo_start():
    """Warm-up: self-regularisation alone (even at weight 0); then non-zero weights in order."""
    cfg = TranslatorConfig(**{**PRESETS['vr_goggles'], 'preset': 'vr_goggles',
                              'warmup_steps': 2, 'warmup_selfreg': 0.0,
                              'pseudo_start_step': 5})
    assert objective.term_weights(cfg, 0) == {'warmup_selfreg': 0.0}
    early = objective.term_weights(cfg, 2)
    assert list(early) == ['lambda_adv', 'lambda_cycle', 'lambda_identity', 'lambda_sem_sim',
                           'lambda_sem_cycle', 'lambda_shift']
    assert objective.term_weights(cfg, 5)['lambda_sem_real'] == 1.0
    assert list(objective.term_weights(cfg, 5)).index('lambda_sem_real') == 4


def test_total_is_the_weighted_sum_of_the_logged_terms():
    """G's loss is sum(weight * term) over the table, each term logged under its name."""
    sim = synthetic_frames(6, (16, 16), domain='sim', seed=0)
    real = synthetic_frames(6, (16, 16), domain='real', seed=1)
    torch.manual_seed(0)
    cfg = TranslatorConfig(**{**TINY, **PRESETS['vr_goggles'], 'preset': 'vr_goggles',
                              'pseudo_segmenter': '', 'pseudo_threshold': 0.0,
                              'lambda_selfreg': 0.25})
    tr = TranslatorTrainer(cfg, sim=sim, real=real, segmenter=SegmentationNet(width=4))
    x_s, y_s, x_r = tr.next_batch()
    total, terms, _, _ = tr.generator_losses(x_s, y_s, x_r)
    weights = objective.term_weights(cfg, 0)
    want = sum(w * float(terms[n.removeprefix('lambda_')].detach()) for n, w in weights.items())
    assert float(total.detach()) == pytest.approx(want, rel=1e-6)
    assert float(terms['pseudo_valid']) == 1.0   # threshold 0: every pixel labelled


@pytest.mark.parametrize('name', ['cyclegan', 'cycada', 'vr_goggles'])
def test_shipped_card_commands_parse_to_their_recorded_config(name):
    """Each goggles card's training_command still runs: same config on every kept field."""
    card = json.loads((ROOT / 'vr_goggles' / 'weights' / f'goggles_{name}.json').read_text())
    argv = shlex.split(card['training_command'])
    assert argv[:3] == ['python', '-m', 'sim_training.train_translator']
    cfg = config_from_args(argv[3:])
    recorded = card['extra']['config']
    kept = {k: v for k, v in vars(cfg).items() if k in recorded}
    assert kept == {k: recorded[k] for k in kept}
    # no new field the card lacks, but those that only say how to treat the run directory and
    # unreadable files (added after these cards; they cannot change the weights)
    assert set(vars(cfg)) - set(recorded) <= {'extra', 'overwrite', 'strict_images'}
    assert cfg.generator_kwargs().items() <= card['kwargs'].items()


def test_shift_term_of_the_step_matches_the_primitive():
    """The shift term is shift_residual of both generators at the step's draw."""
    torch.manual_seed(2)
    y, y_shift = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    z, z_shift = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    got = L.shift(y, y_shift, z, z_shift, (1, 2))
    want = L.shift_residual(y, y_shift, 1, 2) + L.shift_residual(z, z_shift, 1, 2)
    assert float(got) == pytest.approx(float(want))
    y.requires_grad_(True)
    zero = L.shift(y, None, z, None, (0, 0))
    assert float(zero.detach()) == 0.0 and zero.requires_grad
