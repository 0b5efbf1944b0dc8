import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from scipy.io import loadmat, savemat
from torch.utils.data import DataLoader

from hsrnet import data as dataset
from conftest import DETECTIONS, ROOT, SHARED_DATA, coco_config
from hsrnet.config import get_default_config, update_config_from_list
from hsrnet.head.inference import get_final_preds

COCO_SAMPLE = os.path.join(SHARED_DATA, 'coco_sample')
MPII_SAMPLE = os.path.join(SHARED_DATA, 'mpii_sample')
MAKE_SAMPLE_DATA = os.path.join(ROOT, 'tools', 'make_sample_data.py')
MPII_JOINT_NAMES = ['rank', 'rkne', 'rhip', 'lhip', 'lkne', 'lank', 'pelv', 'thor',
                    'neck', 'head', 'rwri', 'relb', 'rsho', 'lsho', 'lelb', 'lwri']


def need(path):
    if not os.path.exists(path):
        pytest.skip('shared sample data not found: ' + path)
    return path


def oracle_predictions(cfg, ds):
    """Decode the dataset's own target heatmaps as if they were the network output:
    preds (N, J, 3), all_boxes (N, 6) and image paths, as validate() collects them."""
    preds, boxes, paths = [], [], []
    for _, target, _, meta in DataLoader(ds, batch_size=32):
        center, scale = meta['center'].numpy(), meta['scale'].numpy()
        coords, maxvals = get_final_preds(cfg, target.numpy(), center, scale)
        preds.append(np.concatenate([coords, maxvals], axis=2))
        boxes.append(np.concatenate([center, scale, np.prod(scale * 200, axis=1)[:, None],
                                     meta['score'].numpy()[:, None]], axis=1))
        paths.extend(meta['image'])
    return np.concatenate(preds), np.concatenate(boxes), paths


def test_oracle_ap_is_one_on_the_shared_sample(tmp_path, caplog):
    cfg = coco_config(need(COCO_SAMPLE))
    assert cfg.TEST.USE_GT_BBOX and cfg.TEST.POST_PROCESS and cfg.MODEL.EXTRA.SIGMA == 2
    ds = dataset.build_dataset(cfg, cfg.DATASET.TEST_SET, False)
    preds, boxes, paths = oracle_predictions(cfg, ds)
    with caplog.at_level(logging.INFO):
        name_values, perf = ds.evaluate(cfg, preds, str(tmp_path), boxes, paths)
    assert list(name_values) == ['AP', 'AP .5', 'AP .75', 'AP (M)', 'AP (L)',
                                 'AR', 'AR .5', 'AR .75', 'AR (M)', 'AR (L)']
    assert perf == name_values['AP'] == pytest.approx(1.0, abs=5e-4)
    assert name_values['AR'] == pytest.approx(1.0, abs=5e-4)
    assert '| AP | AP .5 | AP .75 |' in caplog.text and '| 1.000 |' in caplog.text
    with open(tmp_path / 'results' / 'keypoints_val2017_results.json') as f:
        results = json.load(f)
    assert len(results) == 12
    assert set(results[0]) == {'image_id', 'category_id', 'keypoints', 'score'}
    assert len(results[0]['keypoints']) == 51 and results[0]['score'] == pytest.approx(1.0)


def test_oracle_ap_on_the_generated_sample(tmp_path):
    if not os.path.isfile(MAKE_SAMPLE_DATA):
        pytest.skip('tools/make_sample_data.py is not there yet')
    root = tmp_path / 'sample'
    subprocess.run([sys.executable, MAKE_SAMPLE_DATA, '--out', str(root), '--train-images', '1'],
                   check=True, capture_output=True)
    cfg = coco_config(root)
    ds = dataset.build_dataset(cfg, 'val2017', False)
    preds, boxes, paths = oracle_predictions(cfg, ds)
    _, ap = ds.evaluate(cfg, preds, str(tmp_path), boxes, paths)
    assert ap >= 0.97


