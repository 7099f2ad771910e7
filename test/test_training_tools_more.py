"""train_segmenter and train_policy behave like tools too (issue #39, item 5), on tiny CPU runs.

The same rules as the translator's (test_training_tools.py): a rerun on an output that holds a
run is refused naming --resume / --overwrite; Ctrl-C saves a checkpoint at the state reached and
exits 130 with one line, and resuming from it gives the uninterrupted run's weights; a bare
--resume means "the run in the output".
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
import signal

import pytest

torch = pytest.importorskip('torch')
os.environ.setdefault('PYGLET_HEADLESS', '1')

from sim_training import train_segmenter as seg  # noqa: E402

SEG = ['--synthetic', '12', '--size', '16', '--width', '4', '--batch-size', '4',
       '--ckpt-every', '2']


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line_refusal(err: str) -> None:
    assert '--resume' in err or '--overwrite' in err
    assert 'Traceback' not in err and len(err.strip().splitlines()) == 1, err


def test_segmenter_rerun_is_refused_and_overwrite_retrains(tmp_path, capsys):
    """A finished segmenter's weights are neither retrained nor replaced without --overwrite."""
    out = tmp_path / 'seg'
    assert seg.main(SEG + ['--steps', '2', '--out', str(out)]) == 0
    weights = tmp_path / 'seg.safetensors'
    before = _sha(weights)
    capsys.readouterr()
    for extra in ([], ['--resume']):
        assert seg.main(SEG + ['--steps', '3', '--out', str(out), *extra]) == 2
        err = capsys.readouterr().err
        _one_line_refusal(err)
        assert str(weights) in err and '--overwrite' in err
        assert _sha(weights) == before
    assert seg.main(SEG + ['--steps', '3', '--out', str(out), '--overwrite']) == 0
    assert _sha(weights) != before


def test_segmenter_ctrl_c_saves_and_resume_matches_uninterrupted(tmp_path, capsys, monkeypatch):
    """SIGINT mid-run: checkpoint at the step reached (not the last --ckpt-every), exit 130."""
    full, _ = seg.train(seg.SegmenterConfig(synthetic=12, size=16, width=4, batch_size=4,
                                            steps=5))
    real_backward = torch.Tensor.backward
    calls = {'n': 0}

    def backward_then_ctrl_c(self, *a, **k):
        real_backward(self, *a, **k)
        calls['n'] += 1
        if calls['n'] == 3:
            signal.raise_signal(signal.SIGINT)  # as a terminal's Ctrl-C, inside backward()

    monkeypatch.setattr(torch.Tensor, 'backward', backward_then_ctrl_c)
    out = tmp_path / 'cut'
    rc = seg.main(SEG + ['--steps', '5', '--out', str(out)])
    err = capsys.readouterr().err
    monkeypatch.setattr(torch.Tensor, 'backward', real_backward)
    ckpt = seg.checkpoint_path(out)
    assert rc == 130, err
    assert 'Traceback' not in err and 'KeyboardInterrupt' not in err
    assert f'interrupted at step 3 of 5: checkpoint {ckpt} saved' in err and '--resume' in err
    assert torch.load(ckpt, weights_only=True)['step'] == 3  # ckpt-every 2 would say 2
    assert not (tmp_path / 'cut.safetensors').exists()
    # a rerun without --resume is refused now: the checkpoint is a run to continue
    assert seg.main(SEG + ['--steps', '5', '--out', str(out)]) == 2
    _one_line_refusal(capsys.readouterr().err)
    assert seg.main(SEG + ['--steps', '5', '--out', str(out), '--resume']) == 0
    from vr_goggles.weights import build_module

    resumed, _ = build_module(out)
    for (k, v1), v2 in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(v1, v2), k
    assert not ckpt.exists()


def test_segmenter_bare_resume_and_missing_data_is_one_line(tmp_path, capsys):
    """Bare --resume = auto; a missing --data folder is one line naming it."""
    assert seg.build_parser().parse_args(['--resume']).resume == 'auto'
    assert seg.build_parser().parse_args(['--resume', 'x.pt']).resume == 'x.pt'
    assert seg.main(['--data', str(tmp_path / 'nope'), '--steps', '1']) == 2
    err = capsys.readouterr().err
    assert f'{tmp_path / "nope"}: no such folder or bag' in err and 'Traceback' not in err


