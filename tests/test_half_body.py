"""Half-body augmentation (DATASET.HALF_BODY): the boxes the dataset samples are
the rule (HRNet's) worked out here independently, on the generated sample."""
import cv2
import numpy as np
import pytest

from conftest import coco_config
from hsrnet.config import ConfigError, check_config, get_default_config
from hsrnet.data import build_dataset
from hsrnet.data.half_body import HalfBody, half_body_box, upper_body_ids
from hsrnet.utils.keypoints import COCO_KEYPOINTS, MPII_KEYPOINTS, KeypointLayout
from hsrnet.utils.seeding import seed_sample

COCO_UPPER = {'nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder',
              'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist'}
MPII_UPPER = {'thorax', 'upper_neck', 'head_top', 'r_wrist', 'r_elbow', 'r_shoulder',
              'l_shoulder', 'l_elbow', 'l_wrist'}
PROB = 0.5
SEEDS = range(40)


def expected_box(rec, draws, upper_ids, aspect_ratio, min_joints):
    """The rule, step by step with python lists. `draws` gives the draws in the
    dataset's order: scale, rotation, flip (the existing augmentation), then the
    half-body ones. Returns (center, scale, branch)."""
    sf = 0.3   # the yaml's SCALE_FACTOR
    scale_mult = min(max(draws.randn() * sf + 1, 1 - sf), 1 + sf)
    if draws.random() <= 0.6:
        draws.randn()   # the rotation's draw (its value does not move the box)
    flip = draws.random() <= 0.5
    center, scale, branch = list(rec['center']), list(rec['scale']), 'box'
    vis = [v > 0 for v in rec['joints_3d_vis'][:, 0]]
    if sum(vis) > min_joints and draws.rand() < PROB:
        normal = draws.randn()
        upper = [tuple(rec['joints_3d'][k, :2]) for k in range(len(vis))
                 if vis[k] and k in upper_ids]
        lower = [tuple(rec['joints_3d'][k, :2]) for k in range(len(vis))
                 if vis[k] and k not in upper_ids]
        if normal < 0.5 and len(upper) > 2:
            chosen, branch = upper, 'upper'
        elif len(lower) > 2:
            chosen, branch = lower, 'lower'
        else:
            chosen, branch = upper, 'upper (fallback)'
        if len(chosen) >= 2:
            xs, ys = [p[0] for p in chosen], [p[1] for p in chosen]
            center = [sum(xs) / len(xs), sum(ys) / len(ys)]
            w, h = max(xs) - min(xs), max(ys) - min(ys)
            if w > aspect_ratio * h:
                h = w / aspect_ratio
            elif w < aspect_ratio * h:
                w = h * aspect_ratio
            scale = [w / 200 * 1.5, h / 200 * 1.5]
        else:
            branch = 'too few'
    scale = [s * scale_mult for s in scale]
    return center, scale, flip, branch


def hide(rec, joints):
    """The record with `joints` not visible (coordinates 0, as COCO stores them)."""
    vis, pts = rec['joints_3d_vis'].copy(), rec['joints_3d'].copy()
    vis[joints], pts[joints] = 0, 0
    return dict(rec, joints_3d_vis=vis, joints_3d=pts)


@pytest.fixture(scope='module')
def dataset(sample):
    cfg = coco_config(sample, 'DATASET.HALF_BODY', 'true', 'DATASET.PROB_HALF_BODY', str(PROB))
    ds = build_dataset(cfg, cfg.DATASET.TRAIN_SET, True)
    # visibility patterns that reach every branch of the rule (the generated
    # persons have nearly all joints visible)
    ds.db[1] = hide(ds.db[1], list(range(13, 17)))   # lower body: 2 visible
    ds.db[3] = hide(ds.db[3], list(range(8, 17)))    # 8 visible: never
    return ds


def test_sampled_boxes_follow_the_rule(dataset):
    ds = dataset
    upper_ids = set(range(11))
    aspect_ratio = 192 / 256
    branches = {}
    widths = [cv2.imread(rec['image']).shape[1] for rec in ds.db]
    for idx in range(len(ds)):
        for seed in SEEDS:
            seed_sample(seed)
            got = ds.load_sample(idx)
            draws = np.random.RandomState(seed)
            center, scale, flip, branch = expected_box(ds.db[idx], draws, upper_ids,
                                                       aspect_ratio, 8)
            if flip:
                center[0] = widths[idx] - center[0] - 1
            np.testing.assert_allclose(got['center'], center, rtol=1e-12, atol=1e-9)
            np.testing.assert_allclose(got['scale'], scale, rtol=1e-12)
            branches.setdefault(branch, set()).add(idx)
    # every branch happened, each where its visibility pattern says
    assert set(branches) == {'box', 'upper', 'lower', 'upper (fallback)'}
    assert branches['box'] >= {3} and 3 not in set().union(*(
        v for k, v in branches.items() if k != 'box'))
    assert branches['upper (fallback)'] == {1}
    assert 1 not in branches['lower']
    assert 0 in branches['upper'] and 0 in branches['lower']


