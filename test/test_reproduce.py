"""``vr-goggles reproduce`` and the shipped cards' ``reproduce`` sections.

No real training here: fake cards whose commands are ``python -c ...`` show the order, the
working folder and the stop at the first failure; the shipped cards are checked for a complete
section whose commits exist in this history and whose flags today's scripts still accept.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
import re
import shlex
import subprocess
import sys

import pytest

from vr_goggles import weights
from vr_goggles.cli import main
from vr_goggles.commands.reproduce import parse_steps

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ('goggles_cyclegan', 'goggles_cycada', 'goggles_vr_goggles', 'segmenter',
           'segmenter_dr', 'segmenter_dr2', 'segmenter_real', 'policy_sim', 'policy_randomized',
           'domain_score', 'segmenter_fda')
POLICIES = ('policy_sim', 'policy_randomized')  # PPO in the simulator: no dataset to collect


def log(word: str, *, exit_code: int = 0) -> str:
    """A card command that appends ``word;`` to log.txt in its working folder."""
    code = f"open('log.txt', 'a').write('{word};')"
    if exit_code:
        code = f'import sys; {code}; sys.exit({exit_code})'
    return shlex.join(['python', '-c', code])


def fake_card(tmp_path: Path, reproduce: dict, sha256: str = '') -> Path:
    """A card file (no tensors needed) with the given reproduce section."""
    path = tmp_path / 'fake.json'
    path.write_text(json.dumps({
        'name': 'fake', 'architecture': 'ResnetGenerator', 'kwargs': {}, 'input_size': [8, 8],
        'sha256': sha256,
        'reproduce': {'trained_at': '0' * 40, 'shipped_in': '0' * 40, 'select': [],
                      **reproduce}}))
    return path


def test_dry_run_prints_the_commands_of_a_card(tmp_path, capsys):
    """--dry-run prints every command of the card in step order, the note, and runs nothing."""
    out = tmp_path / 'work'
    assert main(['reproduce', 'goggles_vr_goggles', '--out', str(out), '--dry-run']) == 0
    lines = capsys.readouterr().out.splitlines()
    r = weights.load_card(weights.resolve('goggles_vr_goggles')).reproduce
    commands = [*r['data'], *r['train'], *r['select']]
    printed = [line for line in lines if line.startswith('python ')]
    assert printed == commands
    assert lines.index('# data') < lines.index('# train') < lines.index('# select')
    assert f'cd {out}' in lines
    assert any('17-19%' in line and '36%' in line for line in lines)
    assert not out.exists()


def test_runs_in_order_in_out_and_stops_at_the_first_failure(tmp_path, capfd, monkeypatch):
    """Commands run in --out in step order; the failing one ends the run with its exit code."""
    card = fake_card(tmp_path, {
        'data': [log('data')],
        'train': [log('train1'), log('fail', exit_code=3), log('never')],
        'select': [log('select')]})
    monkeypatch.chdir(tmp_path)
    out = tmp_path / 'work'
    rc = main(['reproduce', str(card), '--out', str(out)])
    captured = capfd.readouterr()
    assert rc == 3
    assert (out / 'log.txt').read_text() == 'data;train1;fail;'
    assert not (tmp_path / 'log.txt').exists()
    assert 'train command 3/5 failed (exit code 3)' in captured.err
    assert log('fail', exit_code=3) in captured.err


def test_a_full_run_uses_this_interpreter_and_compares_the_output(tmp_path, capfd):
    """``python`` is this interpreter; a result equal to the card's SHA-256 is reported so."""
    write = shlex.join(['python', '-c', "import sys; open('exe.txt', 'w').write(sys.executable);"
                                        " open('result.bin', 'wb').write(b'abc')"])
    card = fake_card(tmp_path, {'data': [log('data')], 'train': [write],
                                'select': [log('select')], 'output': 'result.bin'},
                     sha256=hashlib.sha256(b'abc').hexdigest())
    out = tmp_path / 'work'
    assert main(['reproduce', str(card), '--out', str(out)]) == 0
    assert (out / 'log.txt').read_text() == 'data;select;'
    assert (out / 'exe.txt').read_text() == sys.executable
    assert 'identical to the shipped fake' in capfd.readouterr().out


def test_steps_selects_what_runs(tmp_path, capfd):
    """--steps runs only the named steps, always in data, train, select order."""
    card = fake_card(tmp_path, {'data': [log('data')], 'train': [log('train')],
                                'select': [log('select')]})
    out = tmp_path / 'work'
    assert main(['reproduce', str(card), '--out', str(out), '--steps', 'select,train']) == 0
    assert (out / 'log.txt').read_text() == 'train;select;'
    assert parse_steps('select, data') == ('data', 'select')
    with pytest.raises(SystemExit) as e:
        main(['reproduce', str(card), '--steps', 'train,bogus'])
    assert e.value.code == 2
    assert 'subset of data,train,select' in capfd.readouterr().err


