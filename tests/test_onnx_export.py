"""tools/export_onnx.py and the onnxruntime runner."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT
from tiny_model import save_tiny_checkpoint, tiny_config, tiny_model, tiny_yaml

pytest.importorskip('onnxruntime')
sys.path.insert(0, os.path.join(ROOT, 'tools'))
import export_onnx  # noqa: E402
from hsrnet.apps.onnx_model import OnnxPoseNet  # noqa: E402


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp('onnx')
    yaml_file = tiny_yaml(folder / 'tiny.yaml')
    ckpt = save_tiny_checkpoint(folder / 'tiny.pth.tar')
    out = folder / 'tiny.onnx'
    assert export_onnx.main(['--cfg', yaml_file, '--model-file', ckpt, '--out', str(out)]) == 0
    return folder, yaml_file, ckpt, out


def test_onnx_heatmaps_match_torch_at_any_batch(exported):
    out = exported[3]
    cfg, model = tiny_model()
    net = OnnxPoseNet(out, cfg)
    assert net.arch == 'pose_hsrnet_59'
    for batch in (1, 5):
        images = np.random.default_rng(batch).standard_normal((batch, 3, 64, 48),
                                                              dtype=np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(images)).numpy()
        got = net(images)
        assert got.shape == (batch, 17, 16, 12)
        assert np.abs(got - expected).max() < 1e-4
        assert expected.std() > 1e-2          # the check is not trivially passed by zeros
    assert not [f for f in os.listdir(out.parent) if f.endswith('.tmp')]


def test_export_prints_the_difference(exported, capsys):
    folder, yaml_file, ckpt, _ = exported
    out = folder / 'again.onnx'
    assert export_onnx.main(['--cfg', yaml_file, '--model-file', ckpt, '--out', str(out)]) == 0
    text = capsys.readouterr().out
    assert 'largest heatmap difference' in text
    assert float(text.rsplit(':', 1)[1]) < 1e-4


def test_onnx_of_another_model_is_refused(exported):
    other = tiny_config('MODEL.NUM_JOINTS', '16')
    with pytest.raises(ValueError, match='tiny.onnx: an ONNX model of another network'):
        OnnxPoseNet(exported[3], other)


def test_not_an_onnx_file_is_refused(tmp_path):
    bad = tmp_path / 'bad.onnx'
    bad.write_bytes(b'hello')
    with pytest.raises(ValueError, match='bad.onnx: not an ONNX model'):
        OnnxPoseNet(bad)


def run_tool(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'export_onnx.py')]
                          + list(args), capture_output=True, text=True, timeout=300)


def test_checkpoint_not_fitting_the_yaml_is_one_line(exported, tmp_path):
    folder, yaml_file, ckpt, _ = exported
    out = tmp_path / 'x.onnx'
    result = run_tool('--cfg', yaml_file, '--model-file', ckpt, '--out', str(out),
                      'MODEL.EXTRA.NUM_DECONV_FILTERS', '[64, 64]')
    assert result.returncode == 2
    assert result.stderr.count('\n') == 1 and 'Traceback' not in result.stderr
    assert 'does not fit the model' in result.stderr and ckpt in result.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_unwritable_output_is_one_line(exported, tmp_path):
    folder, yaml_file, ckpt, _ = exported
    result = run_tool('--cfg', yaml_file, '--model-file', ckpt,
                      '--out', str(tmp_path / 'missing' / 'x.onnx'))
    assert result.returncode == 2 and result.stderr.startswith('error: ')
    assert 'x.onnx' in result.stderr and 'Traceback' not in result.stderr
