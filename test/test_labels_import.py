"""Labels from labelme and CVAT exports -> mono8 class ids (issue #39, item 2), known answers."""

from __future__ import annotations

import json
from pathlib import Path
import zipfile

import cv2
import numpy as np
import pytest

from sim_training.labels_import import LabelImportError, import_labels, main

TABLE = {'classes': [{'id': 0, 'name': 'void'}, {'id': 1, 'name': 'floor'},
                     {'id': 4, 'name': 'chair'}]}


def _labelme(path: Path, shapes: list[dict], h: int = 6, w: int = 8) -> Path:
    path.write_text(json.dumps({'version': '5.4.1', 'shapes': shapes, 'imagePath': 'a.png',
                                'imageHeight': h, 'imageWidth': w, 'imageData': None}))
    return path


def test_labelme_rectangles_and_polygons_known_answer(tmp_path):
    """Shapes drawn in order over the background; ids from the class table."""
    (tmp_path / 'classes.json').write_text(json.dumps(TABLE))
    _labelme(tmp_path / 'a.json', [
        {'label': 'floor', 'shape_type': 'rectangle', 'points': [[0, 3], [7, 5]]},
        {'label': 'chair', 'shape_type': 'polygon', 'points': [[2, 1], [4, 1], [4, 4], [2, 4]]},
    ])
    written = import_labels([tmp_path / 'a.json'], tmp_path / 'labels',
                            classes=tmp_path / 'classes.json')
    got = cv2.imread(str(written[0]), cv2.IMREAD_UNCHANGED)
    want = np.zeros((6, 8), np.uint8)
    want[3:6, 0:8] = 1
    want[1:5, 2:5] = 4  # the later chair covers the floor
    assert got.dtype == np.uint8 and got.ndim == 2
    np.testing.assert_array_equal(got, want)


def test_cvat_segmentation_mask_export_known_answer(tmp_path):
    """CVAT Segmentation mask 1.1 (.zip): colours -> names (labelmap.txt) -> ids."""
    mask = np.zeros((4, 5, 3), np.uint8)  # RGB
    mask[0:2] = (255, 0, 0)
    mask[3, 4] = (0, 255, 0)
    ok, png = cv2.imencode('.png', mask[:, :, ::-1])
    z = tmp_path / 'cvat.zip'
    with zipfile.ZipFile(z, 'w') as f:
        f.writestr('labelmap.txt', '# label:color_rgb:parts:actions\nbackground:0,0,0::\n'
                                   'chair:255,0,0::\nfloor:0,255,0::\n')
        f.writestr('SegmentationClass/frame_000.png', png.tobytes())
    table = tmp_path / 'classes.json'
    table.write_text(json.dumps({'classes': [*TABLE['classes'],
                                             {'id': 9, 'name': 'background'}]}))
    (out,) = import_labels([z], tmp_path / 'labels', classes=table)
    assert out.name == 'frame_000.png'
    want = np.full((4, 5), 9, np.uint8)
    want[0:2] = 4
    want[3, 4] = 1
    np.testing.assert_array_equal(cv2.imread(str(out), cv2.IMREAD_UNCHANGED), want)


def test_unknown_class_name_is_refused_with_file_and_reason(tmp_path, capsys):
    """A name the table lacks: the file, the name and the table; nothing written."""
    _labelme(tmp_path / 'ok.json', [{'label': 'floor', 'shape_type': 'rectangle',
                                     'points': [[0, 0], [1, 1]]}])
    _labelme(tmp_path / 'b.json', [{'label': 'sofa', 'shape_type': 'rectangle',
                                    'points': [[0, 0], [1, 1]]}])
    with pytest.raises(LabelImportError, match=r"b.json \(shape 0\): unknown class name 'sofa'"):
        import_labels([tmp_path], tmp_path / 'labels')
    assert not (tmp_path / 'labels').exists()
    assert main([str(tmp_path), '--out', str(tmp_path / 'labels')]) == 1
    err = capsys.readouterr().err
    assert 'b.json' in err and "'sofa'" in err and 'nothing written' in err


def test_mask_of_another_size_is_refused(tmp_path):
    """A labelme 8x6 label file for a 10x6 image; a CVAT mask of another size: refused."""
    images = tmp_path / 'images'
    images.mkdir()
    cv2.imwrite(str(images / 'a.png'), np.zeros((6, 10, 3), np.uint8))
    _labelme(tmp_path / 'a.json', [])
    with pytest.raises(LabelImportError, match=r'a.json: labels are 8x6 but the image .* is '
                                               r'10x6'):
        import_labels([tmp_path / 'a.json'], tmp_path / 'labels', images=images)
    cvat = tmp_path / 'cvat'
    (cvat / 'SegmentationClass').mkdir(parents=True)
    (cvat / 'labelmap.txt').write_text('void:0,0,0::\n')
    cv2.imwrite(str(cvat / 'SegmentationClass' / 'a.png'), np.zeros((5, 10, 3), np.uint8))
    with pytest.raises(LabelImportError, match='labels are 10x5 but the image'):
        import_labels([cvat], tmp_path / 'labels', images=images)
    assert not (tmp_path / 'labels').exists()


def test_shapes_without_area_and_unknown_colours_are_refused(tmp_path):
    """A labelme line, a CVAT colour missing from labelmap.txt."""
    _labelme(tmp_path / 'l.json', [{'label': 'floor', 'shape_type': 'line',
                                    'points': [[0, 0], [3, 3]]}])
    with pytest.raises(LabelImportError, match='is a line, which has no area'):
        import_labels([tmp_path / 'l.json'], tmp_path / 'o')
    cvat = tmp_path / 'cvat'
    (cvat / 'SegmentationClass').mkdir(parents=True)
    (cvat / 'labelmap.txt').write_text('void:0,0,0::\n')
    m = np.zeros((2, 2, 3), np.uint8)
    m[0, 0] = (1, 2, 3)
    cv2.imwrite(str(cvat / 'SegmentationClass' / 'x.png'), m)
    with pytest.raises(LabelImportError, match=r'x.png: colour \(3, 2, 1\) is not in labelmap'):
        import_labels([cvat], tmp_path / 'o')


def test_the_verb_runs_the_importer(tmp_path, capsys):
    """vr-goggles labels import forwards to the importer in a subprocess."""
    from vr_goggles.cli import main as cli

    _labelme(tmp_path / 'a.json', [{'label': 'chair', 'shape_type': 'rectangle',
                                    'points': [[0, 0], [2, 2]]}])
    assert cli(['labels', 'import', str(tmp_path / 'a.json'), '--out',
                str(tmp_path / 'labels')]) == 0
    got = cv2.imread(str(tmp_path / 'labels' / 'a.png'), cv2.IMREAD_UNCHANGED)
    assert got[1, 1] == 4 and got[5, 7] == 0  # the project's table: chair = 4, void = 0