def test_duplicate_poses_merge_and_metrics_stay(tmp_path):
    cfg = coco_config(need(COCO_SAMPLE))
    ds = dataset.build_dataset(cfg, 'val2017', False)
    preds, boxes, paths = oracle_predictions(cfg, ds)
    rng = np.random.default_rng(0)
    copies = preds.copy()
    copies[..., :2] += rng.normal(scale=0.3, size=copies[..., :2].shape)
    copies[..., 2] *= 0.8  # lower score: the original pose wins
    name_values, ap = ds.evaluate(cfg, np.concatenate([copies, preds]), str(tmp_path),
                                  np.concatenate([boxes, boxes]), paths + paths)
    with open(tmp_path / 'results' / 'keypoints_val2017_results.json') as f:
        results = json.load(f)
    assert len(results) == 12 and ap == pytest.approx(1.0, abs=5e-4)
    np.testing.assert_allclose(sorted(np.ravel([r['keypoints'] for r in results])),
                               sorted(preds.ravel()))


def test_detector_boxes_rescoring_and_nms(tmp_path):
    """Poses for the sample's detector boxes: near copies of the best-overlapping
    ground-truth person (several boxes per person), junk for the rest."""
    root = need(COCO_SAMPLE)
    cfg = coco_config(root, 'TEST.USE_GT_BBOX', 'false')
    ds = dataset.build_dataset(cfg, 'val2017', False)
    with open(os.path.join(root, 'annotations', 'person_keypoints_val2017.json')) as f:
        anns = [a for a in json.load(f)['annotations'] if a['num_keypoints'] > 0]
    rng = np.random.default_rng(1)
    preds, boxes, paths, matched = [], [], [], []
    for rec in ds.db:
        image_id = int(os.path.basename(rec['image'])[:-4])
        cx, cy = rec['center']
        best, best_dist = None, np.inf
        for k, a in enumerate(anns):
            x, y, w, h = a['bbox']
            dist = np.hypot(x + w / 2 - cx, y + h / 2 - cy) / np.hypot(w, h)
            if a['image_id'] == image_id and dist < best_dist:
                best, best_dist = k, dist
        pose = np.tile([cx, cy, 0.1], (17, 1))  # junk: all joints on the centre, low score
        if best_dist < 0.1:
            kpts = np.array(anns[best]['keypoints'], dtype=float).reshape(17, 3)
            visible = kpts[:, 2] > 0
            pose[visible, :2] = kpts[visible, :2] + rng.normal(scale=0.5, size=(visible.sum(), 2))
            pose[visible, 2] = rng.uniform(0.3, 1.0, visible.sum())
        matched.append(best if best_dist < 0.1 else None)
        preds.append(pose)
        s = rec['scale']
        boxes.append([cx, cy, s[0], s[1], np.prod(s * 200), rec['score']])
        paths.append(rec['image'])
    preds, boxes = np.array(preds), np.array(boxes)
    assert sum(m is not None for m in matched) > len(set(matched) - {None})  # duplicates exist

    name_values, ap = ds.evaluate(cfg, preds, str(tmp_path), boxes, paths)
    res_file = tmp_path / 'results' / 'keypoints_val2017_results.json'
    with open(res_file) as f:
        results = json.load(f)
    assert os.listdir(tmp_path / 'results') == [res_file.name]  # no temp file left
    assert len(results) < len(preds)
    # every matched person is reported exactly once
    by_keypoints = {tuple(np.round(p[:, :2].ravel(), 6)): i for i, p in enumerate(preds)}
    kept = [by_keypoints[tuple(np.round(np.reshape(r['keypoints'], (17, 3))[:, :2].ravel(), 6))]
            for r in results]
    kept_people = [matched[i] for i in kept if matched[i] is not None]
    assert sorted(kept_people) == sorted(set(m for m in matched if m is not None))
    for r, i in zip(results, kept):
        maxvals = preds[i, :, 2]
        above = maxvals[maxvals > 0.2]
        expected = boxes[i, 5] * (above.mean() if above.size else 0.0)
        assert r['score'] == pytest.approx(expected) and r['category_id'] == 1
    assert ap > 0.9


