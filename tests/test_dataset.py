import importlib
import json
import os
import pickle
import shutil

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import DETECTIONS, SHARED_DATA, coco_config
from hsrnet.config import ConfigError, get_default_config, update_config_from_list
from hsrnet.data import COCODataset, ImageGroupedSampler, MPIIDataset, build_dataset
from hsrnet.utils.transforms import affine_transform_points, get_affine_transform

COCO_SAMPLE = os.path.join(SHARED_DATA, 'coco_sample')
MPII_SAMPLE = os.path.join(SHARED_DATA, 'mpii_sample')
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def detector_config(root, *opts):
    return coco_config(root, 'TEST.USE_GT_BBOX', 'false', *opts)


def mpii_config(root, *opts):
    cfg = get_default_config()
    update_config_from_list(['DATASET.ROOT', str(root), 'MODEL.IMAGE_SIZE', '[256, 256]',
                             'MODEL.EXTRA.HEATMAP_SIZE', '[64, 64]'] + list(opts), cfg)
    return cfg


def need(path):
    if not os.path.exists(path):
        pytest.skip('shared sample data not found: ' + path)
    return path


def pixels_of(input_tensor):
    """Undo the normalisation: (H, W, 3) values in 0..255, channels as fed."""
    return (input_tensor.numpy().transpose(1, 2, 0) * STD + MEAN) * 255


def copy_coco_sample(tmp_path, with_images=True):
    root = tmp_path / 'coco'
    (root / 'annotations').mkdir(parents=True)
    (root / 'person_detection_results').mkdir()
    (root / 'images' / 'val2017').mkdir(parents=True)
    src = need(COCO_SAMPLE)
    shutil.copy(os.path.join(src, 'annotations', 'person_keypoints_val2017.json'),
                root / 'annotations')
    shutil.copy(os.path.join(src, 'person_detection_results', DETECTIONS),
                root / 'person_detection_results')
    if with_images:
        for name in os.listdir(os.path.join(src, 'images', 'val2017')):
            os.symlink(os.path.join(src, 'images', 'val2017', name),
                       root / 'images' / 'val2017' / name)
    return root


def write_dot_dataset(tmp_path):
    """One 320x240 black image with a white 7x7 square on each of 17 joints."""
    root = tmp_path / 'dots'
    (root / 'annotations').mkdir(parents=True)
    (root / 'images' / 'train2017').mkdir(parents=True)
    rng = np.random.default_rng(0)
    joints = np.stack([rng.uniform(110, 210, 17), rng.uniform(50, 190, 17)], axis=1).round()
    image = np.zeros((240, 320, 3), np.uint8)
    for x, y in joints.astype(int):
        image[y - 3:y + 4, x - 3:x + 4] = 255
    cv2.imwrite(str(root / 'images' / 'train2017' / '000000000007.jpg'), image)
    kpts = np.concatenate([joints, np.full((17, 1), 2)], axis=1).ravel().tolist()
    ann = {'id': 1, 'image_id': 7, 'category_id': 1, 'iscrowd': 0, 'area': 5000.0,
           'bbox': [105.0, 45.0, 110.0, 150.0], 'keypoints': kpts, 'num_keypoints': 17}
    coco = {'images': [{'id': 7, 'width': 320, 'height': 240, 'file_name': '000000000007.jpg'}],
            'annotations': [ann], 'categories': [{'id': 1, 'name': 'person'}]}
    (root / 'annotations' / 'person_keypoints_train2017.json').write_text(json.dumps(coco))
    return root


# -- names and construction ----------------------------------------------------------------

