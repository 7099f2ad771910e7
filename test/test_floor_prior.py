"""The floor prior's renderer, odometry and compositing on known answers (no ROS, no GL)."""

import math

import numpy as np
import pytest

from vr_goggles.goggles.floor_prior import (
    SIM_CAMERA,
    CameraGeometry,
    FloorLook,
    FloorPrior,
    FloorRenderer,
    make_floor_prior,
)

NO_GROUT = FloorLook(grout_frac=0.0)
FLIPPED = NO_GROUT.dark + NO_GROUT.light


def test_horizon_row_known_answers():
    assert CameraGeometry(pitch_deg=0.0).horizon_row(64) == pytest.approx(31.5)
    # looking 8 degrees down lifts the horizon by tan(8)/tan(30) of the half height
    want = (1 - math.tan(math.radians(8)) / math.tan(math.radians(30))) * 32 - 0.5
    assert SIM_CAMERA.horizon_row(64) == pytest.approx(want)
    r = FloorRenderer(64, SIM_CAMERA)
    first = math.ceil(want + 0.5)  # the first row whose pixels lie wholly below it
    assert first == 25
    assert not r.valid[:first].any() and r.valid[first:].all()


def test_moving_one_tile_or_turning_a_quarter_swaps_dark_and_light():
    """Parity of the tile under every sub-pixel flips, so the two frames sum to dark + light."""
    r = FloorRenderer(32, SIM_CAMERA, NO_GROUT)
    base = r.render((0.0, 0.0, 0.0)).astype(int)
    for pose in ((NO_GROUT.square_m, 0.0, 0.0), (0.0, NO_GROUT.square_m, 0.0),
                 (0.0, 0.0, math.pi / 2)):
        other = r.render(pose).astype(int)
        assert np.abs(base + other - FLIPPED)[r.valid].max() <= 1
    # two tiles on (forward or sideways) is the same floor
    assert np.array_equal(r.render((2 * NO_GROUT.square_m, 0.0, 0.0)), base)
    assert np.array_equal(r.render((0.0, -2 * NO_GROUT.square_m, 0.0)), base)


def test_near_floor_is_sharp_far_floor_is_averaged():
    """Close tiles span many pixels (pure dark/light); near the horizon they average to grey."""
    r = FloorRenderer(64, SIM_CAMERA, NO_GROUT)
    img = r.render((0.1, 0.1, 0.3))[..., 0].astype(float)
    bottom = img[-4:]
    assert np.isin(bottom, (NO_GROUT.dark, NO_GROUT.light)).mean() > 0.7
    first = int(np.argmax(r.valid.any(axis=1)))
    assert np.abs(img[first] - FLIPPED / 2).mean() < 40


def test_prior_replaces_only_segmented_visible_floor():
    r = FloorRenderer(16, SIM_CAMERA)
    floor_id = 1

    def segment(frames):  # calls the left half floor, everywhere
        labels = np.zeros((len(frames), 16, 16), np.uint8)
        labels[:, :, :8] = floor_id
        return labels

    prior = FloorPrior(segment, floor_id, r)
    camera = np.zeros((16, 16, 3), np.uint8)
    goggled = np.full((16, 16, 3), 7, np.uint8)
    out = prior(camera, goggled, (0.0, 0.0, 0.0))
    want = np.zeros((16, 16), bool)
    want[:, :8] = True
    want &= r.valid  # never above the horizon, whatever the segmenter says
    rendered = r.render((0.0, 0.0, 0.0))
    assert np.array_equal(out[want], rendered[want])
    assert (out[~want] == 7).all()
    assert (goggled == 7).all()  # input untouched
    with pytest.raises(ValueError, match='goggled frame'):
        prior(camera, np.zeros((8, 8, 3), np.uint8), (0.0, 0.0, 0.0))
    # a segmenter at another size than the goggles is resampled to the renderer's
    big = FloorRenderer(32, SIM_CAMERA)
    mask32 = FloorPrior(segment, floor_id, big).floor_mask(camera)
    want32 = np.zeros((32, 32), bool)
    want32[:, :16] = True
    assert np.array_equal(mask32, want32 & big.valid)
    with pytest.raises(ValueError, match='segmenter output'):
        FloorPrior(lambda f: np.zeros((1, 16)), floor_id, r).floor_mask(camera)


