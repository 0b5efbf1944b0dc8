"""SPEED.CPU_BLOCKED_LAYOUT (models.blocked_layout): float32 inference in oneDNN's
blocked layout gives the contiguous forward pass's heatmaps bit for bit, or is not
used."""
import logging

import pytest
import torch

from conftest import on_setup_torch
from tiny_model import tiny_config, tiny_model

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(),
                                reason='this PyTorch build has no oneDNN')


def _trained_looking(model, seed=5):
    """BN statistics of a trained network (not 0 and 1, which round trivially)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith('running_mean'):
                buf.copy_(0.1 * torch.randn(buf.shape, generator=generator))
            elif name.endswith('running_var'):
                buf.copy_(0.5 + torch.rand(buf.shape, generator=generator))
    return model.eval()


def _convert(model, cfg):
    """The blocked network. The batch-norm formula it relies on was measured on the
    PyTorch that `make setup` installs (Makefile's TORCH_VERSION, CPU build): there
    the probe must accept it; another build may round batch norm otherwise, which
    the probe detects (the contiguous pass is kept): skipped there."""
    from hsrnet.models.blocked_layout import blocked_layout_net
    blocked = blocked_layout_net(model, cfg.MODEL.IMAGE_SIZE)
    if blocked is None and not on_setup_torch():
        pytest.skip('the probe keeps the contiguous pass on this PyTorch ({})'.format(
            torch.__version__))
    assert blocked is not None
    return blocked


def _images(cfg, n, seed=6):
    width, height = cfg.MODEL.IMAGE_SIZE
    return torch.randn(n, 3, height, width, generator=torch.Generator().manual_seed(seed))


class _Threads:
    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.before = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)


@pytest.mark.parametrize('opts', [(), ('MODEL.NAME', 'pose_resnet', 'MODEL.EXTRA.NUM_LAYERS', '50')],
                         ids=['hsrnet', 'resnet'])
def test_blocked_layout_gives_the_contiguous_heatmaps_bit_for_bit(opts):
    """On 1, 2 and 4 threads and batches of 1 to 20: the blocked network's heatmaps
    are the contiguous pass's, bit for bit; it runs blocked wherever that holds
    (batches of 2+ on 2+ threads, 16+ on one) and passes the rest to the original."""
    from hsrnet.models.blocked_layout import matches_contiguous_pass
    cfg, model = tiny_model(7, *opts)
    model = _trained_looking(model)
    blocked = _convert(model, cfg)
    calls = []
    blocked.blocked.register_forward_pre_hook(lambda module, args: calls.append(1))
    images = _images(cfg, 20)
    for threads in (1, 2, 4):
        for n in (1, 2, 8, 16, 20):
            calls.clear()
            with _Threads(threads), torch.no_grad():
                want, got = model(images[:n]), blocked(images[:n])
            assert torch.equal(got, want), (threads, n)
            assert bool(calls) == matches_contiguous_pass(n, threads), (threads, n)
    assert not matches_contiguous_pass(1, 4) and matches_contiguous_pass(16, 1)
    assert not matches_contiguous_pass(15, 1) and matches_contiguous_pass(2, 2)


def test_blocked_network_shares_the_weights_and_leaves_the_model_alone():
    cfg, model = tiny_model(8)
    model = _trained_looking(model)
    keys = list(model.state_dict())
    blocked = _convert(model, cfg)
    assert blocked.blocked.conv1.conv.weight is model.conv1.weight
    assert blocked.blocked.layer1[0].bn1.bn.running_var is model.layer1[0].bn1.running_var
    assert list(model.state_dict()) == keys
    assert isinstance(model.conv1, torch.nn.Conv2d)
    # with autograd on, the original network runs (the blocked one has no backward)
    images = _images(cfg, 4).requires_grad_()
    with _Threads(2):
        out = blocked(images)
    out.sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()


def test_hsr_msnet_is_not_converted(caplog):
    """HSR-MSNet's splits, concatenations and squeeze-excitation have no blocked
    kernels: it keeps the contiguous pass, and the log says why."""
    from hsrnet import models
    from hsrnet.models.blocked_layout import blocked_layout_net, why_not_blocked
    cfg = tiny_config('MODEL.NAME', 'pose_hsr_msnet')
    model = models.build_model(cfg, is_train=False).eval()
    assert 'operations without a blocked kernel' in why_not_blocked(model)
    with caplog.at_level(logging.INFO, logger='hsrnet.models.blocked_layout'):
        assert blocked_layout_net(model, cfg.MODEL.IMAGE_SIZE) is None
    assert 'SPEED.CPU_BLOCKED_LAYOUT: not used' in caplog.text
    _, hsrnet = tiny_model(9)
    assert 'in training mode' in why_not_blocked(hsrnet.train())


def test_the_probe_refuses_a_network_that_differs(monkeypatch, caplog):
    """A batch norm computed with other roundings than ATen's (here: beta rounded
    twice) is caught by the probe: the contiguous pass is kept."""
    from hsrnet.models import blocked_layout

    def rounded_twice(bn):
        alpha = torch.rsqrt(bn.running_var + bn.eps) * bn.weight.detach()
        return alpha, bn.bias.detach() - bn.running_mean * alpha

    monkeypatch.setattr(blocked_layout, 'aten_batch_norm_terms', rounded_twice)
    cfg, model = tiny_model(10)
    model = _trained_looking(model)
    with caplog.at_level(logging.INFO, logger='hsrnet.models.blocked_layout'):
        assert blocked_layout.blocked_layout_net(model, cfg.MODEL.IMAGE_SIZE) is None
    assert 'differs from the contiguous forward pass' in caplog.text


def test_precision_uses_the_blocked_layout_only_for_float32_contiguous_cpu():
    from hsrnet.engine.precision import Precision
    from hsrnet.models.blocked_layout import BlockedLayoutNet
    features = {'capability': 'AVX512', 'native_bf16': True}
    cpu = torch.device('cpu')
    cases = {(): True,
             ('SPEED.CPU_BLOCKED_LAYOUT', 'false'): False,
             ('CHANNELS_LAST', 'true'): False,
             ('AMP.ENABLED', 'true', 'AMP.DTYPE', 'bfloat16'): False}
    cfg, model = tiny_model(11)
    model = _trained_looking(model)
    _convert(model, cfg)   # (skips where the probe keeps the contiguous pass)
    for opts, expected in cases.items():
        cfg = tiny_config('CPU_AUTO', 'false', *opts)   # the demo yaml's CPU_AUTO: channels_last
        network = Precision(cfg, cpu, features).inference_network(model, cfg.MODEL.IMAGE_SIZE)
        assert isinstance(network, BlockedLayoutNet) == expected, opts
        assert (network is model) == (not expected)


def test_flip_test_with_the_blocked_network_side_by_side():
    """valid.py's path: the flip test's passes side by side on one thread each,
    through the blocked network, give the sequential contiguous passes' heatmaps."""
    from hsrnet.head import inference
    cfg, model = tiny_model(12)
    model = _trained_looking(model)
    blocked = _convert(model, cfg)
    pairs = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]]
    images = _images(cfg, 18)
    with _Threads(2), torch.no_grad():
        assert inference._side_by_side(images, None)
        got = inference.predict_heatmaps(blocked, images, pairs)
        want = (model(images) + inference.HeatmapCodec.flip_back(
            model(images.flip(3)), pairs, False)) * 0.5
    assert torch.equal(got, want)
