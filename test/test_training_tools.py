"""Training commands that behave like tools (issue #39, item 5), on tiny CPU runs.

Reruns on an existing --out, Ctrl-C, bare --resume, missing folders, unreadable images, a domain
too small to learn from, and ``vr-goggles translate`` with one corrupt file among good ones.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
import signal

import cv2
import numpy as np
import pytest

torch = pytest.importorskip('torch')

from sim_training.train_translator import config_from_args, main  # noqa: E402
from sim_training.translator.trainer import TranslatorTrainer, train  # noqa: E402

BASE = ['--synthetic', '6', '--size', '16', '--ngf', '4', '--n-blocks', '1', '--ndf', '4',
        '--d-layers', '2', '--decay-steps', '0', '--no-progress', '--ckpt-every', '2',
        '--preset', 'cyclegan', '--image-every', '0', '--log-every', '0']


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rerun_on_an_existing_out_is_refused_naming_the_flags(tmp_path, capsys):
    """Without --resume a second run neither restarts at step 0 nor touches last.pt."""
    out = tmp_path / 'run'
    assert main(BASE + ['--steps', '2', '--out', str(out)]) == 0
    before = _sha(out / 'last.pt')
    capsys.readouterr()
    rc = main(BASE + ['--steps', '4', '--out', str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert '--resume' in err and '--overwrite' in err and 'Traceback' not in err
    assert len(err.strip().splitlines()) == 1
    assert _sha(out / 'last.pt') == before
    assert main(BASE + ['--steps', '4', '--out', str(out), '--overwrite']) == 0
    state = torch.load(out / 'last.pt', weights_only=True)
    assert state['step'] == 4


def test_bare_resume_means_the_same_for_every_training_command():
    """Bare --resume continues the run in the output folder: translator, policy, selection."""
    assert config_from_args(BASE + ['--resume']).resume == 'auto'
    assert config_from_args(BASE + ['--resume', 'x.pt']).resume == 'x.pt'
    assert config_from_args(BASE).resume == ''
    from sim_training.policy_training.args import parse_args

    assert parse_args(['--resume']).resume is True
    from sim_training.select_translator import build_parser

    assert build_parser().parse_args(['m', '--resume', '--json', 'x.json']).resume is True


def test_ctrl_c_saves_the_current_step_and_exits_with_one_line(tmp_path, capsys, monkeypatch):
    """SIGINT mid-run: checkpoint at the step reached, exit 130, resume = uninterrupted run."""
    full = train(config_from_args(BASE + ['--steps', '5', '--out', str(tmp_path / 'full')]))
    real_step = TranslatorTrainer.train_step

    def step_then_ctrl_c(self):
        logs = real_step(self)
        if self.step == 3:
            signal.raise_signal(signal.SIGINT)  # as a terminal's Ctrl-C, during the step
        return logs

    monkeypatch.setattr(TranslatorTrainer, 'train_step', step_then_ctrl_c)
    out = tmp_path / 'cut'
    rc = main(BASE + ['--steps', '5', '--out', str(out)])
    err = capsys.readouterr().err
    assert rc == 130
    assert 'Traceback' not in err and 'KeyboardInterrupt' not in err
    assert f'interrupted at step 3 of 5: checkpoint {out / "last.pt"} saved' in err
    assert '--resume' in err
    assert torch.load(out / 'last.pt', weights_only=True)['step'] == 3  # ckpt-every 2: not 2
    assert not list(out.glob('.last.pt*.tmp'))  # written atomically
    monkeypatch.setattr(TranslatorTrainer, 'train_step', real_step)
    resumed = train(config_from_args(BASE + ['--steps', '5', '--out', str(out), '--resume']))
    assert resumed.step == 5
    for (k, v1), v2 in zip(full.G.state_dict().items(), resumed.G.state_dict().values()):
        assert torch.equal(v1, v2), k


def _pngs(folder: Path, n: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f'{i:06d}.png'
        cv2.imwrite(str(p), rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
        paths.append(p)
    return paths


def _args(sim: Path, real: Path, out: Path) -> list[str]:
    return [a for a in BASE if a not in ('--synthetic', '6')] + [
        '--sim', str(sim), '--real', str(real), '--steps', '1', '--out', str(out)]


def test_missing_folder_is_one_line(tmp_path, capsys):
    """A missing --sim folder: one line naming it, no traceback."""
    real = tmp_path / 'real'
    _pngs(real, 4)
    rc = main(_args(tmp_path / 'nope', real, tmp_path / 'o'))
    err = capsys.readouterr().err
    assert rc == 2 and 'Traceback' not in err
    assert f'{tmp_path / "nope"}: no such folder or bag' in err


def test_unreadable_png_is_skipped_and_counted_or_refused(tmp_path, capsys):
    """One corrupt PNG: skipped with its name and reason, counted; --strict-images refuses."""
    sim, real = tmp_path / 'sim', tmp_path / 'real'
    _pngs(sim, 4)
    paths = _pngs(real, 4, seed=1)
    paths[2].write_bytes(paths[2].read_bytes()[:40])  # truncated
    rc = main(_args(sim, real, tmp_path / 'o'))
    err = capsys.readouterr().err
    assert rc == 0
    assert f'{paths[2]}: cannot read image: not a decodable image' in err and 'skipped' in err
    assert 'skipped 1 unreadable of 4 image(s)' in err
    rc = main(_args(sim, real, tmp_path / 'o2') + ['--strict-images'])
    err = capsys.readouterr().err
    assert rc == 2 and str(paths[2]) in err and '--strict-images' in err
    assert not (tmp_path / 'o2').exists()


def test_a_domain_too_small_to_learn_from_is_warned_about(tmp_path, capsys):
    """A 3-frame --real trains, with a warning saying why it will not transfer."""
    sim, real = tmp_path / 'sim', tmp_path / 'real'
    _pngs(sim, 4)
    _pngs(real, 3, seed=1)
    assert main(_args(sim, real, tmp_path / 'o')) == 0
    err = capsys.readouterr().err
    assert f'--real {real} has only 3 frame(s)' in err and 'memorised' in err
    assert f'--sim {sim} has only 4 frame(s)' in err


def test_translate_writes_the_good_files_and_names_the_bad_one(tmp_path, capsys):
    """vr-goggles translate: one corrupt file among good ones -> the good ones, exit 3."""
    from vr_goggles.cli import main as cli
    from vr_goggles.models import build
    from vr_goggles.weights import ModelCard, save

    gk = {'ngf': 4, 'n_blocks': 1, 'n_down': 2}
    w = save(tmp_path / 'gen', build('ResnetGenerator', **gk).state_dict(),
             ModelCard(name='gen', architecture='ResnetGenerator', kwargs=gk,
                       input_size=[32, 32]))
    src = tmp_path / 'in'
    paths = _pngs(src, 3)
    paths[1].write_bytes(b'')
    out = tmp_path / 'out'
    rc = cli(['translate', str(src), '--out', str(out), '--model', str(w), '--engine', 'torch'])
    captured = capsys.readouterr()
    assert rc == 3
    assert f'skipped {paths[1]}: empty file' in captured.err
    assert 'translated 2 image(s)' in captured.out and 'skipped 1 unreadable' in captured.out
    assert sorted(p.name for p in (out / 'in').iterdir()) == ['000000.png', '000002.png']
    rc = cli(['translate', str(src), '--out', str(tmp_path / 'strict'), '--model', str(w),
              '--engine', 'torch', '--strict'])
    assert rc == 1 and not (tmp_path / 'strict').exists()
    assert str(paths[1]) in capsys.readouterr().err
