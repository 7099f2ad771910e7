"""The channel-statistics baseline on known answers."""

import numpy as np
import pytest

from vr_goggles.goggles.stats_match import ChannelStats, StatsMatcher


def test_stats_of_known_images():
    a = np.zeros((2, 2, 3), np.uint8)
    b = np.full((2, 2, 3), 100, np.uint8)
    s = ChannelStats.of([a, b])
    assert s.mean == pytest.approx((50, 50, 50))
    assert s.std == pytest.approx((50, 50, 50))


def test_matched_frame_has_target_statistics():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 120, (32, 32, 3), dtype=np.uint8)  # dark, low-contrast frame
    target = ChannelStats(mean=(140.0, 120.0, 100.0), std=(30.0, 20.0, 10.0))
    out = StatsMatcher(target)(img)
    got = ChannelStats.of([out])
    assert got.mean == pytest.approx(target.mean, abs=1.0)
    assert got.std == pytest.approx(target.std, abs=1.0)


def test_flat_frame_maps_to_target_mean_and_bad_shape_is_value_error():
    target = ChannelStats(mean=(10.0, 20.0, 30.0), std=(5.0, 5.0, 5.0))
    out = StatsMatcher(target)(np.full((4, 4, 3), 200, np.uint8))
    assert (out == np.array([10, 20, 30], np.uint8)).all()
    with pytest.raises(ValueError, match='image'):
        StatsMatcher(target)(np.zeros((4, 4), np.uint8))
