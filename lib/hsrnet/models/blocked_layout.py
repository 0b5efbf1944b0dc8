"""Float32 inference on the CPU in oneDNN's blocked layout, bit for bit the
contiguous (NCHW) forward pass, about 1.15x faster (HSRNet-59 256x192, a batch of
32 on one core of an AVX-512 EPYC: 4.11 s against 4.75 s; docs/benchmarks.md).

On an NCHW tensor, each convolution of PyTorch's CPU build reorders its input
into oneDNN's blocked layout (nChw16c), runs oneDNN's blocked kernel and
reorders the result back: for the 1x1 convolutions of the 64x48 stages the two
reorders cost more than the convolution. Here the activations stay blocked
from the first convolution to the deconvolution head:

- convolutions call the same oneDNN primitive on the blocked tensor (the same
  kernel, so the same sums in the same order);
- ReLU, max pooling and the residual additions are exact, in any layout;
- batch norm: ATen computes y = x * alpha + beta per channel, with
  alpha = rsqrt(var + eps) * weight and beta = bias - mean * alpha, both as
  fused multiply-adds. oneDNN's batch norm given mean 0, variance 1, epsilon 0,
  scale alpha and shift beta computes the same fused multiply-add.
- the transposed convolutions and everything after them run as before, on the
  dense tensor (oneDNN has no blocked kernel for them in PyTorch).

Only networks whose forward code uses these operations alone (`PoseNet.
runs_in_blocked_layout`: HSRNet and the ResNet baseline, not HSR-MSNet with its
splits, concatenations and squeeze-excitation) are converted, and a converted
network is compared bit for bit with the original on a probe batch before it
is used: a PyTorch build that computes batch norm otherwise keeps the original.
The converted network shares the original's weights and holds a reordered copy
of the convolution weights; it is for inference only (no autograd, eval mode).
"""
import copy
import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)

# the probe's crops: small (tens of ms for both networks) but large enough that every
# stage sees more than one pixel
PROBE_BATCH = 2
PROBE_MIN_SIDE = 64


class BlockedConv2d(nn.Module):
    """A Conv2d on blocked tensors (oneDNN's own kernel, the weight reordered once);
    dense inputs go to the original module."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv
        self.padding, self.stride = list(conv.padding), list(conv.stride)
        self.dilation, self.groups = list(conv.dilation), conv.groups
        # plain attributes, not buffers: they stay out of state_dict and .to()
        self.packed_weight = torch._C._nn.mkldnn_reorder_conv2d_weight(
            conv.weight.detach().to_mkldnn(), self.padding, self.stride, self.dilation,
            self.groups)
        self.bias = None if conv.bias is None else conv.bias.detach()

    def forward(self, x):
        if not x.is_mkldnn:
            return self.conv(x)
        return torch.mkldnn_convolution(x, self.packed_weight, self.bias, self.padding,
                                        self.stride, self.dilation, self.groups)


def aten_batch_norm_terms(bn):
    """(alpha, beta) float32 per channel as ATen's CPU batch norm computes them in
    eval mode: alpha = rsqrt(var + eps) * weight, beta = bias - mean * alpha with
    one rounding (float64 holds the product exactly)."""
    alpha = torch.rsqrt(bn.running_var + bn.eps) * bn.weight.detach()
    beta = bn.bias.detach().double() - bn.running_mean.double() * alpha.double()
    return alpha, beta.float()


class BlockedBatchNorm2d(nn.Module):
    """An eval-mode BatchNorm2d on blocked tensors: oneDNN's batch norm with
    mean 0, variance 1, eps 0, scale alpha and shift beta = x * alpha + beta in
    one rounding, as ATen's (checked by the probe). Dense inputs go to the original."""

    def __init__(self, bn):
        super().__init__()
        self.bn = bn
        self.alpha, self.beta = aten_batch_norm_terms(bn)
        self.zeros, self.ones = torch.zeros_like(self.alpha), torch.ones_like(self.alpha)

    def forward(self, x):
        if not x.is_mkldnn:
            return self.bn(x)
        return torch.batch_norm(x, self.alpha, self.beta, self.zeros, self.ones,
                                False, 0.0, 0.0, False)


