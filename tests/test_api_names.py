"""Every importable name of ../shared/spec/API.md still imports where users'
scripts look for it, and behaves (one test per name)."""
import os

import numpy as np
import pytest
import torch

from conftest import COCO_YAML, SHARED_DATA, coco_config

COCO_SAMPLE = os.path.join(SHARED_DATA, 'coco_sample')


def need_sample():
    if not os.path.isdir(COCO_SAMPLE):
        pytest.skip('shared sample data not found: ' + COCO_SAMPLE)
    return COCO_SAMPLE


def test_core_config_config_and_update_config():
    from core.config import config, get_default_config, update_config
    saved = config.clone()
    try:
        update_config(COCO_YAML)               # merges into the global config
        assert config.MODEL.NAME == 'pose_hsrnet' and config.MODEL.IMAGE_SIZE == [192, 256]
    finally:
        config.clear()
        config.update(saved)
    assert get_default_config().MODEL.NAME == 'pose_resnet'


def test_core_config_update_dir():
    from core.config import get_default_config, update_config, update_dir
    cfg = update_config(COCO_YAML, get_default_config())
    update_dir('out', 'logs', '/data', cfg)
    assert cfg.OUTPUT_DIR == 'out' and cfg.LOG_DIR == 'logs'
    assert cfg.DATASET.ROOT.startswith('/data/')


def test_core_config_get_model_name():
    from core.config import get_default_config, get_model_name, update_config
    cfg = update_config(COCO_YAML, get_default_config())
    assert get_model_name(cfg) == ('pose_hsrnet_59', '256x192_pose_hsrnet_59_d256d256')


@pytest.mark.parametrize('module,yaml', [('pose_resnet', 'resnet50'), ('pose_hsrnet', 'hsrnet59'),
                                         ('pose_hsr_msnet', 'hsr-msnet59')])
def test_models_get_pose_net(module, yaml):
    import importlib
    from core.config import get_default_config, update_config
    cfg = update_config(COCO_YAML.replace('hsrnet59', yaml), get_default_config())
    assert cfg.MODEL.NAME == module
    cfg.MODEL.INIT_WEIGHTS = False
    net = importlib.import_module('models.' + module).get_pose_net(cfg, is_train=False)
    with torch.no_grad():
        out = net.eval()(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 17, 16, 16)


def test_dataset_coco_item_evaluate_and_flip_pairs(tmp_path):
    import dataset
    cfg = coco_config(need_sample())
    ds = dataset.coco(cfg, cfg.DATASET.ROOT, 'val2017', False, None)
    assert ds.flip_pairs[0] == [1, 2] and len(ds.flip_pairs) == 8
    input, target, target_weight, meta = ds[0]
    assert input.shape == (3, 256, 192) and target.shape == (17, 64, 48)
    assert target_weight.shape == (17, 1)
    assert {'image', 'filename', 'imgnum', 'joints', 'joints_vis', 'center', 'scale',
            'rotation', 'score'} <= set(meta)
    # the original's evaluate: preds (N, J, 3) and all_boxes (N, 6) columns
    from core.inference import get_final_preds
    targets = np.stack([ds[i][1].numpy() for i in range(len(ds))])
    centers = np.stack([r['center'] for r in ds.db])
    scales = np.stack([r['scale'] for r in ds.db])
    coords, maxvals = get_final_preds(cfg, targets, centers, scales)
    preds = np.concatenate([coords, maxvals], axis=2)
    all_boxes = np.concatenate([centers, scales, np.prod(scales * 200, 1)[:, None],
                                np.ones((len(ds), 1))], axis=1)
    name_values, perf = ds.evaluate(cfg, preds, str(tmp_path), all_boxes,
                                    [r['image'] for r in ds.db])
    assert perf == name_values['AP'] == pytest.approx(1.0, abs=5e-4)


def test_dataset_mpii_class_and_flip_pairs():
    import dataset
    assert dataset.mpii.flip_pairs == [[0, 5], [1, 4], [2, 3], [10, 15], [11, 14], [12, 13]]
    assert dataset.mpii.num_joints == 16 and callable(dataset.mpii.evaluate)


