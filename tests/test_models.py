"""The networks against the original's state_dict specs, their forward passes, and
the experiment yamls."""
import glob
import json
import os
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, SPEC

from hsrnet import models
from hsrnet.config import (ConfigError, check_config, get_default_config,
                         update_config)
from hsrnet.models.common import projection
from hsrnet.models.pose_hsr_msnet import DilatedMultiScaleBottleneck, MultiScaleBottleneck

EXPERIMENTS = os.path.join(ROOT, 'experiments')
# experiment folder -> (MODEL.NAME, NUM_LAYERS)
NETWORKS = {
    'resnet50': ('pose_resnet', 50), 'resnet101': ('pose_resnet', 101),
    'resnet152': ('pose_resnet', 152),
    'hsrnet59': ('pose_hsrnet', 59), 'hsrnet110': ('pose_hsrnet', 110),
    'hsrnet161': ('pose_hsrnet', 161),
    'hsr-msnet59': ('pose_hsr_msnet', 59), 'hsr-msnet110': ('pose_hsr_msnet', 110),
    'hsr-msnet161': ('pose_hsr_msnet', 161),
}


def coco_yaml(folder, size):
    return os.path.join(EXPERIMENTS, 'coco', folder, '{}_d256x3_adam_lr1e-3.yaml'.format(size))


def load_cfg(path):
    cfg = get_default_config()
    update_config(path, cfg)
    return check_config(cfg)


def original_spec(name, depth):
    path = os.path.join(SPEC, 'state_dict', '{}_{}.json'.format(name, depth))
    if not os.path.isfile(path):
        pytest.skip('state_dict spec not available: {}'.format(path))
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope='module', autouse=True)
def no_onednn():
    """oneDNN compiles kernels for every new conv shape: on these small, one-off passes
    that costs far more than the computation (up to 10 s per network)."""
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    yield
    torch.backends.mkldnn.enabled = enabled


@pytest.fixture(scope='module', params=list(NETWORKS))
def network(request):
    """(experiment folder, model of its COCO 256x192 yaml); built once per network."""
    torch.manual_seed(0)
    cfg = load_cfg(coco_yaml(request.param, '256x192'))
    return request.param, models.build_model(cfg, is_train=False)


def test_state_dict_is_the_originals_minus_its_dead_layers(network):
    folder, model = network
    spec = original_spec(*NETWORKS[folder])
    unused = set(spec['unused_keys_in_original'])
    expected = {key: shape for key, shape in spec['state_dict'].items() if key not in unused}
    got = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert got == expected
    assert list(got) == list(expected)  # same order, too
    assert model.original_unused_keys() == unused


def test_parameter_count(network):
    folder, model = network
    spec = original_spec(*NETWORKS[folder])
    assert sum(p.numel() for p in model.parameters()) == spec['params_used_in_forward']


@pytest.mark.parametrize('folder', list(NETWORKS))
def test_heatmap_shapes_at_both_input_sizes(folder):
    torch.manual_seed(0)
    for size in ('256x192', '384x288'):
        cfg = load_cfg(coco_yaml(folder, size))
        width, height = cfg.MODEL.IMAGE_SIZE
        assert size == '{}x{}'.format(height, width)
        model = models.build_model(cfg, is_train=False).eval()
        with torch.no_grad():
            heatmaps = model(torch.randn(2, 3, height, width))
        assert list(heatmaps.shape) == [2, 17, height // 4, width // 4]
        assert list(heatmaps.shape[2:]) == cfg.MODEL.EXTRA.HEATMAP_SIZE[::-1]
        assert torch.isfinite(heatmaps).all()


def test_every_parameter_gets_a_gradient(network):
    _, model = network
    model.train()
    torch.manual_seed(1)
    heatmaps = model(torch.randn(1, 3, 64, 64))
    assert heatmaps.shape == (1, 17, 16, 16)
    heatmaps.square().mean().backward()
    no_grad = [name for name, p in model.named_parameters()
               if p.grad is None or not p.grad.abs().sum() > 0]
    model.zero_grad(set_to_none=True)
    assert no_grad == []


def test_registry_and_original_style_lookup():
    assert set(models.MODELS) == {'pose_resnet', 'pose_hsrnet', 'pose_hsr_msnet'}
    cfg = load_cfg(coco_yaml('hsrnet59', '256x192'))
    get_pose_net = eval('models.' + cfg.MODEL.NAME + '.get_pose_net')
    assert type(get_pose_net(cfg, is_train=False)).__name__ == 'PoseHSRNet'
    cfg.MODEL.NAME = 'pose_hrnet'
    with pytest.raises(ValueError, match="pose_hrnet.*pose_resnet, pose_hsrnet, pose_hsr_msnet"):
        models.build_model(cfg, is_train=False)
    cfg.MODEL.NAME = 'pose_hsrnet'
    cfg.MODEL.EXTRA.NUM_LAYERS = 50
    with pytest.raises(ConfigError, match='NUM_LAYERS 50 .*pose_hsrnet.*59, 110, 161'):
        models.build_model(cfg, is_train=False)


def small_msnet(**extra):
    cfg = load_cfg(coco_yaml('hsr-msnet59', '256x192'))
    cfg.MODEL.EXTRA.update(extra)
    torch.manual_seed(0)
    return models.build_model(cfg, is_train=False).eval()


def test_other_deconv_and_final_kernels_keep_output_stride_4():
    model = small_msnet(NUM_DECONV_KERNELS=[3, 2], FINAL_CONV_KERNEL=3)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 48)).shape == (1, 17, 16, 12)


