"""tools/count_params.py: parameters, FLOPs and stage strides."""
import os
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, 'tools'))
import count_params  # noqa: E402

YAML = os.path.join(ROOT, 'experiments', 'coco', '{}', '{}_d256x3_adam_lr1e-3.yaml')


def test_hsrnet_keeps_stride_16_and_resnet_goes_to_32():
    hsr = count_params.summarize(YAML.format('hsrnet59', '256x192'))
    res = count_params.summarize(YAML.format('resnet50', '256x192'))
    assert [(s[0], s[3]) for s in hsr['stages']] == [
        ('maxpool', 4), ('layer1', 4), ('layer2', 8), ('layer3', 16), ('new_layer4', 16),
        ('new_layer5', 16), ('deconv_layers', 4), ('final_layer', 4)]
    assert [s[3] for s in res['stages']] == [4, 4, 8, 16, 32, 4, 4]
    assert hsr['stages'][-1][1:3] == (17, (48, 64))


def test_params_and_flops():
    small = count_params.summarize(YAML.format('hsrnet59', '256x192'))
    large = count_params.summarize(YAML.format('hsrnet59', '384x288'))
    assert small['params'] == large['params'] == 22595921
    # only convolutions are counted: their cost grows exactly with the pixel count
    assert large['flops'] == pytest.approx(small['flops'] * (384 * 288) / (256 * 192), rel=1e-12)
    # the last 1x1 conv alone: 256 -> 17 channels at 48x64, 2 FLOPs per multiply-add
    assert small['flops'] > 2 * 256 * 17 * 48 * 64
    assert 12e9 < small['flops'] < 14e9


def test_bad_yaml_is_one_line(tmp_path, capsys):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('MODEL:\n  NAME: pose_nothing\n')
    sys.argv = ['count_params.py', str(bad)]
    with pytest.raises(SystemExit) as exit_info:
        count_params.main()
    assert 'pose_nothing' in str(exit_info.value)
