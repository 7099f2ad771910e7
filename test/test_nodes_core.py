"""ROS-free tests of what the nodes are made of: latest-frame slot, rate/latency stats, params."""

from __future__ import annotations

import ast
import math
from pathlib import Path
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import yaml

from vr_goggles.nodes import params as P
from vr_goggles.nodes.latest import LatestSlot
from vr_goggles.nodes.rate_stats import LatencyStats, RateMeter, percentile

ROOT = Path(__file__).resolve().parents[1]
#: The only modules allowed to import rclpy (the package must import without it).
ROS_MODULES = {'goggles_node.py', 'policy_node.py', 'sim_bridge.py', 'ros_common.py'}


# -- LatestSlot ---------------------------------------------------------------------------------
def test_slot_keeps_only_newest_and_counts_drops():
    """Slot keeps only newest and counts drops."""
    slot = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True
    assert slot.put(3) is True
    assert slot.get(timeout=0) == 3
    assert slot.get_nowait() is None
    slot.mark_processed()
    c = slot.counts()
    assert (c.received, c.dropped, c.taken, c.processed, c.pending) == (3, 2, 1, 1, False)


def test_slot_get_times_out_and_close_wakes_waiters():
    """Slot get times out and close wakes waiters."""
    slot = LatestSlot()
    t0 = time.monotonic()
    assert slot.get(timeout=0.05) is None
    assert time.monotonic() - t0 >= 0.04
    got = []
    th = threading.Thread(target=lambda: got.append(slot.get()))
    th.start()
    time.sleep(0.05)
    slot.close()
    th.join(timeout=2)
    assert not th.is_alive() and got == [None] and slot.closed
    slot.open()
    slot.put('x')
    assert slot.get(timeout=1) == 'x'


def test_slot_refuses_none_and_clear_counts_a_drop():
    """Slot refuses none and clear counts a drop."""
    slot = LatestSlot()
    with pytest.raises(ValueError, match='None'):
        slot.put(None)
    slot.put(1)
    slot.clear()
    assert slot.counts().dropped == 1 and slot.get_nowait() is None
    slot.reset_counts()
    assert slot.counts().received == 0


def test_slot_invariant_under_a_fast_producer_and_slow_consumer():
    """Slot invariant under a fast producer and slow consumer."""
    slot = LatestSlot()
    seen = []

    def consume():
        while (item := slot.get()) is not None:
            seen.append(item)
            time.sleep(0.002)

    th = threading.Thread(target=consume)
    th.start()
    for i in range(2000):
        slot.put(i)
    time.sleep(0.02)
    slot.close()
    th.join(timeout=5)
    c = slot.counts()
    assert c.received == 2000 == c.dropped + c.taken + int(c.pending)
    assert c.dropped > 0 and seen == sorted(seen) and len(seen) == c.taken


# -- rate / latency -----------------------------------------------------------------------------
class FakeClock:
    """A settable monotonic clock."""

    def __init__(self):
        self.t = 100.0

    def __call__(self):
        """Now."""
        return self.t


def test_rate_meter_measures_and_decays():
    """Rate meter measures and decays."""
    clock = FakeClock()
    meter = RateMeter(window=2.0, clock=clock)
    assert meter.rate() == 0.0
    for _ in range(11):
        meter.tick()
        clock.t += 0.1
    clock.t -= 0.1
    assert meter.rate() == pytest.approx(10.0)
    clock.t += 1.0  # no events for a second: the rate falls
    assert meter.rate() < 7.0
    clock.t += 5.0
    assert meter.rate() == 0.0 and meter.total == 11
    with pytest.raises(ValueError):
        RateMeter(window=0)


def test_percentile_matches_numpy(rng):
    """Percentile matches numpy."""
    data = rng.exponential(size=101).tolist()
    for q in (0, 1, 50, 90, 99, 100):
        assert percentile(data, q) == pytest.approx(np.percentile(data, q))
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(data, 101)


