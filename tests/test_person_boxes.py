"""Person box sources of infer.py: boxes file, whole image, HOG, ONNX detector."""
import json
import warnings

import numpy as np
import pytest

from hsrnet.apps.person_boxes import (BoxesFile, HogPeopleDetector, OnnxPersonDetector, WholeImage,
                               _hog_class)
from hsrnet.apps.media import Frame


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


@pytest.mark.parametrize('content, message', [
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