def test_channels_last_and_autocast():
    model = small_msnet()
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        expected = model(x)
        model.to(memory_format=torch.channels_last)
        got = model(x.to(memory_format=torch.channels_last))
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = model(x)
    assert torch.allclose(got, expected, rtol=1e-3, atol=1e-5)
    assert low.dtype == torch.bfloat16 and torch.isfinite(low).all()
    assert (low.float() - expected).abs().max() < 0.1 * expected.abs().max()


# --- the multi-scale blocks against the spec's formulas ---------------------------

def randomize_batch_norms(block):
    for module in block.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2)
            module.weight.data.normal_()
            module.bias.data.normal_()
    return block.eval()


def bn(layer, x):
    return F.batch_norm(x, layer.running_mean, layer.running_var, layer.weight, layer.bias,
                        training=False, eps=layer.eps)


def se(block, x):
    squeezed = F.relu(block.se.fc1(x.mean((2, 3), keepdim=True)))
    return x * torch.sigmoid(block.se.fc2(squeezed))


def hierarchy(b, x1, x2, x3):
    y1 = bn(b.bn_split1, b.conv_split1(x1))
    y2 = bn(b.bn_split2, b.conv_split2(y1 + x2))
    y3 = bn(b.bn_split3, b.conv_split3(y2 + x3))
    return [F.relu(y1), F.relu(y2), F.relu(y3)]


def test_multiscale_block_follows_the_spec():
    torch.manual_seed(0)
    b = randomize_batch_norms(MultiScaleBottleneck(64, 32, 1, projection(64, 128)))
    x = torch.randn(2, 64, 9, 7)
    out = F.relu(bn(b.bn1, b.conv1(x)))
    x0, x1, x2, x3 = out.split(8, dim=1)
    out = F.relu(torch.cat([x0] + hierarchy(b, x1, x2, x3), dim=1))
    out = se(b, bn(b.bn3, b.conv3(out)))
    expected = F.relu(out + b.downsample(x))
    with torch.no_grad():
        assert torch.allclose(b(x), expected, atol=1e-5)


def test_dilated_multiscale_block_follows_the_spec():
    torch.manual_seed(0)
    b = randomize_batch_norms(DilatedMultiScaleBottleneck(128, 32, project=False))
    x = torch.randn(2, 128, 9, 7)
    out = F.relu(bn(b.bn1, b.conv1(x)))
    x0, x1, x2, x3 = out.split(8, dim=1)
    assert b.conv_split0.dilation == (2, 2) and b.conv_split3.padding == (2, 2)
    y0 = bn(b.bn_split0, b.conv_split0(x0))
    out = F.relu(torch.cat([y0] + hierarchy(b, x1, x2, x3), dim=1))
    expected = F.relu(se(b, bn(b.bn3, b.conv3(out))) + x)
    with torch.no_grad():
        assert torch.allclose(b(x), expected, atol=1e-5)


# --- the experiment yamls ------------------------------------------------------------

YAMLS = sorted(glob.glob(os.path.join(EXPERIMENTS, '*', '*', '*.yaml')))


def test_all_experiments_are_there():
    names = {os.path.relpath(path, EXPERIMENTS) for path in YAMLS}
    speed = {n for n in names if n.endswith('_gpu_speed.yaml')}   # new: speed variants
    assert speed == {'coco/hsrnet59/256x192_d256x3_adam_lr1e-3_gpu_speed.yaml'}
    names -= speed
    assert len(names) == 26
    assert 'coco/hsr-msnet161/384x288_d256x3_adam_lr1e-3.yaml' in names
    assert 'mpii/resnet152/384x384_d256x3_adam_lr1e-3.yaml' in names
    assert {'crowdpose/hsrnet59/256x192_d256x3_adam_lr1e-3.yaml',
            'ochuman/hsrnet59/256x192_d256x3_adam_lr1e-3.yaml'} <= names