def test_refuses_a_folder_where_the_commands_would_overwrite_shipped_weights(tmp_path, capfd):
    """The folder holding the shipped package is refused before anything runs.

    Some card commands write vr_goggles/weights/NAME relative to the working folder.
    """
    marker = tmp_path / 'ran.txt'
    card = fake_card(tmp_path, {'train': [shlex.join(
        ['python', '-c', f'open({str(marker)!r}, "w")'])]})
    rc = main(['reproduce', str(card), '--out', str(weights.SHIPPED_DIR.parents[1])])
    assert rc == 1 and 'overwrite the shipped weights' in capfd.readouterr().err
    assert not marker.exists()


def test_a_card_without_reproduce_is_a_clear_error(tmp_path, capfd):
    """A card with no reproduce section says so and points at its training_command."""
    path = tmp_path / 'old.json'
    path.write_text(json.dumps({'name': 'old', 'architecture': 'ResnetGenerator', 'kwargs': {},
                                'input_size': [8, 8], 'training_command': 'python -m x'}))
    assert main(['reproduce', str(path), '--dry-run']) == 1
    assert "card 'old' records no reproduce section" in capfd.readouterr().err


# ------------------------------------------------------------------------------------------
# The shipped cards


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(['git', *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope='module')
def history():
    """The checkout's full git history, or a skip (an installed copy or a shallow clone)."""
    if not (ROOT / '.git').exists():
        pytest.skip('not a git checkout')
    if _git('rev-parse', '--is-shallow-repository').stdout.strip() != 'false':
        pytest.skip('shallow clone: the recorded commits may be missing')
    return ROOT


@pytest.mark.parametrize('name', SHIPPED)
def test_every_shipped_card_has_a_complete_reproduce_section(name, history):
    """trained_at and shipped_in are commits of this history; the steps are filled in."""
    card = weights.load_card(weights.SHIPPED_DIR / f'{name}.json')
    r = card.reproduce
    for key in ('trained_at', 'shipped_in'):
        sha = r[key]
        assert re.fullmatch('[0-9a-f]{40}', sha), (key, sha)
        assert _git('cat-file', '-e', f'{sha}^{{commit}}').returncode == 0, (key, sha)
        assert _git('merge-base', '--is-ancestor', sha, 'HEAD').returncode == 0, (key, sha)
    assert r['trained_at_basis'] and r['note'] and r['output']
    assert r['train'] and all(c.startswith('python -m sim_training.') for c in r['train'])
    if name in POLICIES:
        assert r['data'] == [] and 'No dataset' in r['note']
    else:
        assert r['data'] and all(c.startswith('python -m sim_training.collect ')
                                 for c in r['data'])
    # the file as shipped now appeared in shipped_in
    blob = _git('rev-parse', f'HEAD:vr_goggles/weights/{name}.safetensors').stdout.strip()
    shipped = _git('rev-parse', f'{r["shipped_in"]}:vr_goggles/weights/{name}.safetensors')
    assert shipped.stdout.strip() == blob


def test_the_vr_goggles_card_says_where_it_and_todays_code_disagree():
    """The known disagreement is on the card with its figures (issue #35)."""
    note = weights.load_card(weights.SHIPPED_DIR / 'goggles_vr_goggles.json').reproduce['note']
    assert 'DISAGREE' in note and '17-19%' in note and '36%' in note


def _help_of(module: str) -> str:
    proc = subprocess.run([sys.executable, '-m', module, '--help'], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f'{module} --help failed:\n{proc.stderr[-2000:]}'
    return proc.stdout


@pytest.mark.slow
def test_card_commands_use_only_flags_todays_scripts_accept():
    """Every ``--flag`` of every shipped card's commands is in its script's ``--help``.

    A reproduce command that names a removed flag would fail hours into a run.
    """
    if importlib.util.find_spec('gymnasium') is None:
        pytest.skip('the training extra is not installed: pip install -e ".[train]"')
    flags: dict[str, set[tuple[str, str]]] = {}
    for name in SHIPPED:
        r = weights.load_card(weights.SHIPPED_DIR / f'{name}.json').reproduce
        for cmd in (*r['data'], *r['train'], *r['select']):
            argv = shlex.split(cmd)
            assert argv[:2] == ['python', '-m'], cmd
            flags.setdefault(argv[2], set()).update(
                (a.split('=')[0], name) for a in argv[3:] if a.startswith('--'))
    unknown = []
    for module, used in sorted(flags.items()):
        text = _help_of(module)
        unknown += [f'{card}: {module} {flag}' for flag, card in sorted(used)
                    if not re.search(rf'(?<![\w-]){re.escape(flag)}(?![\w-])', text)]
    assert not unknown, 'flags the scripts no longer accept:\n' + '\n'.join(unknown)