# -- train_policy ------------------------------------------------------------------------------

TINY = ['--n-envs', '2', '--vec-env', 'dummy', '--n-steps', '32', '--batch-size', '32',
        '--n-epochs', '1', '--channels', '8,16,16', '--features-dim', '32',
        '--max-episode-steps', '40', '--checkpoint-freq', '1000', '--no-progress',
        '--no-tensorboard', '--seed', '3', '--frame-stack', '1']


@pytest.fixture(scope='module')
def train_policy():
    pytest.importorskip('stable_baselines3')
    from sim_training import train_policy

    return train_policy


def _policy_params(path: Path) -> dict:
    from sim_training.policy_training.checkpoints import load_checkpoint

    return load_checkpoint(path).policy.state_dict()


def test_policy_rerun_is_refused_naming_the_flags(train_policy, tmp_path, capsys):
    """A second run on the same --run-dir neither restarts nor touches checkpoint.zip."""
    run = tmp_path / 'run'
    assert train_policy.main(TINY + ['--run-dir', str(run), '--total-timesteps', '64']) == 0
    before = _sha(run / 'checkpoint.zip')
    capsys.readouterr()
    assert train_policy.main(TINY + ['--run-dir', str(run), '--total-timesteps', '128']) == 2
    _one_line_refusal(capsys.readouterr().err)
    assert _sha(run / 'checkpoint.zip') == before
    assert train_policy.main(TINY + ['--run-dir', str(run), '--total-timesteps', '64',
                                     '--overwrite']) == 0
    state = train_policy.Trainer(train_policy.parse_args(
        TINY + ['--run-dir', str(run), '--total-timesteps', '64', '--resume'])).train()
    assert state['num_timesteps'] == 64 and len(state['sessions']) == 2


def test_policy_ctrl_c_saves_after_the_update_and_resumes(train_policy, tmp_path, capsys,
                                                          monkeypatch):
    """Ctrl-C before an update: the update finishes, then one checkpoint and exit 130.

    The checkpoint is the state after that update (what a periodic checkpoint holds), and
    --resume continues it to the target with the same counters.
    """
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

    real_collect = OnPolicyAlgorithm.collect_rollouts
    calls = {'n': 0}

    def collect_then_ctrl_c(self, *a, **k):
        done = real_collect(self, *a, **k)
        calls['n'] += 1
        if calls['n'] == 2:
            signal.raise_signal(signal.SIGINT)  # after the 2nd rollout, before its update
        return done

    monkeypatch.setattr(OnPolicyAlgorithm, 'collect_rollouts', collect_then_ctrl_c)
    cut = tmp_path / 'cut'
    rc = train_policy.main(TINY + ['--run-dir', str(cut), '--total-timesteps', '192'])
    err = capsys.readouterr().err
    monkeypatch.setattr(OnPolicyAlgorithm, 'collect_rollouts', real_collect)
    assert rc == 130, err
    assert 'Traceback' not in err and 'KeyboardInterrupt' not in err
    assert f'interrupted at 128 of 192 steps: checkpoint {cut / "checkpoint.zip"} saved' in err
    from sim_training.policy_training.checkpoints import read_state

    saved = read_state(cut / 'checkpoint.zip')
    assert (saved['num_timesteps'], saved['n_updates']) == (128, 2)  # the 2nd update ran
    assert _policy_params(cut / 'checkpoint.zip')  # a loadable model
    state = train_policy.Trainer(train_policy.parse_args(
        TINY + ['--run-dir', str(cut), '--total-timesteps', '192', '--resume'])).train()
    assert (state['num_timesteps'], state['n_updates']) == (192, 3)


def test_policy_workers_ignore_ctrl_c():
    """Subprocess simulator workers leave Ctrl-C to the main process."""
    from sim_training.run_control import ignore_sigint_in_worker

    previous = signal.getsignal(signal.SIGINT)
    try:
        assert ignore_sigint_in_worker(lambda: 'env')() == 'env'
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
