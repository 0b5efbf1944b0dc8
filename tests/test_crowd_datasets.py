"""The CrowdPose and OCHuman datasets on generated sets in their released file
layouts (samples.crowd_layouts): the files, the datasets reading them, the oracle's
AP, and each experiment yaml trained and validated end to end."""
import json
import re
import os

import numpy as np
import pytest

from conftest import ROOT, check_ok, evaluate_targets, run_script, tiny_opts
from hsrnet import data
from hsrnet.config import get_default_config, update_config, update_config_from_list
from hsrnet.evaluation import COCOKeypointMetric, CrowdPoseMetric
from hsrnet.samples.crowd_layouts import CrowdPoseLayout, OCHumanLayout, crowd_index
from hsrnet.samples.synthetic import generate
from hsrnet.utils.keypoints import COCO_KEYPOINTS, CROWDPOSE_KEYPOINTS

EXPERIMENT = os.path.join(ROOT, 'experiments', '{}', 'hsrnet59', '256x192_d256x3_adam_lr1e-3.yaml')
CROWDPOSE_FILE = os.path.join('annotations', 'crowdpose_{}.json')
OCHUMAN_FILE = os.path.join('annotations', 'ochuman_coco_format_{}_range_0.00_1.00.json')


@pytest.fixture(scope='module')
def crowdpose_sample(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('crowdpose'))
    generate(root, seed=3, train_images=6, val_images=4, layout=CrowdPoseLayout())
    return root


@pytest.fixture(scope='module')
def ochuman_sample(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('ochuman'))
    generate(root, seed=3, train_images=6, val_images=4, layout=OCHumanLayout())
    return root


def load(root, path):
    with open(os.path.join(root, path)) as f:
        return json.load(f)


def config(name, root, *opts):
    cfg = update_config(EXPERIMENT.format(name), get_default_config())
    return update_config_from_list(['DATASET.ROOT', root] + list(opts), cfg)


# -- the generated files ------------------------------------------------------------

def test_crowdpose_sample_has_the_released_files(crowdpose_sample):
    for split, n_images in (('trainval', 6), ('test', 4)):
        doc = load(crowdpose_sample, CROWDPOSE_FILE.format(split))
        assert len(doc['images']) == n_images
        assert doc['categories'][0]['keypoints'] == list(CROWDPOSE_KEYPOINTS.names)
        for image in doc['images']:
            assert 0 <= image['crowdIndex'] and 'license' not in image
            assert os.path.isfile(os.path.join(crowdpose_sample, 'images', image['file_name']))
        for ann in doc['annotations']:
            assert len(ann['keypoints']) == 42 and 'area' not in ann
    labelled = [np.reshape(a['keypoints'], (14, 3))[12:, 2] for a in doc['annotations']
                if a['num_keypoints']]
    assert (np.array(labelled) > 0).mean() > 0.5      # head and neck are annotated


def test_crowd_index_counts_other_persons_joints_in_the_box():
    inside = {'bbox': [0, 0, 10, 10], 'num_keypoints': 2, 'keypoints': [1, 1, 2, 2, 2, 2]}
    other = {'bbox': [5, 5, 30, 30], 'num_keypoints': 2, 'keypoints': [6, 6, 2, 20, 20, 1]}
    # in the first's box one of the other's two joints, in the other's none of the first's
    assert crowd_index([inside, other]) == pytest.approx((1 / 2 + 0 / 2) / 2)
    assert crowd_index([]) == 0.0


def test_ochuman_sample_has_the_coco_format_files(ochuman_sample):
    names = set()
    for split, n_images in (('val', 6), ('test', 4)):
        doc = load(ochuman_sample, OCHUMAN_FILE.format(split))
        assert [image['id'] for image in doc['images']] == list(range(1, n_images + 1))
        assert doc['categories'][0]['keypoints'] == list(COCO_KEYPOINTS.names)
        for ann in doc['annotations']:
            assert ann['num_keypoints'] > 0 and len(ann['keypoints']) == 51
            assert ann['area'] == ann['bbox'][2] * ann['bbox'][3]
        names |= {image['file_name'] for image in doc['images']}
    assert len(names) == 10        # the two files' images are distinct files


# -- the datasets ---------------------------------------------------------------------