def test_set_without_annotations_writes_results_only(tmp_path):
    src = need(COCO_SAMPLE)
    root = tmp_path / 'coco'
    (root / 'annotations').mkdir(parents=True)
    (root / 'person_detection_results').mkdir()
    with open(os.path.join(src, 'annotations', 'person_keypoints_val2017.json')) as f:
        info = json.load(f)
    del info['annotations']
    (root / 'annotations' / 'image_info_test-dev2017.json').write_text(json.dumps(info))
    shutil.copytree(os.path.join(src, 'images', 'val2017'), root / 'images' / 'test2017')
    shutil.copy(os.path.join(src, 'person_detection_results', DETECTIONS),
                root / 'person_detection_results')
    cfg = coco_config(root, 'TEST.USE_GT_BBOX', 'false', 'TEST.IMAGE_THRE', '0.5')
    ds = dataset.build_dataset(cfg, 'test-dev2017', False)
    preds = np.zeros((len(ds), 17, 3))
    preds[..., 2] = 0.5
    boxes = np.array([[*r['center'], *r['scale'], 1e4, r['score']] for r in ds.db])
    paths = [r['image'] for r in ds.db]
    assert ds.evaluate(cfg, preds, str(tmp_path), boxes, paths) == ({'Null': 0}, 0)
    assert (tmp_path / 'results' / 'keypoints_test-dev2017_results.json').is_file()
    with pytest.raises(ValueError, match='not an image of set'):
        ds.evaluate(cfg, preds[:1], str(tmp_path), boxes[:1], ['/elsewhere/1.jpg'])


def write_mpii_gt(root):
    """annot/gt_valid.mat in the original's layout, from annot/valid.json; the head
    box is a square on the neck-head segment."""
    with open(root / 'annot' / 'valid.json') as f:
        anns = json.load(f)
    joints = np.array([a['joints'] for a in anns], dtype=float)  # 1-based, like the .mat
    vis = np.array([a['joints_vis'] for a in anns])
    neck, head = joints[:, 8], joints[:, 9]
    half = np.linalg.norm(head - neck, axis=1, keepdims=True) / 2
    mid = (head + neck) / 2
    headboxes = np.stack([mid - half, mid + half])  # (corner, person, xy)
    savemat(str(root / 'annot' / 'gt_valid.mat'), {
        'dataset_joints': np.array([MPII_JOINT_NAMES], dtype=object),
        'jnt_missing': (1 - vis).T,
        'pos_gt_src': joints.transpose(1, 2, 0),
        'headboxes_src': headboxes.transpose(0, 2, 1)})


def test_mpii_oracle_pckh_is_100(tmp_path, caplog):
    src = need(MPII_SAMPLE)
    root = tmp_path / 'mpii'
    shutil.copytree(os.path.join(src, 'annot'), root / 'annot')
    os.symlink(os.path.join(src, 'images'), root / 'images')
    cfg = get_default_config()
    update_config_from_list(['DATASET.ROOT', str(root), 'MODEL.IMAGE_SIZE', '[256, 256]',
                             'MODEL.EXTRA.HEATMAP_SIZE', '[64, 64]'], cfg)
    ds = dataset.build_dataset(cfg, 'valid', False)
    preds, _, _ = oracle_predictions(cfg, ds)
    with pytest.raises(FileNotFoundError, match=r'gt_valid\.mat.*<ROOT>/annot/gt_<set>\.mat'):
        ds.evaluate(cfg, preds, str(tmp_path / 'out'))
    write_mpii_gt(root)
    with caplog.at_level(logging.INFO):
        name_values, perf = ds.evaluate(cfg, preds, str(tmp_path / 'out'))
    assert list(name_values) == ['Head', 'Shoulder', 'Elbow', 'Wrist', 'Hip', 'Knee', 'Ankle',
                                 'Mean', 'Mean@0.1']
    for name in list(name_values)[:-1]:
        assert name_values[name] == pytest.approx(100.0), name
    assert perf == name_values['Mean'] and 0 < name_values['Mean@0.1'] <= 100
    assert '| Head | Shoulder |' in caplog.text
    saved = loadmat(str(tmp_path / 'out' / 'pred.mat'))['preds']
    np.testing.assert_allclose(saved, preds[..., :2] + 1)  # 1-based, as the original

    off = preds.copy()
    off[:, 9, :2] += 1000  # every head far off
    assert ds.evaluate(cfg, off, '')[0]['Head'] == 0
    with pytest.raises(ValueError, match='holds 5 persons but 4 predictions'):
        ds.evaluate(cfg, preds[:4], '')


