"""The synthetic COCO-format sample dataset (tools/make_sample_data.py)."""
import contextlib
import io
import json
import os

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from conftest import load_tool
from hsrnet.samples.synthetic import DETECTION_FILE, KEYPOINT_NAMES, SKELETON, generate

SPLITS = ('train2017', 'val2017')
ANNOTATION_KEYS = {'segmentation', 'num_keypoints', 'area', 'iscrowd', 'keypoints',
                   'image_id', 'bbox', 'category_id', 'id'}
L_WRIST, R_WRIST = KEYPOINT_NAMES.index('left_wrist'), KEYPOINT_NAMES.index('right_wrist')


def ann_file(root, split):
    return os.path.join(root, 'annotations', 'person_keypoints_%s.json' % split)


def load_json(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def default_data(tmp_path_factory):
    """The default dataset, generated once for this module."""
    root = str(tmp_path_factory.mktemp('sample'))
    summary = generate(root)
    return root, summary, {s: load_json(ann_file(root, s)) for s in SPLITS}


def keypoints_of(data):
    """(N, 17, 3) keypoints of the people with keypoints, their annotations."""
    anns = [a for a in data['annotations'] if a['num_keypoints'] > 0]
    return np.array([a['keypoints'] for a in anns], float).reshape(-1, 17, 3), anns


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    tool = load_tool('make_sample_data')
    runs = {}
    for name, seed in (('a', 3), ('b', 3), ('c', 4)):
        out = str(tmp_path / name)
        assert tool.main(['--out', out, '--seed', str(seed), '--train-images', '3',
                          '--val-images', '2']) == 0
        files = sorted(os.path.relpath(os.path.join(d, f), out)
                       for d, _, names in os.walk(out) for f in names)
        runs[name] = {f: open(os.path.join(out, f), 'rb').read() for f in files}
    assert len(runs['a']) == 2 + 1 + 3 + 2
    assert runs['a'] == runs['b']
    assert runs['a'].keys() == runs['c'].keys()
    assert all(runs['a'][f] != runs['c'][f] for f in runs['a'] if f.endswith('.jpg'))


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    tool = load_tool('make_sample_data')
    assert tool.main(['--out', str(tmp_path / 'x'), '--train-images', '0']) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'train_images' in err
    with pytest.raises(ValueError, match='seed'):
        generate(str(tmp_path / 'y'), seed=-1)


def test_default_counts(default_data):
    _, summary, data = default_data
    assert summary['train2017']['persons'] >= 400
    assert summary['val2017']['persons'] >= 100
    for split in SPLITS:
        assert summary[split]['images'] == len(data[split]['images'])
        assert summary[split]['persons'] == len(keypoints_of(data[split])[1])


def test_coco_layout_and_fields(default_data):
    root, _, data = default_data
    assert sorted(os.listdir(root)) == ['annotations', 'images', 'person_detection_results']
    assert os.listdir(os.path.join(root, 'person_detection_results')) == [DETECTION_FILE]
    ids = {}
    for split in SPLITS:
        d = data[split]
        assert list(d) == ['info', 'licenses', 'images', 'annotations', 'categories']
        assert d['categories'] == [{'supercategory': 'person', 'id': 1, 'name': 'person',
                                    'keypoints': KEYPOINT_NAMES, 'skeleton': SKELETON}]
        assert len(SKELETON) == 19 and KEYPOINT_NAMES[9] == 'left_wrist'
        files = sorted(os.listdir(os.path.join(root, 'images', split)))
        assert files == sorted('%012d.jpg' % im['id'] for im in d['images'])
        assert all(im['file_name'] == '%012d.jpg' % im['id'] for im in d['images'])
        ids[split] = {im['id'] for im in d['images']}
        for im in d['images'][:5]:
            pixels = cv2.imread(os.path.join(root, 'images', split, im['file_name']))
            assert pixels.shape == (im['height'], im['width'], 3)
            assert 240 <= min(pixels.shape[:2]) and max(pixels.shape[:2]) <= 480
        ann_ids = [a['id'] for a in d['annotations']]
        assert len(set(ann_ids)) == len(ann_ids)
        for a in d['annotations']:
            assert set(a) == ANNOTATION_KEYS
            assert a['category_id'] == 1 and a['iscrowd'] == 0 and a['image_id'] in ids[split]
            assert all(len(p) >= 6 and len(p) % 2 == 0 for p in a['segmentation'])
            x, y, w, h = a['bbox']
            assert 0 < a['area'] <= w * h
            assert all(isinstance(v, int) for v in a['keypoints'])
    assert not ids['train2017'] & ids['val2017']


def test_pycocotools_loads_and_scores_the_ground_truth_perfectly(default_data):
    root, _, _ = default_data
    with contextlib.redirect_stdout(io.StringIO()):
        train = COCO(ann_file(root, 'train2017'))
        val = COCO(ann_file(root, 'val2017'))
    assert train.getCatIds() == [1] and len(train.getImgIds()) > len(val.getImgIds())
    # The annotations as results: every OKS is 1, so AP must be exactly 1.
    results = [{'image_id': a['image_id'], 'category_id': 1, 'score': 1.0,
                'keypoints': a['keypoints']}
               for a in val.dataset['annotations'] if a['num_keypoints'] > 0]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(val, val.loadRes(results), 'keypoints')
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)


