"""The reaction bench (``python -m vr_goggles.bench.reaction``): its analysis and one real run.

The figures themselves are measured by hand (docs/ros.md); here the analysis gets known answers
on a hand-built record, and one short switch over DDS (PyPI rclpy) must stop the robot on the
black frames and let it drive again after them, whatever the timing.
"""

from __future__ import annotations

import json
import os

import pytest

from vr_goggles.bench.reaction import Record, analyse


def test_analyse_known_answers():
    """Stop: first zero after the first black frame; resume: first motion after the good one."""
    rec = Record(
        commands=[(0.9, 0.2, 0.0), (1.0, 0.2, 0.0), (1.25, 0.0, 0.0), (1.5, 0.0, 0.0),
                  (2.0, 0.0, 0.0), (2.6, 0.0, 0.5)],
        scores=[(1.02, -12.0, 1.0), (1.1, -12.0, 1.0)],
        bad_starts=[1.0], good_starts=[2.0])
    (row,) = analyse(rec)
    assert row['was_driving'] and row['was_held']
    assert row['stop_s'] == pytest.approx(0.25)
    assert row['resume_s'] == pytest.approx(0.6)
    assert row['first_low_score_s'] == pytest.approx(0.02)
    never = analyse(Record(commands=[(0.5, 0.2, 0.0), (1.5, 0.2, 0.0)], bad_starts=[1.0]))
    assert never == [{'was_driving': True, 'stop_s': None, 'first_low_score_s': None,
                      'resume_s': None}]


@pytest.mark.slow
def test_one_switch_stops_and_resumes(tmp_path):
    """Both nodes over DDS: black frames stop the robot, good frames let it drive again."""
    pytest.importorskip('rclpy')
    from vr_goggles.bench.reaction import main

    out = tmp_path / 'reaction.json'
    saved = dict(os.environ)  # the bench picks a private ROS_DOMAIN_ID and thread counts
    try:
        assert main(['--switches', '1', '--warmup', '2', '--good', '1.5', '--bad', '1',
                     '--json', str(out)]) == 0
    finally:
        os.environ.clear()
        os.environ.update(saved)
    res = json.loads(out.read_text())
    (row,) = res['switches']
    assert row['was_driving'] and row['stop_s'] is not None
    assert row['was_held'] and row['resume_s'] is not None
    assert res['setup']['stop_frames'] == 5