class DenseInput(nn.Module):
    """A module without a blocked kernel (the transposed convolutions): its input
    leaves the blocked layout first."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x.to_dense() if x.is_mkldnn else x)


# ATen runs a 1x1 convolution on one thread through its own GEMM path rather
# than oneDNN's (other last bits) for batches under 16 (ConvParams::use_mkldnn)
ATEN_ONEDNN_MIN_BATCH = 16


def matches_contiguous_pass(batch_size, threads):
    """Whether the blocked network gives bit for bit what the contiguous forward
    pass gives for a batch of `batch_size` on `threads` intra-op threads
    (measured, tests/test_blocked_layout.py): batches of 2 or more, on two threads
    or more or of ATEN_ONEDNN_MIN_BATCH or more (a single image takes other
    oneDNN paths in the contiguous pass)."""
    return batch_size >= 2 and (threads >= 2 or batch_size >= ATEN_ONEDNN_MIN_BATCH)


class BlockedLayoutNet(nn.Module):
    """Dense NCHW float32 in, dense NCHW out; in between the blocked network.
    Inputs it would not give the contiguous pass's bits for (matches_contiguous_pass),
    and any outside no-grad float32 CPU inference, go to the original network."""

    def __init__(self, blocked, original):
        super().__init__()
        self.blocked = blocked
        self.original = [original]      # a list: not a submodule, not walked twice

    def forward(self, x):
        if x.dtype != torch.float32 or x.device.type != 'cpu' or x.dim() != 4 \
                or torch.is_grad_enabled() or torch.is_autocast_enabled('cpu') \
                or not matches_contiguous_pass(x.size(0), torch.get_num_threads()):
            return self.original[0](x)
        out = self.blocked(x.contiguous().to_mkldnn())
        return out.to_dense() if out.is_mkldnn else out


def _convert(model):
    """A copy of `model` sharing its parameters and buffers, its Conv2d, BatchNorm2d
    and ConvTranspose2d replaced as above."""
    shared = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    clone = copy.deepcopy(model, memo=shared)

    def replace(parent):
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                setattr(parent, name, BlockedConv2d(child))
            elif isinstance(child, nn.BatchNorm2d):
                setattr(parent, name, BlockedBatchNorm2d(child))
            elif isinstance(child, nn.ConvTranspose2d):
                setattr(parent, name, DenseInput(child))
            else:
                replace(child)
    replace(clone)
    return clone


def why_not_blocked(model):
    """None if `model` can run in the blocked layout, else the reason (a phrase)."""
    if not torch.backends.mkldnn.is_available():
        return 'this PyTorch build has no oneDNN'
    if not getattr(model, 'runs_in_blocked_layout', False):
        return '{} uses operations without a blocked kernel'.format(
            getattr(model, 'arch', type(model).__name__))
    if model.training:
        return 'the network is in training mode'
    parameters = list(model.parameters())
    if any(p.device.type != 'cpu' or p.dtype != torch.float32 for p in parameters):
        return 'the network is not float32 on the CPU'
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d) and not (module.affine
                                                       and module.track_running_stats):
            return 'a batch norm without running statistics or affine terms'
        if isinstance(module, nn.Conv2d) and module.padding_mode != 'zeros':
            return 'a convolution with padding mode {!r}'.format(module.padding_mode)
    return None


def _on_threads(threads, function, *args):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return function(*args)
    finally:
        torch.set_num_threads(previous)


def blocked_layout_net(model, image_size):
    """The blocked-layout version of `model` (eval mode, float32, CPU) for crops of
    `image_size` (width, height), or None (logged) when it cannot run so or
    does not give bit for bit the contiguous pass's heatmaps on a probe batch.
    The network's weights must not change while it is in use (it holds
    reordered copies of the convolution weights)."""
    reason = why_not_blocked(model)
    if reason is None:
        blocked = BlockedLayoutNet(_convert(model), model)
        width, height = (max(side // 4, PROBE_MIN_SIDE) for side in image_size)
        generator = torch.Generator().manual_seed(0)
        probe = torch.randn(PROBE_BATCH, 3, height, width, generator=generator)
        threads = max(torch.get_num_threads(), 2)   # where the probe batch matches
        with torch.no_grad():
            expected = _on_threads(threads, model, probe)
            got = _on_threads(threads, blocked, probe)
        if torch.equal(expected, got):
            return blocked
        reason = ('it differs from the contiguous forward pass on this machine '
                  '(largest difference {:.3g})'.format((expected - got).abs().max().item()))
    logger.info('SPEED.CPU_BLOCKED_LAYOUT: not used: %s', reason)
    return None
