"""Checkpoint reading/writing, loading the original's checkpoints, and the training
initialisation (ImageNet weights or from scratch)."""
import json
import logging
import os
import pickle

import numpy as np
import pytest
import torch
from conftest import ROOT, SPEC

from hsrnet import models
from hsrnet.config import check_config, get_default_config, update_config
from hsrnet.models.pose_hsrnet import PoseHSRNet
from hsrnet.models.pose_resnet import PoseResNet
from hsrnet.utils.checkpoint import (load_pose_checkpoint, read_checkpoint, save_atomic,
                              save_checkpoint)


def load_cfg(folder):
    cfg = get_default_config()
    update_config(os.path.join(ROOT, 'experiments', 'coco', folder,
                               '256x192_d256x3_adam_lr1e-3.yaml'), cfg)
    return check_config(cfg)


def build(folder):
    torch.manual_seed(0)
    return models.build_model(load_cfg(folder), is_train=False)


def randomized_state(model, seed):
    """The model's state with every tensor changed, so that a load is visible."""
    generator = torch.Generator().manual_seed(seed)
    return {key: (torch.randn(value.shape, generator=generator)
                  if value.is_floating_point() else value + seed)
            for key, value in model.state_dict().items()}


def assert_state_equal(model, state):
    own = model.state_dict()
    assert set(own) == set(state)
    for key, value in state.items():
        assert torch.equal(own[key], value), key


# --- the original's checkpoints ------------------------------------------------------

def test_original_checkpoint_loads_into_hsr_msnet(tmp_path, caplog):
    path = os.path.join(SPEC, 'state_dict', 'pose_hsr_msnet_59.json')
    if not os.path.isfile(path):
        pytest.skip('state_dict spec not available: {}'.format(path))
    with open(path) as f:
        spec = json.load(f)
    model = build('hsr-msnet59')
    ours = randomized_state(model, seed=3)
    # every key of the original, in its order, as DataParallel saved them
    original = {'module.' + key: ours[key] if key in ours else
                (torch.zeros(shape) if shape else torch.tensor(0))
                for key, shape in spec['state_dict'].items()}
    checkpoint = tmp_path / 'checkpoint.pth.tar'
    torch.save({'epoch': 7, 'model': 'pose_hsr_msnet_59', 'state_dict': original,
                'perf': np.float64(0.714), 'optimizer': {'state': {}, 'param_groups': []}},
               checkpoint)
    with caplog.at_level(logging.INFO, logger='hsrnet.utils.checkpoint'):
        read = load_pose_checkpoint(model, str(checkpoint))
    assert_state_equal(model, ours)
    assert read['epoch'] == 7 and read['perf'] == pytest.approx(0.714)
    dropped = [r.getMessage() for r in caplog.records if 'never used' in r.getMessage()]
    assert len(dropped) == 1 and 'dropped {} keys'.format(
        len(spec['unused_keys_in_original'])) in dropped[0]


@pytest.fixture(scope='module')
def hsrnet():
    return build('hsrnet59')


def test_bare_state_dict_loads_from_file_and_memory(tmp_path, hsrnet):
    state = randomized_state(hsrnet, seed=5)
    path = tmp_path / 'model_best.pth.tar'
    torch.save(state, path)
    assert load_pose_checkpoint(hsrnet, path) is not None
    assert_state_equal(hsrnet, state)
    state = randomized_state(hsrnet, seed=6)
    load_pose_checkpoint(hsrnet, {'state_dict': state})
    assert_state_equal(hsrnet, state)


def test_checkpoint_without_batch_counters_loads(hsrnet):
    """PyTorch < 0.4.1 files (Simple Baselines' releases) have no num_batches_tracked."""
    state = {key: value for key, value in randomized_state(hsrnet, seed=8).items()
             if not key.endswith('num_batches_tracked')}
    load_pose_checkpoint(hsrnet, state)
    assert torch.equal(hsrnet.state_dict()['final_layer.weight'], state['final_layer.weight'])