@pytest.mark.parametrize('path', YAMLS, ids=lambda p: os.path.relpath(p, EXPERIMENTS))
def test_experiment_yaml_is_consistent(path):
    cfg = load_cfg(path)
    dataset, folder, filename = os.path.relpath(path, EXPERIMENTS).split(os.sep)
    height, width = map(int, re.match(r'(\d+)x(\d+)_', filename).groups())
    extra = cfg.MODEL.EXTRA
    assert cfg.DATASET.DATASET == dataset
    assert cfg.MODEL.IMAGE_SIZE == [width, height]
    assert extra.HEATMAP_SIZE == [width // 4, height // 4]
    assert extra.SIGMA == (2 if height == 256 else 3)
    assert cfg.MODEL.NUM_JOINTS == {'coco': 17, 'mpii': 16, 'crowdpose': 14, 'ochuman': 17}[dataset]
    name, depth = NETWORKS[folder]
    assert (cfg.MODEL.NAME, extra.NUM_LAYERS) == (name, depth)
    assert extra.NUM_DECONV_LAYERS == (3 if name == 'pose_resnet' else 2)
    weights = 'resnet{}-'.format(depth) if name == 'pose_resnet' else 'detnet59.pth'
    assert cfg.MODEL.PRETRAINED.startswith('models/pytorch/imagenet/')
    assert weights in cfg.MODEL.PRETRAINED
    long_schedule = (width, height) == (288, 384)
    assert cfg.TRAIN.END_EPOCH == (160 if long_schedule else 140)
    assert cfg.TRAIN.LR_STEP == ([110, 140] if long_schedule else [90, 120])


@pytest.mark.parametrize('path', [p for p in YAMLS if not p.endswith('_gpu_speed.yaml')],
                         ids=lambda p: os.path.relpath(p, EXPERIMENTS))
def test_paper_yamls_keep_the_speed_settings_off(path):
    cfg = load_cfg(path)
    on = [key for key, value in [
        ('AMP.ENABLED', cfg.AMP.ENABLED), ('CHANNELS_LAST', cfg.CHANNELS_LAST),
        ('CPU_AUTO', cfg.CPU_AUTO), ('SPEED.FUSED_OPTIMIZER', cfg.SPEED.FUSED_OPTIMIZER),
        ('SPEED.COMPILE', cfg.SPEED.COMPILE), ('LOADER.GPU_DECODE', cfg.LOADER.GPU_DECODE),
        ('DATASET.GROUP_BY_IMAGE', cfg.DATASET.GROUP_BY_IMAGE),
        ('DATASET.REDUCED_DECODE', cfg.DATASET.REDUCED_DECODE),
        ('MODEL.ZERO_INIT_RESIDUAL', cfg.MODEL.ZERO_INIT_RESIDUAL)] if value]
    assert not on


def test_gpu_speed_yaml_is_the_paper_yaml_with_speed_settings():
    paper = load_cfg(os.path.join(EXPERIMENTS, 'coco', 'hsrnet59',
                                  '256x192_d256x3_adam_lr1e-3.yaml'))
    speed = load_cfg(os.path.join(EXPERIMENTS, 'coco', 'hsrnet59',
                                  '256x192_d256x3_adam_lr1e-3_gpu_speed.yaml'))
    assert speed.AMP.ENABLED and speed.AMP.DTYPE == 'bfloat16' and speed.CHANNELS_LAST
    assert speed.SPEED.FUSED_OPTIMIZER and speed.LOADER.PERSISTENT_WORKERS
    assert speed.SPEED.CUDA_GRAPHS and speed.SPEED.COMPILE
    for group in ('MODEL', 'TRAIN', 'TEST', 'LOSS'):
        assert speed[group] == paper[group], group


@pytest.mark.parametrize('folder', ['resnet50', 'hsrnet59', 'hsr-msnet59'])
def test_zero_init_residual_starts_each_block_as_its_shortcut(folder):
    from hsrnet.models.common import ResidualBlock
    for zero in (False, True):
        cfg = load_cfg(coco_yaml(folder, '256x192'))
        cfg.MODEL.INIT_WEIGHTS, cfg.MODEL.ZERO_INIT_RESIDUAL = False, zero
        torch.manual_seed(0)
        model = models.build_model(cfg, is_train=True)
        blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
        ends = [getattr(m, m.last_norm_name).weight for m in blocks]
        assert blocks and all(bool((w == (0 if zero else 1)).all()) for w in ends)
        others = [m.weight for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)
                  and all(m.weight is not w for w in ends)]
        assert others and all(bool((w == 1).all()) for w in others)