def test_public_names_and_build_dataset(tmp_path):
    import importlib
    original = importlib.import_module('dataset')   # the original's name, a shim
    assert original.coco is COCODataset and original.mpii is MPIIDataset
    from hsrnet.data.coco import COCODataset as by_module
    assert by_module is COCODataset
    cfg = coco_config(need(COCO_SAMPLE), 'TEST.USE_GT_BBOX', 'true')
    by_name = getattr(original, cfg.DATASET.DATASET)(cfg, cfg.DATASET.ROOT, 'val2017', False,
                                                     None)
    assert isinstance(by_name, COCODataset) and len(by_name) == 12
    cfg.DATASET.DATASET = 'lsp'
    with pytest.raises(ConfigError,
                       match=r"unknown DATASET.DATASET 'lsp'.*coco, crowdpose, mpii, ochuman"):
        build_dataset(cfg, 'val2017', False)
    cfg = coco_config(COCO_SAMPLE, 'MODEL.NUM_JOINTS', '16')
    with pytest.raises(ConfigError, match='MODEL.NUM_JOINTS is 16.*17 joints'):
        build_dataset(cfg, 'val2017', False)


def test_coco_gt_boxes_follow_the_protocol():
    root = need(COCO_SAMPLE)
    ds = build_dataset(coco_config(root, 'TEST.USE_GT_BBOX', 'true'), 'val2017', False)
    with open(os.path.join(root, 'annotations', 'person_keypoints_val2017.json')) as f:
        anns = json.load(f)['annotations']
    # 14 annotations, 2 without keypoints
    assert len(ds) == sum(max(a['keypoints']) > 0 for a in anns) == 12
    ann = anns[-1]  # image 197388 (640 x 392), bbox [0.5, 43.74, 90.1, 220.09]
    rec = [r for r in ds.db if r['image'].endswith('000000197388.jpg')][-1]
    x1, y1 = 0.5, 43.74
    w, h = min(639, x1 + 89.1) - x1, min(391, y1 + 219.09) - y1
    w = max(w, h * 0.75)  # grow the short side to 192:256
    np.testing.assert_allclose(rec['center'], [x1 + (min(639, x1 + 89.1) - x1) / 2, y1 + h / 2])
    np.testing.assert_allclose(rec['scale'], np.array([w, h]) / 200 * 1.25)
    kpts = np.array(ann['keypoints']).reshape(17, 3)
    np.testing.assert_array_equal(rec['joints_3d'][:, :2], kpts[:, :2])
    np.testing.assert_array_equal(rec['joints_3d_vis'][:, 0], np.minimum(kpts[:, 2], 1))
    assert set(np.unique(rec['joints_3d_vis'][:, :2])) <= {0, 1}


def test_items_crops_and_collation():
    root = need(COCO_SAMPLE)
    ds = build_dataset(coco_config(root, 'TEST.USE_GT_BBOX', 'true'), 'val2017', False)
    input, target, weight, meta = ds[3]
    assert input.shape == (3, 256, 192) and input.dtype == torch.float32
    assert target.shape == (17, 64, 48) and weight.shape == (17, 1)
    assert set(meta) == {'index', 'image', 'filename', 'imgnum', 'joints', 'joints_vis', 'center',
                         'scale', 'rotation', 'score'}
    rec = ds.db[3]
    trans = get_affine_transform(rec['center'], rec['scale'], 0, (192, 256))
    crop = cv2.warpAffine(cv2.imread(rec['image']), trans, (192, 256), flags=cv2.INTER_LINEAR)
    np.testing.assert_allclose(pixels_of(input), crop, atol=1e-3)  # BGR, ImageNet mean/std
    visible = rec['joints_3d_vis'][:, 0] > 0
    np.testing.assert_allclose(meta['joints'][visible, :2],
                               affine_transform_points(rec['joints_3d'][visible, :2], trans))
    np.testing.assert_array_equal(weight[:, 0].numpy(), visible)

    rgb = build_dataset(coco_config(root, 'TEST.USE_GT_BBOX', 'true', 'DATASET.COLOR_RGB', 'true'),
                        'val2017', False)
    np.testing.assert_allclose(pixels_of(rgb[3][0]), crop[..., ::-1], atol=1e-3)

    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch[0].shape == (4, 3, 256, 192) and batch[3]['center'].shape == (4, 2)
    assert len(batch[3]['image']) == 4 and batch[3]['score'].tolist() == [1, 1, 1, 1]