def test_missing_unexpected_and_misshapen_keys_are_named(hsrnet):
    state = randomized_state(hsrnet, seed=9)
    before = hsrnet.state_dict()['conv1.weight'].clone()
    del state['new_layer5.2.bn3.running_var']
    state['layer4.0.conv1.weight'] = torch.zeros(1)
    state['final_layer.weight'] = torch.zeros(16, 256, 1, 1)
    with pytest.raises(ValueError) as err:
        load_pose_checkpoint(hsrnet, state)
    message = str(err.value)
    assert 'missing keys (1): new_layer5.2.bn3.running_var' in message
    assert 'unexpected keys (1): layer4.0.conv1.weight' in message
    assert 'final_layer.weight (file (16, 256, 1, 1), model (17, 256, 1, 1))' in message
    assert torch.equal(hsrnet.state_dict()['conv1.weight'], before)  # nothing loaded


def test_wrong_network_is_reported_briefly(hsrnet):
    resnet = build('resnet50')
    with pytest.raises(ValueError, match=r'unexpected keys \(\d+\): .* and \d+ more') as err:
        load_pose_checkpoint(hsrnet, resnet.state_dict())
    assert 'pose_hsrnet_59' in str(err.value)


# --- reading safely --------------------------------------------------------------------

class CreatesFile:
    """Unpickling this calls open(marker, 'w'): what a malicious file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, 'w')


@pytest.mark.parametrize('writer', ['pickle', 'torch.save'])
def test_code_in_a_checkpoint_is_refused_and_never_runs(tmp_path, writer):
    marker = tmp_path / 'code_ran'
    path = tmp_path / 'evil.pth'
    payload = {'state_dict': {'conv1.weight': torch.zeros(1)}, 'x': CreatesFile(str(marker))}
    if writer == 'pickle':
        with open(path, 'wb') as f:
            pickle.dump(payload, f, protocol=2)
    else:
        torch.save(payload, path)
    with pytest.raises(ValueError, match='refused: not a plain weights file') as err:
        read_checkpoint(path)
    assert str(path) in str(err.value)
    assert not marker.exists()


def test_missing_and_non_checkpoint_files(tmp_path, hsrnet):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        read_checkpoint(tmp_path / 'nope.pth')
    text = tmp_path / 'exp.yaml'
    text.write_text('MODEL:\n  NAME: pose_hsrnet\n')
    with pytest.raises(ValueError, match='exp.yaml: not a PyTorch checkpoint'):
        read_checkpoint(text)
    numbers = tmp_path / 'numbers.pth'
    torch.save([1, 2, 3], numbers)
    with pytest.raises(ValueError, match='numbers.pth: not a model checkpoint'):
        load_pose_checkpoint(hsrnet, numbers)


# --- writing atomically ------------------------------------------------------------------

def test_save_atomic_replaces_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / 'checkpoint.pth.tar'
    save_atomic({'epoch': 1}, path)
    save_atomic({'epoch': 2}, path)
    assert os.listdir(tmp_path) == ['checkpoint.pth.tar']
    assert read_checkpoint(path) == {'epoch': 2}
    with pytest.raises(Exception):
        save_atomic({'epoch': 3, 'bad': lambda: None}, path)  # fails half-way through
    assert os.listdir(tmp_path) == ['checkpoint.pth.tar']
    assert read_checkpoint(path) == {'epoch': 2}


def test_save_checkpoint_writes_best_as_bare_state_dict(tmp_path):
    states = {'epoch': 3, 'state_dict': {'w': torch.ones(2)}, 'perf': 0.5}
    save_checkpoint(states, False, str(tmp_path))
    assert os.listdir(tmp_path) == ['checkpoint.pth.tar']
    save_checkpoint(states, True, str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ['checkpoint.pth.tar', 'model_best.pth.tar']
    assert torch.equal(read_checkpoint(tmp_path / 'model_best.pth.tar')['w'], torch.ones(2))
    assert read_checkpoint(tmp_path / 'checkpoint.pth.tar')['epoch'] == 3


# --- initialisation for training ---------------------------------------------------------

def test_missing_imagenet_file_is_named_with_its_origin(tmp_path):
    cfg = load_cfg('hsr-msnet59')
    cfg.MODEL.PRETRAINED = str(tmp_path / 'detnet59.pth')
    with pytest.raises(FileNotFoundError) as err:
        models.build_model(cfg, is_train=True)
    message = str(err.value)
    assert str(tmp_path / 'detnet59.pth') in message
    assert 'DetNet-59' in message and "MODEL.PRETRAINED ''" in message
    models.build_model(cfg, is_train=False)  # testing reads no ImageNet file


def test_training_from_scratch(caplog):
    cfg = load_cfg('hsr-msnet59')
    cfg.MODEL.INIT_WEIGHTS = False  # PRETRAINED still names a file that is not there
    torch.manual_seed(0)
    with caplog.at_level(logging.INFO, logger='hsrnet.models.common'):
        model = models.build_model(cfg, is_train=True)
    assert any('from scratch' in r.getMessage() for r in caplog.records)
    fan_out = 64 * 7 * 7
    assert model.conv1.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.1)
    for new_weight in (model.deconv_layers[0].weight, model.final_layer.weight,
                       model.layer2[1].conv_split2.weight, model.new_layer4[0].conv_split0.weight):
        assert new_weight.std().item() == pytest.approx(0.001, rel=0.1)
    assert torch.all(model.final_layer.bias == 0)
    assert torch.all(model.deconv_layers[1].weight == 1)
    assert torch.all(model.layer3[0].bn3.weight == 1) and torch.all(model.layer3[0].bn3.bias == 0)


def fake_imagenet_resnet50(path):
    """A torchvision-like ResNet-50 file: the backbone of pose_resnet_50 plus `fc`,
    without BN batch counters (as in resnet50-19c8e357.pth)."""
    backbone = PoseResNet(load_cfg('resnet50'))
    state = {key: value for key, value in randomized_state(backbone, seed=11).items()
             if not key.startswith(('deconv_layers', 'final_layer'))
             and not key.endswith('num_batches_tracked')}
    state['fc.weight'] = torch.zeros(1000, 2048)
    state['fc.bias'] = torch.zeros(1000)
    torch.save(state, path)
    return state


def test_imagenet_weights_are_loaded_and_reported(tmp_path, caplog):
    path = str(tmp_path / 'resnet50-19c8e357.pth')
    imagenet = fake_imagenet_resnet50(path)
    model = PoseResNet(load_cfg('resnet50'))
    with caplog.at_level(logging.INFO, logger='hsrnet.models.common'):
        report = model.init_weights(path)
    backbone = [key for key in imagenet if not key.startswith('fc.')]
    assert sorted(report.loaded) == sorted(backbone)
    assert report.unexpected == ['fc.weight', 'fc.bias'] and report.mismatched == []
    assert {key.split('.')[0] for key in report.missing} == {'deconv_layers', 'final_layer'}
    own = model.state_dict()
    assert all(torch.equal(own[key], imagenet[key]) for key in backbone)
    assert model.final_layer.weight.std().item() == pytest.approx(0.001, rel=0.1)
    log = ' '.join(r.getMessage() for r in caplog.records)
    assert 'loaded {} tensors'.format(len(backbone)) in log
    assert 'deconv_layers (' in log and 'fc (2)' in log


def test_torchvision_file_fits_the_first_stages_of_hsrnet(tmp_path):
    path = str(tmp_path / 'resnet50.pth')
    imagenet = fake_imagenet_resnet50(path)
    torch.save({'state_dict': {'module.' + key: value for key, value in imagenet.items()}},
               path)
    report = PoseHSRNet(load_cfg('hsrnet59')).init_weights(path)
    assert {key.split('.')[0] for key in report.loaded} == {'conv1', 'bn1', 'layer1',
                                                            'layer2', 'layer3'}
    assert {key.split('.')[0] for key in report.unexpected} == {'layer4', 'fc'}
    assert {key.split('.')[0] for key in report.missing} == {
        'new_layer4', 'new_layer5', 'deconv_layers', 'final_layer'}


def test_imagenet_file_that_fits_nothing_is_an_error(tmp_path):
    path = str(tmp_path / 'detnet59.pth')
    torch.save({'features.0.weight': torch.zeros(1)}, path)
    with pytest.raises(ValueError, match='detnet59.pth: no tensor in it fits pose_hsrnet_59'):
        PoseHSRNet(load_cfg('hsrnet59')).init_weights(path)
