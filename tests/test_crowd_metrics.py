"""CrowdPose's and OCHuman's keypoints and metrics on hand-built cases whose AP is
worked out by hand (pycocotools: 10 OKS thresholds .50:.05:.95, 101 recall points).

Two images with one person each. A detection at OKS 0.72 matches at the thresholds
.50 ... .70 (5 of 10) and misses at .75 ... .95: AP 0.5, AP .5 1, AP .75 0. One
image right and the other wrong: recall 0.5 at best; the right one scored first
gives precision 1 on the recall points 0 ... 0.5 (51 of 101): AP 51/101; the wrong
one first, precision 1/2 there: AP 25.5/101."""
import contextlib
import io
import json
import math

import numpy as np
import pytest
from pycocotools.coco import COCO

from hsrnet.evaluation import COCOKeypointMetric, CrowdPoseMetric, crowd_buckets
from hsrnet.evaluation.crowdpose import CROWD_INDEX_BOUNDS
from hsrnet.utils.errors import DataError
from hsrnet.utils.keypoints import COCO_KEYPOINTS, CROWDPOSE_KEYPOINTS

BOX = [50.0, 40.0, 60.0, 100.0]          # x, y, w, h of every person
OKS = 0.72
HALF = 51 / 101                           # AP with recall 0.5 at precision 1


def same(values, expected):
    """The named values are the expected ones (to 1e-12: precision is tp / (tp + fp
    + eps) in pycocotools)."""
    return {k: values[k] for k in expected} == pytest.approx(expected, abs=1e-12)


# -- the layouts ------------------------------------------------------------------

def test_crowdpose_layout_matches_crowdposetools():
    kp = CROWDPOSE_KEYPOINTS.check()
    assert kp.num_joints == 14 and len(kp.sigmas) == 14
    assert kp.names[:12] == COCO_KEYPOINTS.names[5:] and kp.names[12:] == ('head', 'neck')
    expected = np.array([.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89,
                         .79, .79]) / 10
    assert np.allclose(kp.sigmas, expected, rtol=0, atol=1e-12)
    assert kp.flip_pairs == ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11))
    assert kp.upper_body == (0, 1, 2, 3, 4, 5, 12, 13)
    assert sorted(set(range(14)) - set(kp.upper_body)) == list(range(6, 12))


@pytest.mark.parametrize('kp', [CROWDPOSE_KEYPOINTS, COCO_KEYPOINTS], ids=['crowdpose', 'coco'])
def test_flip_pairs_are_left_right_twins(kp):
    for left, right in kp.flip_pairs:
        assert kp.names[left].startswith('left_') and kp.names[right].startswith('right_')
        assert kp.names[left][5:] == kp.names[right][6:]
        assert kp.sigmas[left] == kp.sigmas[right]
    paired = {j for pair in kp.flip_pairs for j in pair}
    assert all(not kp.names[j].startswith(('left_', 'right_')) for j in
               set(range(kp.num_joints)) - paired)


# -- hand-built ground truth ----------------------------------------------------

def person(num_joints, seed):
    """Keypoints (J, 3) inside BOX, all visible."""
    rng = np.random.default_rng(seed)
    xy = np.array(BOX[:2]) + rng.uniform([5, 5], [BOX[2] - 5, BOX[3] - 5], (num_joints, 2))
    return np.concatenate([np.round(xy), np.full((num_joints, 1), 2.0)], axis=1)


def ground_truth(path, num_joints, crowd_indices=None, area=None):
    """Two 200x200 images (ids 1, 2), one person each (ann ids 1, 2) in BOX; a
    crowdIndex per image when given; 'area' in the annotations when given."""
    images, anns = [], []
    for i in (1, 2):
        image = {'id': i, 'file_name': '{}.jpg'.format(i), 'width': 200, 'height': 200}
        if crowd_indices is not None:
            image['crowdIndex'] = crowd_indices[i - 1]
        images.append(image)
        ann = {'id': i, 'image_id': i, 'category_id': 1, 'iscrowd': 0, 'bbox': list(BOX),
               'num_keypoints': num_joints,
               'keypoints': person(num_joints, i).reshape(-1).tolist()}
        if area is not None:
            ann['area'] = area
        anns.append(ann)
    doc = {'images': images, 'annotations': anns,
           'categories': [{'id': 1, 'name': 'person', 'supercategory': 'person'}]}
    path.write_text(json.dumps(doc))
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def result(coco, image_id, score, shift=None):
    """The ground truth of image_id as a detection, its joints moved by `shift` (J,)
    pixels to the right."""
    kpts = np.array(coco.imgToAnns[image_id][0]['keypoints'], dtype=np.float64).reshape(-1, 3)
    if shift is not None:
        kpts[:, 0] += shift
    return {'image_id': image_id, 'category_id': 1, 'keypoints': kpts.reshape(-1).tolist(),
            'score': score}


def shift_for_oks(sigmas, scale, oks):
    """Per-joint offsets that give every joint exp(-d^2 / (2 s (2 sigma)^2)) = oks."""
    return np.sqrt(-2 * scale * (2 * np.asarray(sigmas)) ** 2 * math.log(oks))