def test_core_inference_get_max_preds():
    from core.inference import get_max_preds
    heatmaps = np.zeros((2, 3, 8, 6), np.float32)
    heatmaps[1, 2, 5, 4] = 0.7
    preds, maxvals = get_max_preds(heatmaps)
    assert preds.shape == (2, 3, 2) and preds.dtype == np.float32
    assert preds[1, 2].tolist() == [4, 5] and maxvals[1, 2, 0] == pytest.approx(0.7)
    assert preds[0, 0].tolist() == [0, 0]      # no positive maximum


def test_core_inference_get_final_preds():
    from core.config import get_default_config
    from core.inference import get_final_preds
    cfg = get_default_config()
    cfg.TEST.POST_PROCESS = False
    heatmaps = np.zeros((1, 1, 64, 48), np.float32)
    heatmaps[0, 0, 32, 24] = 1
    preds, maxvals = get_final_preds(cfg, heatmaps, np.array([[300.0, 200.0]]),
                                     np.array([[0.96, 1.28]]))
    np.testing.assert_allclose(preds[0, 0], [300, 200], atol=1e-4)   # the box centre


def test_core_function_train_and_validate_signatures():
    import inspect
    from core.function import train, validate
    assert list(inspect.signature(train).parameters)[:9] == [
        'config', 'train_loader', 'model', 'criterion', 'optimizer', 'epoch', 'output_dir',
        'tb_log_dir', 'writer_dict']
    assert list(inspect.signature(validate).parameters)[:8] == [
        'config', 'val_loader', 'val_dataset', 'model', 'criterion', 'output_dir',
        'tb_log_dir', 'writer_dict']


