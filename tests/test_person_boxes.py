"""Person box sources of infer.py: boxes file, whole image, HOG, ONNX detector."""
import json
import warnings

import numpy as np
import pytest

from hsrnet.apps.person_boxes import (BoxesFile, HogPeopleDetector, OnnxPersonDetector, WholeImage,
                               _hog_class)
from hsrnet.apps.media import Frame
from tiny_detectors import (AMBIGUOUS, AMBIGUOUS_AS_ROWS, AMBIGUOUS_AS_YOLO, YOLO_BOXES,
                            ambiguous_detector, export_fixed, unknown_detector, yolo_head)


def frame(width=200, height=100, **kw):
    return Frame(np.zeros((height, width, 3), np.uint8), kw.pop('index', 0),
                 kw.pop('image_id', 0), **kw)


def test_whole_image():
    np.testing.assert_array_equal(WholeImage()(frame()), [[0, 0, 200, 100, 1]])


def test_boxes_file_matches_by_name_then_id(tmp_path):
    path = tmp_path / 'boxes.json'
    path.write_text(json.dumps([
        {'file_name': 'dir/a.jpg', 'category_id': 1, 'bbox': [1, 2, 3, 4], 'score': 0.9},
        {'image_id': 7, 'category_id': 1, 'bbox': [5, 6, 7, 8], 'score': 0.8},
        {'image_id': 7, 'category_id': 1, 'bbox': [5, 6, 7, 8], 'score': 0.1},   # too weak
        {'image_id': 7, 'category_id': 3, 'bbox': [5, 6, 7, 8], 'score': 0.9},   # not a person
    ]))
    boxes = BoxesFile(str(path), min_score=0.3)
    np.testing.assert_array_equal(boxes(frame(file_name='a.jpg', image_id=7)), [[1, 2, 3, 4, .9]])
    np.testing.assert_array_equal(boxes(frame(file_name='b.jpg', image_id=7)), [[5, 6, 7, 8, .8]])
    assert boxes(frame(file_name='c.jpg', image_id=8)).shape == (0, 5)
    boxes.check_inputs([('x.jpg', 7)], 'pictures')
    with pytest.raises(ValueError, match='names none of the inputs of pictures'):
        boxes.check_inputs([('x.jpg', 8)], 'pictures')