def crowdpose_metric(tmp_path, crowd_indices=(0.05, 0.9), area=None):
    coco = ground_truth(tmp_path / 'crowdpose_val.json', 14, list(crowd_indices), area)
    return CrowdPoseMetric(coco, {}, 'val', 0.9, 0.2, sigmas=CROWDPOSE_KEYPOINTS.sigmas)


# -- CrowdPose ----------------------------------------------------------------------

def test_crowdpose_perfect_predictions(tmp_path):
    metric = crowdpose_metric(tmp_path)
    values = metric.score([result(metric.coco, 1, 0.9), result(metric.coco, 2, 0.8)])
    assert list(values) == ['AP', 'AP .5', 'AP .75', 'AR', 'AR .5', 'AR .75',
                            'AP easy', 'AP medium', 'AP hard']
    assert same(values, {'AP': 1, 'AP .5': 1, 'AP .75': 1, 'AR': 1, 'AR .5': 1, 'AR .75': 1,
                         'AP easy': 1, 'AP medium': -1, 'AP hard': 1})   # no medium image


@pytest.mark.parametrize('right_first', [True, False])
def test_crowdpose_one_image_right_one_wrong(tmp_path, right_first):
    metric = crowdpose_metric(tmp_path)
    right, wrong = (0.9, 0.8) if right_first else (0.8, 0.9)
    values = metric.score([result(metric.coco, 1, right),
                           result(metric.coco, 2, wrong, shift=np.full(14, 500.0))])
    assert same(values, {'AP': HALF if right_first else HALF / 2, 'AR': 0.5,
                         'AP easy': 1, 'AP medium': -1, 'AP hard': 0})


def test_crowdpose_oks_uses_its_sigmas_and_053_box_area(tmp_path):
    """The files' 'area' (here the box area) is replaced by 0.53 x the box area:
    with the file's, the OKS would be 0.72 ** 0.53 = 0.84 and AP 0.7."""
    metric = crowdpose_metric(tmp_path, crowd_indices=(0.5, 0.5), area=BOX[2] * BOX[3])
    assert metric.coco.anns[1]['area'] == pytest.approx(0.53 * BOX[2] * BOX[3])
    shift = shift_for_oks(CROWDPOSE_KEYPOINTS.sigmas, 0.53 * BOX[2] * BOX[3], OKS)
    values = metric.score([result(metric.coco, i, 0.9, shift) for i in (1, 2)])
    assert same(values, {'AP': 0.5, 'AP .5': 1, 'AP .75': 0, 'AR': 0.5,
                         'AP easy': -1, 'AP medium': 0.5, 'AP hard': -1})


def test_crowd_buckets_follow_crowdposetools_boundaries():
    assert CROWD_INDEX_BOUNDS == (0.2, 0.8)
    indices = [0.0, 0.1999, 0.2, 0.5, 0.7999, 0.8, 1.0]
    images = [{'id': i, 'crowdIndex': c} for i, c in enumerate(indices)]
    assert crowd_buckets(images) == {'easy': [0, 1], 'medium': [2, 3, 4], 'hard': [5, 6]}
    assert crowd_buckets(images, (0.1, 0.8))['easy'] == [0]
    with pytest.raises(DataError, match='image 7 has no "crowdIndex"'):
        crowd_buckets(images + [{'id': 7}])


def test_crowdpose_metric_needs_crowd_indices(tmp_path):
    coco = ground_truth(tmp_path / 'crowdpose_val.json', 14)
    with pytest.raises(DataError, match='crowdIndex'):
        CrowdPoseMetric(coco, {}, 'val', 0.9, 0.2, sigmas=CROWDPOSE_KEYPOINTS.sigmas)


# -- OCHuman: COCO's evaluation ------------------------------------------------------

def ochuman_metric(tmp_path):
    name = 'ochuman_coco_format_test_range_0.00_1.00.json'
    coco = ground_truth(tmp_path / name, 17, area=BOX[2] * BOX[3])
    return COCOKeypointMetric(coco, {}, 'test', 0.9, 0.2, sigmas=COCO_KEYPOINTS.sigmas)


def test_ochuman_perfect_and_half_right(tmp_path):
    metric = ochuman_metric(tmp_path)
    perfect = metric.score([result(metric.coco, 1, 0.9), result(metric.coco, 2, 0.8)])
    assert same(perfect, {'AP': 1, 'AP .5': 1, 'AP .75': 1, 'AR': 1})
    half = metric.score([result(metric.coco, 1, 0.9),
                         result(metric.coco, 2, 0.8, shift=np.full(17, 500.0))])
    assert same(half, {'AP': HALF, 'AR': 0.5})


def test_ochuman_oks_uses_coco_sigmas_and_the_file_area(tmp_path):
    metric = ochuman_metric(tmp_path)
    shift = shift_for_oks(COCO_KEYPOINTS.sigmas, BOX[2] * BOX[3], OKS)
    values = metric.score([result(metric.coco, i, 0.9, shift) for i in (1, 2)])
    assert same(values, {'AP': 0.5, 'AP .5': 1, 'AP .75': 0, 'AR': 0.5})