def test_paint_fills_segmented_classes_anywhere_and_floor_is_not_paintable():
    r = FloorRenderer(16, SIM_CAMERA)
    floor_id, chair_id = 1, 4

    def segment(frames):  # chair in the top-left corner (above the horizon), floor below
        labels = np.full((len(frames), 16, 16), floor_id, np.uint8)
        labels[:, :3, :3] = chair_id
        labels[:, 14:, 14:] = chair_id  # and a chair on the floor
        return labels

    prior = FloorPrior(segment, floor_id, r, paint={chair_id: (1, 2, 3)})
    out = prior(np.zeros((16, 16, 3), np.uint8), np.full((16, 16, 3), 7, np.uint8),
                (0.3, -0.2, 0.5))
    chair = segment([None])[0] == chair_id
    assert (out[chair] == (1, 2, 3)).all()
    floor = ~chair & r.valid
    assert np.array_equal(out[floor], r.render((0.3, -0.2, 0.5))[floor])
    assert (out[~chair & ~r.valid] == 7).all()

    with pytest.raises(ValueError, match='is the floor'):
        FloorPrior(segment, floor_id, r, paint={floor_id: (0, 0, 0)})
    with pytest.raises(ValueError, match="no sim colour for \\['void'\\]"):
        make_floor_prior(paint=('void',))


def test_semantic_paint_renders_the_sim_frame_from_the_classes():
    """With every class painted, only void pixels keep the generator's output."""
    from vr_goggles.goggles.semantic_paint import SEMANTIC_PAINT, SIM_CLASS_RGB
    from vr_goggles.image import semantics as S

    r = FloorRenderer(16, SIM_CAMERA)
    labels = np.full((16, 16), S.WALL, np.uint8)
    labels[:2] = S.CEILING
    labels[r.valid] = S.FLOOR
    labels[9:12, 3:6] = S.CHAIR
    labels[9:12, 10:13] = S.OBJECT
    labels[0, 0] = S.VOID
    paint = {S.CLASS_NAMES.index(c): SIM_CLASS_RGB[c] for c in SEMANTIC_PAINT}
    prior = FloorPrior(lambda frames: labels[None], S.FLOOR, r, paint=paint)
    pose = (1.0, 2.0, -0.3)
    out = prior(np.zeros((16, 16, 3), np.uint8), np.full((16, 16, 3), 7, np.uint8), pose)
    want = np.full((16, 16, 3), 7, np.uint8)
    for name in SEMANTIC_PAINT:
        want[labels == S.CLASS_NAMES.index(name)] = SIM_CLASS_RGB[name]
    floor = labels == S.FLOOR
    want[floor] = r.render(pose)[floor]
    assert np.array_equal(out, want)
    assert (out[0, 0] == 7).all()  # void: the goggles' pixel
    assert (out[10, 11] == SIM_CLASS_RGB['wall']).all()  # a distractor hidden in the wall


def test_bad_geometry_is_refused():
    with pytest.raises(ValueError, match='pitch_deg'):
        CameraGeometry(pitch_deg=95.0)
    with pytest.raises(ValueError, match='height_m'):
        CameraGeometry(height_m=0.0)
    with pytest.raises(ValueError, match='fov_y_deg'):
        CameraGeometry(fov_y_deg=0.0)


def test_yaw_from_quaternion_known_answers():
    """Odometry's orientation -> heading, as goggles_node reads /odom (REP 103, CCW)."""
    from vr_goggles.goggles.floor_prior import yaw_from_quaternion

    for yaw in (0.0, 0.4, -1.2, 3.0):
        assert yaw_from_quaternion(0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)) == \
            pytest.approx(yaw)
    # a camera rolled 90 degrees about x keeps the heading
    r = math.sqrt(0.5)
    assert yaw_from_quaternion(r, 0.0, 0.0, r) == pytest.approx(0.0)


def test_paint_table_refuses_unknown_classes_by_name():
    from vr_goggles.goggles.semantic_paint import SIM_CLASS_RGB, paint, paint_table
    from vr_goggles.image import semantics as S

    assert paint_table(('chair',)) == {S.CHAIR: SIM_CLASS_RGB['chair']}
    with pytest.raises(ValueError, match="no sim colour for \\['sky'\\]"):
        paint_table(('chair', 'sky'))
    frame = np.zeros((2, 2, 3), np.uint8)
    labels = np.array([[S.CHAIR, S.VOID], [S.WALL, S.CHAIR]], np.uint8)
    out = paint(frame, labels, paint_table(('chair',)))
    assert (out[0, 0] == SIM_CLASS_RGB['chair']).all() and (out[0, 1] == 0).all()
