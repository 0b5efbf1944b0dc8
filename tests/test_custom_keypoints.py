"""A COCO-format dataset with its own joints: the generated sample reduced to 13
joints (no eyes and ears), declared in the yaml, used end to end."""
import json
import os

import numpy as np
import pytest

from hsrnet import data as dataset
from conftest import DETECTIONS, coco_config, evaluate_targets, generate_sample
from test_train_valid import check_ok, output_dir_of, run_script, train_args, \
    valid_args
from hsrnet.utils.errors import ConfigError
from hsrnet.utils.keypoints import COCO_KEYPOINTS

KEEP = [0] + list(range(5, 17))        # nose, shoulders ... ankles
OLD_TO_NEW = {old: new for new, old in enumerate(KEEP)}
FLIP_PAIRS = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12]]
SIGMAS = [COCO_KEYPOINTS.sigmas[j] for j in KEEP]
SKELETON = [[OLD_TO_NEW[a], OLD_TO_NEW[b]] for a, b in COCO_KEYPOINTS.skeleton
            if a in OLD_TO_NEW and b in OLD_TO_NEW]


def layout_opts():
    return ['MODEL.NUM_JOINTS', '13', 'DATASET.FLIP_PAIRS', json.dumps(FLIP_PAIRS),
            'DATASET.OKS_SIGMAS', json.dumps(SIGMAS), 'DATASET.SKELETON', json.dumps(SKELETON)]


@pytest.fixture(scope='module')
def sample13(tmp_path_factory):
    root = tmp_path_factory.mktemp('sample13')
    generate_sample(root, 2, 6, 4)
    for split in ('train2017', 'val2017'):
        path = root / 'annotations' / 'person_keypoints_{}.json'.format(split)
        coco = json.loads(path.read_text())
        for ann in coco['annotations']:
            kpts = np.asarray(ann['keypoints']).reshape(17, 3)[KEEP]
            ann['keypoints'] = kpts.reshape(-1).tolist()
            ann['num_keypoints'] = int((kpts[:, 2] > 0).sum())
        category = coco['categories'][0]
        category['keypoints'] = [category['keypoints'][j] for j in KEEP]
        category['skeleton'] = [[a + 1, b + 1] for a, b in SKELETON]
        path.write_text(json.dumps(coco))
    return str(root)


def test_oracle_ap_with_the_declared_sigmas(sample13, tmp_path):
    cfg = coco_config(sample13, *layout_opts())
    ds = dataset.build_dataset(cfg, 'val2017', False)
    assert ds.num_joints == 13 and ds.flip_pairs == FLIP_PAIRS
    assert ds.get_metric().sigmas.tolist() == SIGMAS
    _, ap = evaluate_targets(cfg, ds, tmp_path)
    assert ap >= 0.97
    with open(tmp_path / 'results' / 'keypoints_val2017_results.json') as f:
        assert len(json.load(f)[0]['keypoints']) == 39


def test_train_and_validate_end_to_end(sample13, tmp_path):
    out_dir = str(tmp_path)
    check_ok(run_script('train.py', train_args(sample13, out_dir, **{'TRAIN.END_EPOCH': 1})
                        + layout_opts()))
    model_file = os.path.join(output_dir_of(out_dir), 'final_state.pth.tar')
    result = check_ok(run_script('valid.py', valid_args(sample13, out_dir, model_file)
                                 + layout_opts()))
    assert '| AP | AP .5 |' in result.stdout
    with open(os.path.join(output_dir_of(out_dir), 'results',
                           'keypoints_val2017_results.json')) as f:
        results = json.load(f)
    assert results and all(len(r['keypoints']) == 39 for r in results)


def test_wrong_joint_counts_and_bad_layouts_are_named(sample13):
    with pytest.raises(ConfigError, match='NUM_JOINTS is 13.*17 joints.*OKS_SIGMAS'):
        dataset.build_dataset(coco_config(sample13, 'MODEL.NUM_JOINTS', '13'), 'val2017', False)
    opts = layout_opts()
    opts[3] = '[[1, 2], [3, 13]]'
    with pytest.raises(ConfigError, match=r'flip pair \[3, 13\] names joint 13.*13 joints'):
        dataset.build_dataset(coco_config(sample13, *opts), 'val2017', False)
    opts = layout_opts()
    opts[3] = '[[1, 2], [2, 3]]'
    with pytest.raises(ConfigError, match='joint 2 appears in more than one flip pair'):
        dataset.build_dataset(coco_config(sample13, *opts), 'val2017', False)
    opts = layout_opts()
    opts[5] = '[0.1, 0.2]'
    with pytest.raises(ConfigError, match='2 OKS sigmas for 13 joints'):
        dataset.build_dataset(coco_config(sample13, *opts), 'val2017', False)
    # the 17-joint yaml on 13-joint annotations: the file and annotation are named
    with pytest.raises(ValueError, match=r'person_keypoints_val2017\.json: annotation \d+ has '
                                         r'39 keypoint values, expected 51'):
        dataset.build_dataset(coco_config(sample13), 'val2017', False)


def test_detector_boxes_with_the_custom_layout(sample13):
    cfg = coco_config(sample13, *layout_opts(), 'TEST.USE_GT_BBOX', 'false')
    ds = dataset.build_dataset(cfg, 'val2017', False)
    assert os.path.basename(cfg.TEST.COCO_BBOX_FILE) == DETECTIONS.split('/')[-1]
    assert ds[0][1].shape[0] == 13