def test_latency_stats_window_and_summary():
    """Latency stats window and summary."""
    stats = LatencyStats(maxlen=3)
    assert stats.summary()['count'] == 0 and math.isnan(stats.summary()['p50'])
    for s in (0.5, 0.001, 0.002, 0.003):  # the 0.5 s outlier falls out of the window
        stats.add(s)
    s = stats.summary()
    assert s['count'] == 3 and stats.total == 4
    assert s['p50'] == pytest.approx(2.0) and s['max'] == pytest.approx(3.0)


# -- parameters ---------------------------------------------------------------------------------
ALL_SPECS = {'goggles': P.GOGGLES_PARAMS, 'policy': P.POLICY_PARAMS,
             'sim_bridge': P.SIM_BRIDGE_PARAMS}


@pytest.mark.parametrize('node', sorted(ALL_SPECS))
def test_defaults_are_valid_and_names_unique(node):
    """Defaults are valid and names unique."""
    specs = ALL_SPECS[node]
    assert len({s.name for s in specs}) == len(specs)
    for s in specs:
        assert s.check(s.default) is None, s.name
        assert s.description.strip(), s.name
        if s.range is not None:
            assert type(s.default) in (int, float), s.name


def test_checks_name_the_parameter():
    """Checks name the parameter."""
    specs = P.specs_by_name(P.GOGGLES_PARAMS)
    assert 'engine' in specs['engine'].check('tensorflow')
    assert 'max_age' in specs['max_age'].check(-1.0)
    assert specs['max_age'].check(2) is None  # ints are fine for float parameters
    assert 'expected float' in specs['max_age'].check('1')
    assert 'finite' in specs['max_age'].check(math.inf)
    assert 'output_size' in specs['output_size'].check('big')
    assert 'expected bool' in specs['compressed_input'].check(1)
    assert specs['output_size'].check('64x48') is None
    errors = P.validate(P.GOGGLES_PARAMS, {'modle': 'x', 'engine': 'torch'})
    assert len(errors) == 1 and 'modle' in errors[0]


def test_output_size_parsing_and_target():
    """Output size parsing and target."""
    assert P.parse_output_size('model') == 'model'
    assert P.parse_output_size(' Input ') == 'input'
    assert P.parse_output_size('128x96') == (96, 128)
    assert P.parse_output_size('128 X 96') == (96, 128)
    for bad in ('', '0x10', '12x', 'x', '-1x5', '99999x1'):
        with pytest.raises(ValueError, match='output_size'):
            P.parse_output_size(bad)
    from vr_goggles.goggles.facade import target_size

    assert target_size('model', (480, 640), (64, 64)) == (64, 64)
    assert target_size('input', (480, 640), (64, 64)) == (480, 640)
    assert target_size((96, 128), (480, 640), (64, 64)) == (96, 128)


def test_clamp_and_age():
    """Clamp and age."""
    assert P.clamp_velocity(1.0, -3.0, 0.5, 1.0) == (0.5, -1.0)
    assert P.clamp_velocity(-0.2, 0.1, 0.5, 1.0) == (-0.2, 0.1)
    assert P.clamp_velocity(math.nan, math.inf, 0.5, 1.0) == (0.0, 0.0)
    assert P.too_old(10_000_000_000, 8_000_000_000, 1.0)
    assert not P.too_old(10_000_000_000, 9_500_000_000, 1.0)
    assert not P.too_old(10_000_000_000, 0, 0.0)  # 0 disables
    assert P.frame_age(1_000_000_000, 2_000_000_000) == pytest.approx(-1.0)
    from types import SimpleNamespace as NS

    msg = NS(header=NS(stamp=NS(sec=12, nanosec=345)))
    assert P.stamp_ns(msg) == 12_000_000_345
    assert P.stamp_ns(NS(header=NS(stamp=NS(sec=0, nanosec=0)))) == 0