def test_visibility_flags_follow_coco(default_data):
    _, _, data = default_data
    for split in SPLITS:
        images = {im['id']: im for im in data[split]['images']}
        kpts, anns = keypoints_of(data[split])
        v = kpts[..., 2]
        assert set(np.unique(v)) == {0, 1, 2}
        assert np.all(kpts[v == 0] == 0)
        np.testing.assert_array_equal((v > 0).sum(1), [a['num_keypoints'] for a in anns])
        assert np.all((v > 0).sum(1) >= 3)
        assert (v == 2).mean() > 0.8 and 0.02 < (v == 1).mean() < 0.2
        size = np.array([[images[a['image_id']]['width'], images[a['image_id']]['height']]
                         for a in anns], float)[:, None]
        box = np.array([a['bbox'] for a in anns])[:, None]
        xy, labelled = kpts[..., :2], v > 0
        assert np.all(((xy >= 0) & (xy <= size - 1))[labelled])
        assert np.all(((xy >= box[..., :2]) & (xy <= box[..., :2] + box[..., 2:]))[labelled])
        # People without keypoints (small ones far behind, cut-off ones) are kept, like COCO.
        empty = [a for a in data[split]['annotations'] if a['num_keypoints'] == 0]
        assert empty and all(not any(a['keypoints']) for a in empty)


def test_people_face_the_camera(default_data):
    """Left shoulder to the image-right of the hips-to-shoulders axis, always."""
    _, _, data = default_data
    kpts, _ = keypoints_of(data['train2017'])
    sho, hip = kpts[:, 5:7], kpts[:, 11:13]
    labelled = np.all(np.concatenate([sho, hip], 1)[..., 2] > 0, 1)
    up = (sho[:, 0, :2] + sho[:, 1, :2] - hip[:, 0, :2] - hip[:, 1, :2])[labelled]
    across = (sho[:, 0, :2] - sho[:, 1, :2])[labelled]
    assert labelled.sum() > 300
    assert np.all(up[:, 0] * across[:, 1] - up[:, 1] * across[:, 0] > 0)


def test_left_limbs_warm_right_limbs_cool(default_data):
    root, _, data = default_data
    images = {im['id']: im for im in data['val2017']['images']}
    warm = {L_WRIST: [], R_WRIST: []}
    for ann in keypoints_of(data['val2017'])[1]:
        pixels = cv2.imread(os.path.join(root, 'images', 'val2017',
                                         images[ann['image_id']]['file_name']))
        kpts = np.array(ann['keypoints']).reshape(17, 3)
        for joint in warm:
            x, y, v = kpts[joint]
            if v == 2:
                blue, _, red = pixels[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].reshape(-1, 3) \
                    .mean(0)
                warm[joint].append(red > blue + 40)
    assert len(warm[L_WRIST]) > 80 and len(warm[R_WRIST]) > 80
    assert np.mean(warm[L_WRIST]) > 0.95
    assert np.mean(warm[R_WRIST]) < 0.05


def test_detections_look_like_a_detector_file(default_data):
    root, _, data = default_data
    detections = load_json(os.path.join(root, 'person_detection_results', DETECTION_FILE))
    val = data['val2017']
    images = {im['id']: im for im in val['images']}
    assert isinstance(detections, list) and detections
    for det in detections:
        assert set(det) == {'image_id', 'category_id', 'bbox', 'score'}
        assert det['category_id'] == 1 and det['image_id'] in images and 0 < det['score'] <= 1
        x, y, w, h = det['bbox']
        im = images[det['image_id']]
        assert w > 0 and h > 0 and x >= 0 and y >= 0
        assert x + w <= im['width'] + 1e-6 and y + h <= im['height'] + 1e-6
    boxes = {}
    for det in detections:
        boxes.setdefault(det['image_id'], []).append(det)
    found = []
    for ann in keypoints_of(val)[1]:
        best = max((iou(ann['bbox'], d['bbox']), d['score'])
                   for d in boxes.get(ann['image_id'], [{'bbox': [0, 0, 1, 1], 'score': 0}]))
        found.append(best[0] > 0.7 and best[1] > 0.8)
    assert 0.85 < np.mean(found) < 1.0  # most people are found, a few missed
    scores = np.array([d['score'] for d in detections])
    assert (scores < 0.5).sum() > len(found) * 0.3  # duplicates and false positives


def iou(a, b):
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)