def test_boxes_file_skips_unusable_boxes_with_one_warning(tmp_path, caplog):
    """--boxes gets the detection file's checks: boxes that are not finite or have
    no area are left out, counted in one warning that names the first."""
    path = tmp_path / 'boxes.json'
    path.write_text(json.dumps([
        {'image_id': 7, 'bbox': [1, 2, 0, 4], 'score': 0.9},          # no width
        {'image_id': 7, 'bbox': [5, 6, 7, 8], 'score': 0.8},
        {'image_id': 7, 'bbox': [1, 2, 3, 4], 'score': float('nan')},
    ]))   # json.dumps writes NaN, as detectors' json often holds
    with caplog.at_level('WARNING'):
        boxes = BoxesFile(str(path))
    np.testing.assert_array_equal(boxes(frame(image_id=7)), [[5, 6, 7, 8, .8]])
    warned = [r.getMessage() for r in caplog.records if 'skipped' in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith(
        '{}: skipped 2 detection entries with a non-finite or non-positive box or score '
        '(the first: entry 0, image 7'.format(path))


@pytest.mark.parametrize('content, message', [
    ('[{"image_id": true, "bbox": [1, 2, 3, 4]}]', 'image_id and category_id must be integers'),
    ('{"a": 1}', 'expected a COCO results list'),
    ('[{"image_id": 1, "bbox": [1, 2]}]', 'entry 0 is malformed'),
    ('[{"bbox": [1, 2, 3, 4]}]', 'entry 0 is malformed'),
    ('not json', 'not valid json'),
])
def test_malformed_boxes_file_names_it(tmp_path, content, message):
    path = tmp_path / 'boxes.json'
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        BoxesFile(str(path))
    assert str(path) in str(info.value)


def test_hog_detector_or_a_clear_refusal():
    if _hog_class() is None:
        with pytest.raises(ValueError, match='no HOG people detector.*--whole-image'):
            HogPeopleDetector()
    else:
        boxes = HogPeopleDetector()(frame(320, 240))
        assert boxes.shape[1] == 5


@pytest.fixture(scope='module')
def onnx_detector(tmp_path_factory):
    """A stand-in detector: whatever the picture, two rows in letterboxed input
    pixels: a person [40, 20, 140, 220] score 0.9, a class-2 object."""
    pytest.importorskip('onnxruntime')
    import torch

    class Fixed(torch.nn.Module):
        def forward(self, x):
            rows = torch.tensor([[[40.0, 20.0, 140.0, 220.0, 0.9, 0.0],
                                  [0.0, 0.0, 50.0, 50.0, 0.95, 2.0]]])
            return rows + 0.0 * x.mean()

    path = tmp_path_factory.mktemp('det') / 'det.onnx'
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')        # the legacy exporter's deprecation notice
        torch.onnx.export(Fixed(), (torch.zeros(1, 3, 256, 256),), str(path), dynamo=False,
                          input_names=['images'], output_names=['detections'])
    return str(path)


def test_onnx_detector_maps_boxes_back_to_the_picture(onnx_detector):
    detector = OnnxPersonDetector(onnx_detector)
    assert detector.size == (256, 256)
    # 512x256 picture -> zoom 0.5 into the 256x256 input: coordinates double, the
    # box is clipped to the picture (y2 440 -> 256), the class-2 row is dropped
    boxes = detector(frame(512, 256))
    np.testing.assert_allclose(boxes, [[80, 40, 200, 216, 0.9]], atol=1e-4)


def test_onnx_detector_refuses_other_files(tmp_path):
    pytest.importorskip('onnxruntime')
    bad = tmp_path / 'bad.onnx'
    bad.write_bytes(b'nope')
    with pytest.raises(ValueError, match='bad.onnx: not an ONNX model'):
        OnnxPersonDetector(str(bad))


# --- the detector output layouts (apps.detector_layouts) -------------------------------

@pytest.fixture(scope='module')
def layouts(tmp_path_factory):
    pytest.importorskip('onnxruntime')
    import torch
    folder = tmp_path_factory.mktemp('layouts')
    dets = torch.tensor([[[20, 10, 120, 110, 0.9], [0, 0, 50, 50, 0.95],
                          [130, 20, 200, 120, 0.1], [130, 20, 200, 120, 0.6]]])
    labels = torch.tensor([[0, 2, 0, 0]], dtype=torch.int64)
    return {
        'yolo': export_fixed(folder / 'yolo.onnx', {'output0': yolo_head()}),
        'yolo_open': export_fixed(folder / 'yolo_open.onnx', {'output0': yolo_head()},
                                  open_axis={'output0': 1}),
        'rows_open': export_fixed(folder / 'rows_open.onnx', {'det': torch.tensor(
            [AMBIGUOUS[:2]], dtype=torch.float32)}, open_axis={'det': 1}),
        'ambiguous': ambiguous_detector(folder / 'ambiguous.onnx'),
        'dets_labels': export_fixed(folder / 'dets_labels.onnx',
                                    {'dets': dets, 'labels': labels}),
        'labels_first': export_fixed(folder / 'labels_first.onnx',
                                     {'labels': labels, 'dets': dets}),
        'unnamed_pair': export_fixed(folder / 'unnamed_pair.onnx',
                                     {'out0': dets, 'out1': labels}),
        'unknown': unknown_detector(folder / 'unknown.onnx'),
    }


def declared_shape(path):
    import onnxruntime as ort
    return ort.InferenceSession(path, providers=['CPUExecutionProvider']).get_outputs()[0].shape


def test_yolo_raw_head_is_decoded_nmsed_and_mapped_back(layouts):
    assert declared_shape(layouts['yolo']) == [1, 6, 32]
    assert not any(isinstance(d, int) for d in declared_shape(layouts['yolo_open']))
    for name in ('yolo', 'yolo_open'):          # declared shape, or one found by a run
        detector = OnnxPersonDetector(layouts[name])
        assert detector.layout == 'yolo' and 'too' not in detector.name
        np.testing.assert_allclose(detector(frame(512, 256)), YOLO_BOXES, atol=1e-3)
    lower = OnnxPersonDetector(layouts['yolo'], min_score=0.1)(frame(512, 256))
    assert len(lower) == 3 and lower[-1, 4] == pytest.approx(0.2)    # the weak person


@pytest.mark.parametrize('name', ['dets_labels', 'labels_first', 'unnamed_pair'])
def test_dets_labels_keeps_person_rows(layouts, name):
    detector = OnnxPersonDetector(layouts[name])
    assert detector.layout == 'dets-labels'
    np.testing.assert_allclose(detector(frame(256, 256)),
                               [[20, 10, 100, 100, 0.9], [130, 20, 70, 100, 0.6]], atol=1e-4)


def test_ambiguous_shape_is_rows_unless_told(layouts):
    auto = OnnxPersonDetector(layouts['ambiguous'])
    assert auto.layout == 'rows' and 'fits yolo too' in auto.name
    np.testing.assert_allclose(auto(frame(256, 256)), AMBIGUOUS_AS_ROWS, atol=1e-4)
    told = OnnxPersonDetector(layouts['ambiguous'], layout='yolo')
    assert told.layout == 'yolo'
    np.testing.assert_allclose(told(frame(256, 256)), AMBIGUOUS_AS_YOLO, atol=1e-4)
    # every dimension open in the file: a run finds (1, 2, 6), rows only
    assert not any(isinstance(d, int) for d in declared_shape(layouts['rows_open']))
    rows = OnnxPersonDetector(layouts['rows_open'])
    assert rows.layout == 'rows' and 'too' not in rows.name
    np.testing.assert_allclose(rows(frame(256, 256)), AMBIGUOUS_AS_ROWS, atol=1e-4)


def test_unknown_layout_lists_the_outputs_and_the_layouts(layouts):
    path = layouts['unknown']
    with pytest.raises(ValueError) as info:
        OnnxPersonDetector(path)
    message = str(info.value)
    assert '\n' not in message and message.startswith(path)
    for part in ('no detector output layout fits', 'weird (1, 3, 2)', 'extra (4,)',
                 'accepted: rows: ', 'yolo: one output (1, 4 + C, A)', 'dets-labels: '):
        assert part in message, (part, message)
    with pytest.raises(ValueError, match='--detector-layout dets-labels does not fit its '
                                         r'outputs: output0 \(1, 6, 32\)'):
        OnnxPersonDetector(layouts['yolo'], layout='dets-labels')
    with pytest.raises(ValueError, match='detector layout must be one of'):
        OnnxPersonDetector(layouts['yolo'], layout='ssd')


@pytest.mark.parametrize('shapes, names, layout, also', [
    ([[1, 'N', 6]], ['a'], 'rows', None),
    ([['N', 5]], ['a'], 'rows', None),
    ([[1, 84, 'anchors']], ['a'], 'yolo', None),
    ([[1, 84, 8400]], ['a'], 'yolo', None),
    ([[1, 6, 6]], ['a'], 'rows', 'yolo'),
    ([[1, 100, 5], [1, 100]], ['x', 'y'], 'dets-labels', None),
    ([[1, 100, 5], [1, 99]], ['x', 'y'], 'rows', 'yolo'),    # not a pair: N differs
    ([[1, 'a', 'b']], ['a'], None, None),                  # open: decided by a run
    ([[2, 84, 8400]], ['a'], None, None),                  # a batch of 2
])
def test_recognition_rule(shapes, names, layout, also):
    from hsrnet.apps.detector_layouts import recognise
    found = recognise(names, shapes)
    assert (found and found[0]) == layout or (found is None and layout is None)
    if found:
        assert found[2] == also
