"""Launch files: constructed for real where launch_ros is installed, else checked statically.

The static checks read the files' syntax trees: declared arguments, executables that exist
as console scripts, parameter names the nodes declare, config/launch paths that exist.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path
import re

import pytest

from vr_goggles.nodes import params as P

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / 'launch'
EXPECTED_ARGS = {
    'goggles.launch.py': {'camera', 'image_sim', 'model', 'engine', 'use_sim_time',
                          'params_file'},
    'navigation.launch.py': {'policy', 'cmd_vel', 'image_sim', 'use_sim_time',
                             'policy_params_file'},
    'sim.launch.py': {'domain', 'split', 'episodes', 'step_period'},
}
#: Arguments a launch file gets from the files it includes.
INCLUDES = {'navigation.launch.py': ['goggles.launch.py'],
            'sim.launch.py': ['navigation.launch.py']}
SPECS = {'goggles_node': P.GOGGLES_PARAMS, 'policy_node': P.POLICY_PARAMS,
         'sim_bridge': P.SIM_BRIDGE_PARAMS}
ROS_BUILTIN_PARAMS = {'use_sim_time'}


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, 'id', getattr(n.func, 'attr', None)) == name]


def _kw(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def _declared(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {c.args[0].value for c in _calls(tree, 'DeclareLaunchArgument')}
    for inc in INCLUDES.get(path.name, []):
        names |= _declared(LAUNCH / inc)
    return names


def _console_scripts() -> set[str]:
    text = (ROOT / 'setup.py').read_text()
    return set(re.findall(r"'(\w+) = vr_goggles\.nodes\.\w+:main'", text))


@pytest.mark.parametrize('name', sorted(EXPECTED_ARGS))
def test_launch_file_static(name):
    """Arguments declared, nodes exist, parameters are the nodes' own, paths exist."""
    path = LAUNCH / name
    tree = ast.parse(path.read_text(), str(path), feature_version=(3, 10))
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in funcs
    declared = _declared(path)
    assert EXPECTED_ARGS[name] <= declared, EXPECTED_ARGS[name] - declared
    used = {c.args[0].value for c in _calls(tree, 'LaunchConfiguration')}
    used |= {c.args[0].value for c in _calls(tree, 'arg') if c.args
             and isinstance(c.args[0], ast.Constant)}
    assert used <= declared, f'undeclared launch arguments used: {used - declared}'
    assert 'get_package_share_directory' in path.read_text()
    for call in _calls(tree, 'Node'):
        executable = _kw(call, 'executable').value
        assert executable in _console_scripts(), executable
        assert _kw(call, 'package').value == 'vr_goggles'
        known = {s.name for s in SPECS[executable]} | ROS_BUILTIN_PARAMS
        for d in ast.walk(_kw(call, 'parameters')):
            if isinstance(d, ast.Dict):
                keys = {k.value for k in d.keys}
                assert keys <= known, f'{name}: {executable} has no parameter {keys - known}'
    for call in _calls(tree, 'join'):
        parts = [a.value for a in call.args if isinstance(a, ast.Constant)]
        if parts and parts[0] in ('config', 'launch'):
            assert (ROOT.joinpath(*parts)).exists(), parts


@pytest.fixture
def share_dir(tmp_path, monkeypatch):
    """Make get_package_share_directory('vr_goggles') work from the source tree if needed."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        get_package_share_directory('vr_goggles')
        return
    except (PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH unset
        pass
    index = tmp_path / 'share' / 'ament_index' / 'resource_index' / 'packages'
    index.mkdir(parents=True)
    (index / 'vr_goggles').touch()
    share = tmp_path / 'share' / 'vr_goggles'
    share.mkdir()
    for d in ('launch', 'config'):
        (share / d).symlink_to(ROOT / d)
    monkeypatch.setenv('AMENT_PREFIX_PATH', os.pathsep.join(
        [str(tmp_path), *filter(None, [os.environ.get('AMENT_PREFIX_PATH')])]))


@pytest.mark.parametrize('name', sorted(EXPECTED_ARGS))
def test_launch_description_builds(name, share_dir):
    """generate_launch_description() runs and declares (with includes) the arguments."""
    pytest.importorskip('launch')
    pytest.importorskip('launch_ros.actions', reason='launch_ros (and composition_interfaces) '
                        'are not on PyPI: only the static checks ran')
    spec = importlib.util.spec_from_file_location(name.replace('.', '_'), LAUNCH / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    names = {a.name for a in ld.get_launch_arguments()}
    assert EXPECTED_ARGS[name] <= names and _declared(LAUNCH / name) == names


def test_image_sim_is_one_remappable_topic_for_both_nodes():
    """``image_sim:=/camera/image_sim`` moves the goggles' output and the policy's input."""
    remapped = {}
    for name in ('goggles.launch.py', 'navigation.launch.py'):
        tree = ast.parse((LAUNCH / name).read_text())
        for call in _calls(tree, 'Node'):
            pairs = _kw(call, 'remappings')
            for pair in getattr(pairs, 'elts', []):
                src, dst = pair.elts
                if src.value == 'image_sim':
                    remapped[_kw(call, 'executable').value] = ast.unparse(dst)
    assert remapped == {'goggles_node': "arg('image_sim')", 'policy_node': "arg('image_sim')"}