@pytest.mark.parametrize('name,node', [('goggles.yaml', 'goggles'), ('policy.yaml', 'policy')])
def test_config_files_match_the_declared_parameters(name, node):
    """Config files match the declared parameters."""
    doc = yaml.safe_load((ROOT / 'config' / name).read_text())
    values = doc['/**']['ros__parameters']
    specs = P.specs_by_name(ALL_SPECS[node])
    assert P.validate(ALL_SPECS[node], values) == []
    assert set(values) == set(specs), 'config must list every parameter (it is the docs)'
    for key, value in values.items():
        assert value == specs[key].default, f'{name}: {key} differs from the node default'


def test_semantic_goggles_config_sets_only_the_floor_prior():
    """config/goggles_semantic.yaml: valid goggles_node values, the semantic paint, no more."""
    from vr_goggles.goggles.semantic_paint import SEMANTIC_PAINT

    doc = yaml.safe_load((ROOT / 'config' / 'goggles_semantic.yaml').read_text())
    values = doc['/**']['ros__parameters']
    assert P.validate(ALL_SPECS['goggles'], values) == []
    assert values == {'floor_prior': True, 'floor_segmenter': 'segmenter_real',
                      'floor_paint': ','.join(SEMANTIC_PAINT)}


def test_docs_mention_every_parameter():
    """Docs mention every parameter."""
    text = (ROOT / 'docs' / 'ros.md').read_text()
    for node, specs in ALL_SPECS.items():
        for s in specs:
            assert f'`{s.name}`' in text, f'docs/ros.md lacks {node} parameter {s.name}'


# -- rclpy stays optional -----------------------------------------------------------------------
def test_only_node_modules_import_rclpy_at_module_level():
    """Outside the node modules rclpy may only be imported lazily, inside a function."""
    offenders = []
    for path in (ROOT / 'vr_goggles').rglob('*.py'):
        if path.parent.name == 'nodes' and path.name in ROS_MODULES:
            continue
        tree = ast.parse(path.read_text())
        kinds = (ast.Import, ast.ImportFrom, ast.Try, ast.If)
        top = [n for n in tree.body if isinstance(n, kinds)]
        for node in (n for t in top for n in ast.walk(t)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ''] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split('.')[0] == 'rclpy' for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_package_imports_without_rclpy():
    """Package imports without rclpy."""
    code = ('import sys; sys.modules["rclpy"] = None\n'
            'import vr_goggles, vr_goggles.nodes, vr_goggles.nodes.params\n'
            'import vr_goggles.nodes.latest\n'
            'import vr_goggles.nodes.rate_stats\n'
            'try:\n'
            '    import vr_goggles.nodes.goggles_node\n'
            'except ImportError:\n'
            '    pass\n'
            'else:\n'
            '    raise SystemExit("goggles_node imported without rclpy?")\n')
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr


# -- domain-score stop (#37) --------------------------------------------------------------------
def test_domain_score_engine_choices_are_the_cores():
    """goggles_node offers exactly the engines DomainScore.load takes."""
    from vr_goggles.goggles.domain_score import ENGINES

    assert sorted(P.DOMAIN_SCORE_ENGINE_CHOICES) == sorted(ENGINES)
    specs = P.specs_by_name(P.GOGGLES_PARAMS)
    assert 'domain_score_engine' in specs['domain_score_engine'].check('tensorrt')
    assert specs['domain_score'].read_only and specs['domain_score'].check('') is None
    policy = P.specs_by_name(P.POLICY_PARAMS)
    assert not any(policy[n].read_only for n in (
        'stop_on_domain_score', 'domain_stop_frames', 'domain_resume_frames',
        'domain_threshold_shift'))
    assert 'domain_stop_frames' in policy['domain_stop_frames'].check(0)


def test_beside_follows_the_resolved_base():
    """``<image_sim>/domain_score`` follows a remapped image_sim; relative without resolver."""
    from types import SimpleNamespace as NS

    remapped = NS(resolve_topic_name=lambda name: '/camera/image_sim')
    assert P.beside(remapped, 'image_sim', 'domain_score') == '/camera/image_sim/domain_score'
    assert P.beside(object(), 'image_sim', 'domain_score') == 'image_sim/domain_score'