def test_crowdpose_dataset_reads_its_files(crowdpose_sample):
    cfg = config('crowdpose', crowdpose_sample, 'DATASET.HALF_BODY', 'true',
                 'DATASET.PROB_HALF_BODY', '1.0', 'DATASET.NUM_JOINTS_HALF_BODY', '3')
    train = data.build_dataset(cfg, 'trainval', True)
    assert train.num_joints == 14 and train.flip_pairs == [[0, 1], [2, 3], [4, 5], [6, 7],
                                                           [8, 9], [10, 11]]
    assert list(np.flatnonzero(train.half_body.upper)) == [0, 1, 2, 3, 4, 5, 12, 13]
    np.random.seed(0)
    image, target, weight, meta = train[0]
    assert target.shape == (14, 64, 48) and meta['image'].startswith(
        os.path.join(crowdpose_sample, 'images', ''))
    assert all(rec['joints_3d'].shape == (14, 3) for rec in train.db)
    test = data.build_dataset(cfg, 'test', False)
    metric = test.get_metric()
    assert isinstance(metric, CrowdPoseMetric)
    assert np.allclose(metric.sigmas, CROWDPOSE_KEYPOINTS.sigmas)
    assert sum(len(ids) for ids in metric.buckets.values()) == 4
    with pytest.raises(FileNotFoundError, match=r'CrowdPose annotation file not found.*'
                                                r'<ROOT>/annotations/crowdpose_<set>\.json'):
        data.build_dataset(cfg, 'val', False)


def test_ochuman_dataset_reads_its_files(ochuman_sample):
    cfg = config('ochuman', ochuman_sample)
    val = data.build_dataset(cfg, 'val', True)
    assert val.num_joints == 17 and val.keypoints == COCO_KEYPOINTS
    test = data.build_dataset(cfg, 'test', False)
    metric = test.get_metric()
    assert type(metric) is COCOKeypointMetric and np.allclose(metric.sigmas,
                                                              COCO_KEYPOINTS.sigmas)
    assert os.path.basename(test.db[0]['image']) == '100001.jpg'
    with pytest.raises(FileNotFoundError, match=r'ochuman_coco_format_<set>_range_0\.00_1\.00'):
        data.build_dataset(cfg, 'train', True)


@pytest.mark.parametrize('name,test_set,joints', [('crowdpose', 'test', 14),
                                                  ('ochuman', 'test', 17)])
def test_oracle_scores_one(name, test_set, joints, crowdpose_sample, ochuman_sample,
                           tmp_path):
    """The ground-truth heatmaps, decoded, score AP ~1 through the dataset's metric."""
    root = crowdpose_sample if name == 'crowdpose' else ochuman_sample
    cfg = config(name, root)
    ds = data.build_dataset(cfg, test_set, False)
    values, ap = evaluate_targets(cfg, ds, tmp_path)
    assert ap >= 0.97
    if name == 'crowdpose':
        assert list(values)[-3:] == ['AP easy', 'AP medium', 'AP hard']
    with open(tmp_path / 'results' / 'keypoints_{}_results.json'.format(test_set)) as f:
        assert all(len(r['keypoints']) == 3 * joints for r in json.load(f))


# -- end to end: train.py and valid.py on each experiment yaml -----------------------

@pytest.mark.parametrize('name', ['crowdpose', 'ochuman'])
def test_experiment_trains_and_validates(name, crowdpose_sample, ochuman_sample, tmp_path):
    root = crowdpose_sample if name == 'crowdpose' else ochuman_sample
    out_dir = str(tmp_path)
    opts = tiny_opts(root, out_dir, **{'TRAIN.END_EPOCH': 1, 'TEST.COCO_BBOX_FILE': '',
                                       'MODEL.INIT_WEIGHTS': 'false', 'MODEL.PRETRAINED': '',
                                       'DEBUG.DEBUG': 'false'})
    yaml_file = EXPERIMENT.format(name)
    check_ok(run_script('train.py', ['--cfg', yaml_file] + opts))
    output = os.path.join(out_dir, name, 'pose_hsrnet_59', '256x192_d256x3_adam_lr1e-3')
    model_file = os.path.join(output, 'final_state.pth.tar')
    result = check_ok(run_script('valid.py', ['--cfg', yaml_file, '--model-file', model_file]
                                 + opts))
    header = '| AP | AP .5 | AP .75 | AR | AR .5 | AR .75 | AP easy | AP medium | AP hard |' \
        if name == 'crowdpose' else '| AP | AP .5 | AP .75 | AP (M) |'
    assert header in result.stdout
    with open(os.path.join(output, 'results', 'keypoints_test_results.json')) as f:
        results = json.load(f)
    joints = 14 if name == 'crowdpose' else 17
    assert results and all(len(r['keypoints']) == 3 * joints for r in results)


@pytest.mark.parametrize('file_name', ['../../../../etc/passwd', '/etc/passwd', ''])
def test_image_names_that_leave_the_images_folder_are_refused(ochuman_sample, tmp_path,
                                                               file_name):
    """A "file_name" of an annotation file never reaches outside <ROOT>/images."""
    import shutil
    from hsrnet.utils.errors import DataError
    root = tmp_path / 'ochuman'
    shutil.copytree(os.path.join(ochuman_sample, 'annotations'), root / 'annotations')
    path = root / OCHUMAN_FILE.format('test')
    doc = json.loads(path.read_text())
    doc['images'][1]['file_name'] = file_name
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r'{}: image {} needs a "file_name" inside the images '
                                        r'folder'.format(re.escape(str(path)), doc['images'][1]['id'])):
        data.build_dataset(config('ochuman', str(root)), 'test', False)