def reference_target(joints, vis, image_size, heatmap_size, sigma):
    """The protocol's Gaussian target, one joint and one pixel at a time."""
    num, (w, h) = len(joints), heatmap_size
    target, weight = np.zeros((num, h, w)), vis[:, 0].astype(float).copy()
    radius = sigma * 3
    for j in range(num):
        mu = [int(joints[j, a] / (image_size[a] / heatmap_size[a]) + 0.5) for a in (0, 1)]
        if mu[0] - radius >= w or mu[1] - radius >= h or mu[0] + radius + 1 < 0 \
                or mu[1] + radius + 1 < 0:
            weight[j] = 0
            continue
        if weight[j] > 0.5:
            for y in range(h):
                for x in range(w):
                    if abs(x - mu[0]) <= radius and abs(y - mu[1]) <= radius:
                        d2 = (x - mu[0]) ** 2 + (y - mu[1]) ** 2
                        target[j, y, x] = np.exp(-d2 / (2 * sigma ** 2))
    return target, weight[:, None]


def test_targets_match_the_per_pixel_definition():
    ds = build_dataset(coco_config(need(COCO_SAMPLE), 'TEST.USE_GT_BBOX', 'true'), 'val2017', False)
    rng = np.random.default_rng(1)
    for _ in range(3):
        joints = np.zeros((17, 3))
        joints[:, :2] = rng.uniform(-40, 240, (17, 2)) * [1, 1.3]  # some far outside
        joints[0, :2] = [-5, 100]  # window partly outside: kept
        joints[1, :2], joints[2, :2] = [-60, 50], [300, 50]  # wholly outside: weight 0
        vis = np.repeat(rng.integers(0, 2, (17, 1)), 3, axis=1).astype(float)
        vis[:3] = 1
        target, weight = ds.generate_target(joints, vis)
        ref_target, ref_weight = reference_target(joints, vis, (192, 256), (48, 64), 2)
        assert target.dtype == np.float32 and target.shape == (17, 64, 48)
        np.testing.assert_allclose(target, ref_target, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(weight, ref_weight)
        assert weight[0] == 1 and target[0].max() > 0
        assert weight[1] == weight[2] == 0 and target[1:3].max() == 0


def test_training_augmentation_moves_pixels_and_joints_together(tmp_path):
    root = write_dot_dataset(tmp_path)
    ds = build_dataset(coco_config(root, 'DATASET.TRAIN_SET', 'train2017'), 'train2017', True)
    original = ds.db[0]['joints_3d'][:, :2]
    swapped = original[[0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]]

    def similarity_det(src, dst):
        """det of the exact affine src -> dst, or None when there is none."""
        design = np.concatenate([src, np.ones((len(src), 1))], axis=1)
        fit = np.linalg.lstsq(design, dst, rcond=None)[0]
        return np.linalg.det(fit[:2]) if np.allclose(design @ fit, dst, atol=1e-6) else None

    np.random.seed(0)
    rotations, flips = [], 0
    for _ in range(30):
        input, target, weight, meta = ds[0]
        pixels = pixels_of(input).min(axis=2)
        joints = meta['joints'][:, :2]
        inside = (joints[:, 0] >= 2) & (joints[:, 0] < 190) & (joints[:, 1] >= 2) & \
            (joints[:, 1] < 254)
        xs, ys = np.round(joints[inside]).astype(int).T
        assert np.all(pixels[ys, xs] > 100), 'joint off its white square'
        # Unflipped: joints = similarity(original); flipped: a mirror of the swapped joints.
        plain, mirrored = similarity_det(original, joints), similarity_det(swapped, joints)
        assert (plain is None) != (mirrored is None)
        assert (plain or 0) > 0 or mirrored < 0
        flips += mirrored is not None
        rotations.append(meta['rotation'])
    assert 5 < flips < 25
    assert 0 < sum(r == 0 for r in rotations) < 30
    assert max(abs(r) for r in rotations) <= 80


def test_images_are_decoded_once_per_image(monkeypatch):
    ds = build_dataset(detector_config(need(COCO_SAMPLE)), 'val2017', False)
    groups = ds.image_groups()
    assert len(groups) == 4 and all(np.all(np.diff(g) == 1) for g in groups)  # adjacent
    reads = []
    module = importlib.import_module('hsrnet.data.joints_dataset')   # the package exports the class
    real_read = module.read_image_file
    monkeypatch.setattr(module, 'read_image_file', lambda path, factor: reads.append(path)
                        or real_read(path, factor))
    ds.read_image.max_bytes = 1  # holds only the latest image
    for i in range(len(ds)):
        ds[i]
    assert len(ds) == 118 and len(reads) == 4
    assert len(pickle.loads(pickle.dumps(ds)).read_image._images) == 0

    batches = list(DataLoader(ds, batch_size=16, num_workers=2))
    np.testing.assert_allclose(torch.cat([b[0] for b in batches[:2]]).numpy(),
                               torch.stack([ds[i][0] for i in range(32)]).numpy())


def test_detection_boxes():
    root = need(COCO_SAMPLE)
    with open(os.path.join(root, 'person_detection_results', DETECTIONS)) as f:
        dets = json.load(f)
    ds = build_dataset(detector_config(root, 'TEST.IMAGE_THRE', '0.1'), 'val2017', False)
    kept = [d for d in dets if d['score'] >= 0.1]
    assert len(ds) == len(kept)
    assert sorted(r['score'] for r in ds.db) == sorted(d['score'] for d in kept)
    rec = ds.db[0]
    assert np.all(rec['joints_3d'] == 0) and np.all(rec['joints_3d_vis'] == 1)
    box = next(d['bbox'] for d in kept if d['score'] == rec['score'])
    np.testing.assert_allclose(rec['center'], [box[0] + box[2] / 2, box[1] + box[3] / 2])
    assert ds[0][3]['score'] == pytest.approx(rec['score'])


def test_image_grouped_sampler():
    ds = build_dataset(detector_config(need(COCO_SAMPLE)), 'val2017', False)
    torch.manual_seed(0)
    first = list(ImageGroupedSampler(ds))
    assert sorted(first) == list(range(len(ds))) and first != list(range(len(ds)))
    images = [ds.db[i]['image'] for i in first]
    assert sum(a != b for a, b in zip(images, images[1:])) == 3  # one run per image
    seeded = ImageGroupedSampler(ds, seed=5)
    assert list(seeded) != list(seeded)  # next epoch, new order
    seeded.set_epoch(0)
    assert list(seeded) == list(ImageGroupedSampler(ds, seed=5))


def test_mpii_sample_loads():
    root = need(MPII_SAMPLE)
    ds = build_dataset(mpii_config(root), 'valid', False)
    with open(os.path.join(root, 'annot', 'valid.json')) as f:
        ann = json.load(f)[0]
    rec = ds.db[0]
    s = ann['scale']
    np.testing.assert_allclose(rec['center'], [ann['center'][0] - 1, ann['center'][1] + 15 * s - 1])
    np.testing.assert_allclose(rec['scale'], [s * 1.25, s * 1.25])
    np.testing.assert_allclose(rec['joints_3d'][:, :2], np.array(ann['joints']) - 1)
    input, target, weight, meta = ds[0]
    assert len(ds) == 5 and input.shape == (3, 256, 256) and target.shape == (16, 64, 64)
    assert ds.flip_pairs == [[0, 5], [1, 4], [2, 3], [10, 15], [11, 14], [12, 13]]
    train = build_dataset(mpii_config(root), 'valid', True)
    assert train[1][0].shape == (3, 256, 256)


# -- bad input -----------------------------------------------------------------------------

def test_missing_annotation_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'person_keypoints_val2017\.json.*'
                       r'<ROOT>/annotations/person_keypoints_<set>\.json'):
        build_dataset(coco_config(tmp_path), 'val2017', False)
    with pytest.raises(FileNotFoundError, match=r'annot/valid\.json.*<ROOT>/annot/<set>\.json'):
        build_dataset(mpii_config(tmp_path), 'valid', False)


