"""Style gates (flake8, pydocstyle, ruff) as tests, so ``colcon test`` and CI enforce them.

Each tool runs as a subprocess on the package's Python sources with the configuration in
``setup.cfg`` / ``pyproject.toml``; findings are printed so a failure says what to fix. A tool
that is not installed is skipped with the command to install it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ('vr_goggles', 'sim_training', 'launch', 'test', 'setup.py')


def _targets() -> list[str]:
    return [t for t in TARGETS if (ROOT / t).exists()]


def _command(module: str, executable: str) -> list[str]:
    """Prefer ``python -m tool`` from this interpreter, else a tool on PATH, else skip."""
    if importlib.util.find_spec(module) is not None:
        return [sys.executable, '-m', module]
    found = shutil.which(executable)
    if found:
        return [found]
    pytest.skip(f'{executable} is not installed (pip install {executable}, or .[test])')


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd + _targets(), cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    findings = (proc.stdout + proc.stderr).strip()
    if findings:
        print(findings)
    assert proc.returncode == 0, f'{" ".join(cmd)} found problems:\n{findings}'


def test_flake8():
    """Run flake8 with setup.cfg's [flake8] (99 columns)."""
    _run(_command('flake8', 'flake8'))


def test_pydocstyle():
    """Run pydocstyle with setup.cfg's [pydocstyle] (pep257)."""
    _run(_command('pydocstyle', 'pydocstyle'))


def test_ruff():
    """Run ruff check with pyproject.toml's [tool.ruff] (isort, bugbear, pyupgrade, pep257)."""
    _run(_command('ruff', 'ruff') + ['check', '--no-cache'])


def test_sources_compile_for_python_310():
    """No 3.11+-only syntax: every source parses with the py310 grammar (feature_version)."""
    import ast

    bad = []
    for target in _targets():
        path = ROOT / target
        files = [path] if path.is_file() else sorted(path.rglob('*.py'))
        for f in files:
            try:
                ast.parse(f.read_text(encoding='utf-8'), str(f), feature_version=(3, 10))
            except SyntaxError as e:
                bad.append(f'{f.relative_to(ROOT)}:{e.lineno}: {e.msg}')
    assert not bad, 'not Python 3.10 syntax:\n' + '\n'.join(bad)