def test_joints_stay_and_those_outside_the_crop_lose_their_weight(dataset):
    """An upper-body crop of a standing person leaves the ankles outside: they keep
    their visibility, and their target weight drops to 0."""
    ds = dataset
    off = build_dataset(coco_config(ds.root), ds.cfg.DATASET.TRAIN_SET, True)
    dropped = 0
    for seed in SEEDS:
        seed_sample(seed)
        got = ds.load_sample(0)
        seed_sample(seed)
        plain = off.load_sample(0)
        np.testing.assert_array_equal(got['joints_vis'], plain['joints_vis'])
        assert got['rotation'] == plain['rotation']   # the other draws are unchanged
        _, weight = ds.codec.encode(got['joints'], got['joints_vis'])
        dropped += int(((weight[:, 0] == 0) & (got['joints_vis'][:, 0] > 0)).sum())
    assert dropped > 0


def test_off_by_default_and_not_in_validation(sample):
    cfg = get_default_config()
    assert not cfg.DATASET.HALF_BODY
    assert (cfg.DATASET.PROB_HALF_BODY, cfg.DATASET.NUM_JOINTS_HALF_BODY) == (0.3, 8)
    on = coco_config(sample, 'DATASET.HALF_BODY', 'true')
    assert build_dataset(on, on.DATASET.TEST_SET, False).half_body is None
    off = coco_config(sample)
    assert build_dataset(off, off.DATASET.TRAIN_SET, True).half_body is None


def test_built_in_upper_bodies():
    assert {COCO_KEYPOINTS.names[i] for i in COCO_KEYPOINTS.upper_body} == COCO_UPPER
    assert {MPII_KEYPOINTS.names[i] for i in MPII_KEYPOINTS.upper_body} == MPII_UPPER


def test_custom_upper_body_ids():
    cfg = get_default_config()
    cfg.DATASET.HALF_BODY = True
    custom = KeypointLayout(names=('',) * 6, flip_pairs=())
    with pytest.raises(ConfigError, match='DATASET.UPPER_BODY_IDS'):
        upper_body_ids(cfg, custom)
    cfg.DATASET.UPPER_BODY_IDS = [0, 1, 2]
    assert upper_body_ids(cfg, custom) == [0, 1, 2]
    np.testing.assert_array_equal(HalfBody(cfg, custom, (192, 256)).upper,
                                  [True, True, True, False, False, False])
    # the key wins over the layout's own
    assert upper_body_ids(cfg, COCO_KEYPOINTS) == [0, 1, 2]


@pytest.mark.parametrize('ids', [[0, 6], [-1], [1, 1]])
def test_a_wrong_upper_body_id_is_an_error_naming_the_key(sample, ids):
    cfg = coco_config(sample, 'DATASET.UPPER_BODY_IDS', str(ids).replace("'", ''))
    cfg.MODEL.NUM_JOINTS, cfg.DATASET.OKS_SIGMAS = 6, [0.1] * 6
    cfg.DATASET.FLIP, cfg.TEST.FLIP_TEST = False, False
    with pytest.raises(ConfigError, match='DATASET.UPPER_BODY_IDS') as error:
        build_dataset(cfg, cfg.DATASET.TRAIN_SET, True)
    assert '\n' not in str(error.value)


@pytest.mark.parametrize('key, value', [('PROB_HALF_BODY', 1.5), ('NUM_JOINTS_HALF_BODY', -1)])
def test_check_config_names_bad_half_body_keys(key, value):
    cfg = get_default_config()
    cfg.MODEL.IMAGE_SIZE, cfg.MODEL.EXTRA.HEATMAP_SIZE = [256, 256], [64, 64]
    check_config(cfg)
    cfg.DATASET[key] = value
    with pytest.raises(ConfigError, match='DATASET.' + key):
        check_config(cfg)


def test_rule_edge_cases():
    upper = np.array([True] * 3 + [False] * 3)
    joints = np.array([[0, 0], [10, 40], [20, 0], [0, 100], [30, 160], [60, 100]], float)
    vis = np.ones(6)
    center, scale = half_body_box(joints, vis, upper, True, 0.75)
    np.testing.assert_allclose(center, [10, 40 / 3])
    np.testing.assert_allclose(scale, np.array([30, 40]) / 200 * 1.5)   # h 40 -> w 30
    center, scale = half_body_box(joints, vis, upper, False, 0.75)
    np.testing.assert_allclose(scale, np.array([60, 80]) / 200 * 1.5)   # w 60 -> h 80
    two_upper = np.array([1, 1, 0, 1, 1, 1])   # upper drawn, but only 2 visible: lower
    np.testing.assert_allclose(half_body_box(joints, two_upper, upper, True, 0.75)[0],
                               [30, 120])
    two_each = np.array([1, 1, 0, 1, 1, 0])    # neither has 3: upper
    np.testing.assert_allclose(half_body_box(joints, two_each, upper, False, 0.75)[0], [5, 20])
    one = np.array([1, 0, 0, 1, 0, 0])       # one joint each: no box
    assert half_body_box(joints, one, upper, True, 0.75) is None
    same = np.array([[5, 5]] * 6, float)     # a box of no size: none
    assert half_body_box(same, vis, upper, True, 0.75) is None


def test_reduced_decode_allows_for_half_body_boxes(dataset):
    ds = dataset
    rec = ds.db[0]
    boxes = [half_body_box(rec['joints_3d'], rec['joints_3d_vis'], ds.half_body.upper, c, 0.75)
             for c in (True, False)]
    narrowest = ds.half_body.narrowest(rec['joints_3d'], rec['joints_3d_vis'])
    assert narrowest == min(b[1][0] for b in boxes) < rec['scale'][0]
    assert ds.half_body.narrowest(ds.db[3]['joints_3d'], ds.db[3]['joints_3d_vis']) == np.inf