def test_missing_and_corrupt_images(tmp_path):
    root = copy_coco_sample(tmp_path)
    os.remove(root / 'images' / 'val2017' / '000000000785.jpg')
    ds = build_dataset(coco_config(root, 'TEST.USE_GT_BBOX', 'true'), 'val2017', False)
    with pytest.raises(FileNotFoundError, match=r'000000000785\.jpg.*<ROOT>/images/<set>/'
                                                r'<image_id:012d>\.jpg'):
        ds[0]
    os.remove(root / 'images' / 'val2017' / '000000040083.jpg')
    (root / 'images' / 'val2017' / '000000040083.jpg').write_bytes(b'\xff\xd8 not a jpeg')
    with pytest.raises(ValueError, match=r'(cannot decode|truncated or corrupt) image '
                                         r'.*000000040083\.jpg'):
        ds[1]


@pytest.mark.parametrize('content, message', [
    ([{'image_id': 785, 'category_id': 1, 'bbox': [1, 2, 3, 4], 'score': 0.9},
      {'image_id': 785, 'category_id': 1, 'bbox': [1, 2, 3], 'score': 0.9}],
     r'detection entry 1 is malformed \(bbox must be 4 numbers'),
    ([{'image_id': 785, 'category_id': 1, 'bbox': [1, 2, 3, 4]}],
     r'detection entry 0 is malformed \(missing score\)'),
    ({'annotations': []}, r'expected a list of \{"image_id"'),
    ([], r'no person boxes .*score >= TEST.IMAGE_THRE'),
    ([{'image_id': 785, 'category_id': 1, 'bbox': [1, 2, 3, 4], 'score': 0.01}],
     r'no person boxes .*TEST.IMAGE_THRE=0.5'),
])
def test_bad_detection_files(tmp_path, content, message):
    root = copy_coco_sample(tmp_path, with_images=False)
    (root / 'person_detection_results' / DETECTIONS).write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message):
        build_dataset(detector_config(root, 'TEST.IMAGE_THRE', '0.5'), 'val2017', False)