def test_core_loss_joints_mse_loss():
    from core.loss import JointsMSELoss
    out, gt = torch.ones(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    weight = torch.tensor([[1.0], [0.0], [1.0]]).expand(2, 3, 1)
    assert JointsMSELoss(False)(out, gt, weight).item() == pytest.approx(0.5)
    assert JointsMSELoss(True)(out, gt, weight).item() == pytest.approx(0.5 * 2 / 3)


def test_core_evaluate_accuracy():
    from core.evaluate import accuracy
    target = np.zeros((1, 2, 16, 12), np.float32)
    target[0, 0, 4, 4] = target[0, 1, 8, 8] = 1
    output = target.copy()
    output[0, 1] = 0
    output[0, 1, 0, 0] = 1                      # far off
    acc, avg_acc, cnt, pred = accuracy(output, target)
    assert cnt == 2 and avg_acc == pytest.approx(0.5) and acc[1:].tolist() == [1.0, 0.0]


def test_nms_oks_nms():
    from nms.nms import oks_nms
    pose = np.tile([[50.0, 50.0, 1.0]], (17, 1))
    db = [{'keypoints': pose, 'score': 0.5, 'area': 900.0},
          {'keypoints': pose + [[300, 0, 0]], 'score': 0.8, 'area': 900.0},
          {'keypoints': pose + [[1, 0, 0]], 'score': 0.9, 'area': 900.0}]
    assert oks_nms(db, 0.9) == [2, 1]


def test_utils_transforms_get_affine_transform_and_affine_transform():
    from utils.transforms import affine_transform, get_affine_transform
    trans = get_affine_transform(np.array([300.0, 200.0]), np.array([0.96, 1.28]), 0, [48, 64])
    np.testing.assert_allclose(affine_transform([300, 200], trans), [24, 32], atol=1e-6)
    np.testing.assert_allclose(affine_transform([204, 72], trans), [0, 0], atol=1e-6)


def test_utils_transforms_flip_back():
    from utils.transforms import flip_back
    heatmaps = np.arange(2 * 17 * 2 * 3, dtype=np.float32).reshape(2, 17, 2, 3)
    out = flip_back(heatmaps, [[1, 2]])
    np.testing.assert_array_equal(out[:, 1], heatmaps[:, 2, :, ::-1])


def test_utils_transforms_fliplr_joints():
    from utils.transforms import fliplr_joints
    joints = np.array([[10.0, 5, 0], [20, 6, 0], [30, 7, 0]])
    vis = np.ones((3, 3))
    out, _ = fliplr_joints(joints, vis, 100, [[1, 2]])
    assert out[:, 0].tolist() == [89, 69, 79]


def test_utils_transforms_transform_preds():
    from utils.transforms import transform_preds
    coords = np.array([[[24.0, 32.0, 0.5]]])
    out = transform_preds(coords, np.array([[300.0, 200.0]]), np.array([[0.96, 1.28]]), [48, 64])
    np.testing.assert_allclose(out[0, 0], [300, 200, 0.5], atol=1e-6)


def test_joints_dataset_generate_target():
    import dataset
    cfg = coco_config(need_sample())
    ds = dataset.coco(cfg, cfg.DATASET.ROOT, 'val2017', False, None)
    joints = np.zeros((17, 3))
    joints[:, :2] = [96, 128]
    vis = np.ones((17, 3))
    vis[3] = 0
    target, weight = ds.generate_target(joints, vis)
    assert target.shape == (17, 64, 48) and target[0, 32, 24] == 1.0
    assert weight[3, 0] == 0 and not target[3].any()


# -- utils.utils: the three names the original's train.py and valid.py import -----

def test_utils_utils_create_logger(tmp_path):
    import logging

    from core.config import get_default_config, update_config, update_config_from_list
    from hsrnet.utils import runlock
    from utils.utils import create_logger
    cfg = update_config(COCO_YAML, get_default_config())
    update_config_from_list(['OUTPUT_DIR', str(tmp_path / 'out'), 'LOG_DIR', str(tmp_path / 'log')],
                            cfg)
    handlers = logging.getLogger().handlers[:]
    try:
        logger, final_output_dir, tb_log_dir = create_logger(cfg, COCO_YAML, 'train')
        logger.info('hello from the test')
    finally:
        for handler in logging.getLogger().handlers:
            handler.close()
        logging.getLogger().handlers[:] = handlers
        runlock.release()
    # The original's layout: OUTPUT_DIR/<dataset>/<model>/<cfg stem>, LOG_DIR/..._<time>
    assert final_output_dir == str(tmp_path / 'out' / 'coco' / 'pose_hsrnet_59'
                                   / '256x192_d256x3_adam_lr1e-3')
    assert os.path.basename(tb_log_dir).startswith('256x192_d256x3_adam_lr1e-3_')
    assert os.path.isdir(tb_log_dir)
    logs = [n for n in os.listdir(final_output_dir) if n.endswith('_train.log')]
    assert len(logs) == 1
    assert 'hello from the test' in open(os.path.join(final_output_dir, logs[0])).read()


def test_utils_utils_get_optimizer():
    from core.config import get_default_config
    from utils.utils import get_optimizer
    cfg = get_default_config()
    model = torch.nn.Linear(3, 2)
    optimizer = get_optimizer(cfg, model)
    assert isinstance(optimizer, torch.optim.Adam)      # the original's TRAIN.OPTIMIZER
    assert optimizer.param_groups[0]['lr'] == cfg.TRAIN.LR
    assert len(optimizer.param_groups[0]['params']) == 2


def test_utils_utils_save_checkpoint(tmp_path):
    from utils.utils import save_checkpoint
    state_dict = {'w': torch.arange(3.0)}
    save_checkpoint({'epoch': 4, 'state_dict': state_dict}, True, str(tmp_path))
    saved = torch.load(str(tmp_path / 'checkpoint.pth.tar'), weights_only=True)
    assert saved['epoch'] == 4
    best = torch.load(str(tmp_path / 'model_best.pth.tar'), weights_only=True)
    assert torch.equal(best['w'], state_dict['w'])       # the bare state_dict, as the original
    save_checkpoint({'epoch': 5, 'state_dict': state_dict}, False, str(tmp_path), 'other.pth.tar')
    assert os.path.exists(str(tmp_path / 'other.pth.tar'))
