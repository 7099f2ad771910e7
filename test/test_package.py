"""Packaging: package.xml, ament layout, the CLI entry point and what a built wheel installs."""

from __future__ import annotations

import configparser
from pathlib import Path
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile

import pytest

import vr_goggles

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = 'vr_goggles'
EXEC_DEPENDS = {'rclpy', 'sensor_msgs', 'geometry_msgs', 'std_msgs', 'cv_bridge',
                'diagnostic_updater', 'launch_ros', 'python3-numpy'}
CONSOLE_SCRIPTS = {'vr-goggles': 'vr_goggles.cli:main',
                   'goggles_node': 'vr_goggles.nodes.goggles_node:main',
                   'policy_node': 'vr_goggles.nodes.policy_node:main',
                   'sim_bridge': 'vr_goggles.nodes.sim_bridge:main'}
EMAIL = re.compile(r'^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$')


@pytest.fixture(scope='module')
def manifest():
    """The parsed package.xml root element."""
    return ET.parse(ROOT / 'package.xml').getroot()


def test_package_xml_format3(manifest):
    """A format-3 manifest named like the package, with the ament_python build type."""
    assert manifest.tag == 'package' and manifest.get('format') == '3'
    assert manifest.findtext('name') == PACKAGE
    assert manifest.findtext('export/build_type') == 'ament_python'
    assert (manifest.findtext('description') or '').strip()
    assert manifest.findtext('license') == 'MIT'


def test_package_xml_version_matches_python(manifest):
    """package.xml, setup.py and vr_goggles.__version__ agree on the version."""
    version = manifest.findtext('version')
    assert re.fullmatch(r'\d+\.\d+\.\d+', version or '')
    assert version == vr_goggles.__version__
    assert f"version='{version}'" in (ROOT / 'setup.py').read_text()


def test_package_xml_maintainer_email(manifest):
    """At least one maintainer, each with a well-formed e-mail (rosdep/bloom refuse others)."""
    maintainers = manifest.findall('maintainer')
    assert maintainers
    for m in maintainers:
        assert EMAIL.match(m.get('email', '')), m.get('email')
        assert (m.text or '').strip()


def test_package_xml_exec_depends(manifest):
    """Every runtime dependency a robot needs is declared (and none twice)."""
    deps = [e.text for e in manifest.findall('exec_depend')]
    assert EXEC_DEPENDS <= set(deps), sorted(EXEC_DEPENDS - set(deps))
    assert len(deps) == len(set(deps)), deps


def test_ament_layout():
    """setup.cfg puts scripts where ``ros2 run`` looks; the resource marker exists."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / 'setup.cfg')
    assert cfg.get('develop', 'script_dir') == '$base/lib/vr_goggles'
    assert cfg.get('install', 'install_scripts') == '$base/lib/vr_goggles'
    assert (ROOT / 'resource' / PACKAGE).is_file()


def test_console_scripts_point_at_real_modules():
    """Every console script in setup.py names a module file that exists."""
    text = (ROOT / 'setup.py').read_text()
    for name, target in CONSOLE_SCRIPTS.items():
        assert f"'{name} = {target}'" in text, name
        module = target.split(':')[0]
        assert (ROOT / (module.replace('.', '/') + '.py')).is_file(), module


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'vr_goggles.cli', *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_version():
    """``vr-goggles --version`` prints the package version and exits 0."""
    proc = _cli('--version')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f'vr-goggles {vr_goggles.__version__}'


def test_cli_help():
    """``vr-goggles --help`` works (every verb module imports cheaply) and lists verbs."""
    proc = _cli('--help')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith('usage: vr-goggles')
    assert 'VERB' in proc.stdout


def test_cli_without_verb_is_usage_error():
    """No verb prints help and exits 2, like argparse errors."""
    proc = _cli()
    assert proc.returncode == 2 and 'usage: vr-goggles' in proc.stdout


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    """Build a wheel from a clean copy of the sources (the work tree stays untouched)."""
    pytest.importorskip('setuptools')
    tmp = tmp_path_factory.mktemp('wheel')
    src = tmp / 'src'
    src.mkdir()
    for name in ('setup.py', 'setup.cfg', 'pyproject.toml', 'README.md', 'LICENSE',
                 'package.xml'):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc', '*.egg-info')
    for name in ('resource', 'launch', 'config', 'vr_goggles', 'sim_training'):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
    proc = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
                           '--no-build-isolation', '--no-index', '-q', '-w', str(tmp / 'out'),
                           str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = (tmp / 'out').glob('*.whl')
    with zipfile.ZipFile(whl) as z:
        return whl.name, set(z.namelist()), z.read(
            f'{PACKAGE}-{vr_goggles.__version__}.dist-info/entry_points.txt').decode()


def test_wheel_installs_ament_files(wheel):
    """The wheel's data files land in share/ where ament and ros2 launch find them."""
    _, names, _ = wheel
    data = f'{PACKAGE}-{vr_goggles.__version__}.data/data/'
    want = {'share/ament_index/resource_index/packages/vr_goggles',
            'share/vr_goggles/package.xml'}
    want |= {f'share/vr_goggles/launch/{p.name}' for p in (ROOT / 'launch').glob('*.launch.py')}
    want |= {f'share/vr_goggles/config/{p.name}' for p in (ROOT / 'config').glob('*.yaml')}
    missing = sorted(w for w in want if data + w not in names)
    assert not missing, missing
    assert any('/launch/' in n for n in names) and any('/config/' in n for n in names)


def test_wheel_contents(wheel):
    """Package code and shipped weights are in; tests are not; console scripts declared."""
    _, names, entry_points = wheel
    assert 'vr_goggles/__init__.py' in names and 'vr_goggles/image/codec.py' in names
    assert not any(n.startswith('test/') for n in names)
    for p in (ROOT / 'vr_goggles' / 'weights').glob('*'):
        if p.suffix in ('.safetensors', '.json', '.onnx'):
            assert f'vr_goggles/weights/{p.name}' in names
    for name, target in CONSOLE_SCRIPTS.items():
        assert f'{name} = {target}' in entry_points


def test_setup_py_runs_from_a_symlink_install_build_dir(tmp_path):
    """As colcon build --symlink-install does: setup.py run in build/vr_goggles/ among links."""
    build = tmp_path / 'build' / 'vr_goggles'
    build.mkdir(parents=True)
    for name in ('setup.py', 'setup.cfg', 'package.xml', 'vr_goggles', 'resource', 'launch',
                 'config'):
        (build / name).symlink_to(ROOT / name)
    proc = subprocess.run([sys.executable, 'setup.py', '--name', '--version'], cwd=build,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ['vr_goggles', '0.1.0']