def test_mpii_persons_of_skipped_images_count_as_misses(tmp_path, caplog):
    # valid.py under DATASET.SKIP_BAD_IMAGES: predictions carry their dataset
    # indices, and PCKh scores the persons without one as misses (not a traceback)
    from hsrnet.evaluation.mpii import PCKhMetric
    from hsrnet.evaluation.predictions import PosePredictions
    src = need(MPII_SAMPLE)
    root = tmp_path / 'mpii'
    shutil.copytree(os.path.join(src, 'annot'), root / 'annot')
    write_mpii_gt(root)
    cfg = get_default_config()
    update_config_from_list(['DATASET.ROOT', str(root), 'MODEL.IMAGE_SIZE', '[256, 256]',
                             'MODEL.EXTRA.HEATMAP_SIZE', '[64, 64]'], cfg)
    os.symlink(os.path.join(src, 'images'), root / 'images')
    ds = dataset.build_dataset(cfg, 'valid', False)
    preds, boxes, paths = oracle_predictions(cfg, ds)
    kept = np.array([0, 1, 3, 4])
    metric = PCKhMetric(str(root / 'annot' / 'gt_valid.mat'), 'valid')
    partial = PosePredictions(keypoints=preds[kept], centers=boxes[kept, :2],
                              scales=boxes[kept, 2:4], box_scores=boxes[kept, 5],
                              images=[paths[i] for i in kept], indices=kept)
    with caplog.at_level(logging.WARNING):
        name_values, perf = metric.evaluate(partial, str(tmp_path / 'out'))
    assert '1 of 5 persons have no prediction' in caplog.text
    full = metric.evaluate(PosePredictions.from_columns(preds, boxes, paths), '')[1]
    assert full == pytest.approx(100.0) and 70 < perf < 90   # one person in five missed
    saved = loadmat(str(tmp_path / 'out' / 'pred.mat'))['preds']
    assert saved.shape[0] == 5 and np.isnan(saved[2]).all() and np.isfinite(saved[kept]).all()
    # a test set (no ground truth) gets its size from the dataset: the last person
    # skipped still has its (NaN) row
    test_metric = PCKhMetric(str(root / 'annot' / 'gt_test.mat'), 'test', num_persons=5)
    first4 = PosePredictions(keypoints=preds[:4], centers=boxes[:4, :2], scales=boxes[:4, 2:4],
                             box_scores=boxes[:4, 5], images=paths[:4], indices=[0, 1, 2, 3])
    assert test_metric.evaluate(first4, str(tmp_path / 'test')) == ({'Null': 0.0}, 0.0)
    saved = loadmat(str(tmp_path / 'test' / 'pred.mat'))['preds']
    assert saved.shape[0] == 5 and np.isnan(saved[4]).all() and np.isfinite(saved[:4]).all()
    assert dataset.build_dataset(cfg, 'valid', False).get_metric().num_persons == 5