def test_missing_detection_file(tmp_path):
    root = copy_coco_sample(tmp_path, with_images=False)
    os.remove(root / 'person_detection_results' / DETECTIONS)
    with pytest.raises(FileNotFoundError, match=r'detection file not found: .*' + DETECTIONS):
        build_dataset(detector_config(root), 'val2017', False)


def test_select_data_drops_off_centre_boxes():
    ds = build_dataset(coco_config(need(COCO_SAMPLE)), 'val2017', False)
    centred = {'center': np.array([100.0, 100.0]), 'scale': np.array([0.5, 0.5]),
               'joints_3d': np.tile([100.0, 100.0, 0.0], (17, 1)),
               'joints_3d_vis': np.ones((17, 3))}
    off = dict(centred, joints_3d=np.tile([150.0, 100.0, 0.0], (17, 1)))
    unlabelled = dict(centred, joints_3d_vis=np.zeros((17, 3)))
    assert ds.select_data([centred, off, unlabelled]) == [centred]


def test_malformed_annotation_files(tmp_path):
    root = copy_coco_sample(tmp_path, with_images=False)
    (root / 'annotations' / 'person_keypoints_val2017.json').write_text('{"images": [')
    with pytest.raises(ValueError, match=r'person_keypoints_val2017\.json: not a COCO annotation'):
        build_dataset(coco_config(root), 'val2017', False)
    (tmp_path / 'annot').mkdir()
    entry = {'image': 'a.jpg', 'center': [10, 20], 'scale': 1.0,
             'joints': [[0, 0]] * 16, 'joints_vis': [1] * 16}
    bad = dict(entry, joints=[[0, 0]] * 15)
    (tmp_path / 'annot' / 'valid.json').write_text(json.dumps([entry, bad]))
    with pytest.raises(ValueError, match=r'valid\.json: entry 1 is malformed \(joints must be 16'):
        build_dataset(mpii_config(tmp_path), 'valid', False)
