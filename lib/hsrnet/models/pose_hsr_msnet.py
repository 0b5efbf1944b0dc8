"""pose_hsr_msnet: HSR-MSNet, HSRNet's macro structure with every bottleneck made
multi-scale (Res2Net-style: the width is split into 4 groups and each 3x3 conv also
sees the previous group's output) and followed by squeeze-and-excitation.

Dead layers: the original also builds conv2/bn2 in every stride-1 block and every
dilated block, and the split convs in the stride-2 blocks, but its forward never runs
them. They are not built here: they would add 7-25M parameters (memory, optimizer
state) that never get a gradient (DDP would need find_unused_parameters). Each block
names them in `dead_layers_in_original`, so that `PoseNet.original_unused_keys` knows
which keys of the original's checkpoints to drop.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .common import (EXPANSION, ResidualBlock, batch_norm, build_pose_net, conv1x1,
                     conv3x3, projection)
from .pose_hsrnet import PoseHSRNet

GROUPS = 4
SE_REDUCTION = 16


class SqueezeExcitation(nn.Module):
    """Global average pool -> fc1 -> ReLU -> fc2 -> sigmoid, scaling each channel."""

    def __init__(self, channels, reduction=SE_REDUCTION):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x):
        squeezed = F.relu(self.fc1(x.mean((2, 3), keepdim=True)), inplace=True)
        return x * torch.sigmoid(self.fc2(squeezed))


class MultiScaleBlock(ResidualBlock):
    """conv1 1x1 -> `mix` (the block's 3x3 part) -> ReLU -> conv3 1x1 -> SE,
    plus the shortcut. Subclasses register their layers in the original's order."""

    def __init__(self, inplanes, planes):
        super().__init__()
        self.width = planes // GROUPS
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = batch_norm(planes)

    def _add_split_conv(self, index, dilation):
        setattr(self, 'conv_split{}'.format(index),
                conv3x3(self.width, self.width, dilation=dilation))
        setattr(self, 'bn_split{}'.format(index), batch_norm(self.width))

    def _add_tail(self, planes, shortcut):
        self.conv3 = conv1x1(planes, planes * EXPANSION)
        self.bn3 = batch_norm(planes * EXPANSION)
        self.se = SqueezeExcitation(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self._set_projection(shortcut)

    def _hierarchy(self, x1, x2, x3):
        # y1 and y2 enter the next group's conv before their ReLU, as in the original
        y1 = self.bn_split1(self.conv_split1(x1))
        y2 = self.bn_split2(self.conv_split2(y1 + x2))
        y3 = self.bn_split3(self.conv_split3(y2 + x3))
        return y1, y2, y3

    def split_layers(self):
        return [module for name, module in self.named_children() if '_split' in name]

    def mix(self, out):
        raise NotImplementedError

    def branch(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        # one ReLU on the concatenation = the original's ReLU per group and the ReLU
        # after the concatenation (x0 has passed a ReLU already)
        out = self.relu(self.mix(out))
        return self.se(self.bn3(self.conv3(out)))


class MultiScaleBottleneck(MultiScaleBlock):
    """Block of layer1..layer3. Stride 1: keep x0, hierarchical 3x3 convs on x1..x3.
    Stride 2: a plain 3x3 `conv2` with stride 2 instead."""

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__(inplanes, planes)
        self.stride = stride
        if stride == 1:
            for index in (1, 2, 3):
                self._add_split_conv(index, dilation=1)
        else:
            self.conv2 = conv3x3(planes, planes, stride)
            self.bn2 = batch_norm(planes)
        self._add_tail(planes, downsample)

    def mix(self, out):
        if self.stride != 1:
            return self.bn2(self.conv2(out))
        x0, x1, x2, x3 = torch.split(out, self.width, dim=1)
        return torch.cat([x0, *self._hierarchy(x1, x2, x3)], dim=1)

    def dead_layers_in_original(self):
        """conv2/bn2 at stride 1, the split convs at stride 2 (as meta tensors)."""
        planes = self.conv1.out_channels
        with torch.device('meta'):
            if self.stride == 1:
                return {'conv2': conv3x3(planes, planes), 'bn2': batch_norm(planes)}
            dead = {}
            for index in (1, 2, 3):
                dead['conv_split{}'.format(index)] = conv3x3(self.width, self.width)
                dead['bn_split{}'.format(index)] = batch_norm(self.width)
            return dead


class DilatedMultiScaleBottleneck(MultiScaleBlock):
    """Block of new_layer4/new_layer5: all four groups get a 3x3 conv dilated by 2
    (x0 too, without hierarchy); the first block of a stage has an `extra_conv`
    projection shortcut."""
    shortcut_name = 'extra_conv'

    def __init__(self, channels, planes, project):
        super().__init__(channels, planes)
        for index in (1, 2, 3, 0):  # the original registers split0 last
            self._add_split_conv(index, dilation=2)
        self._add_tail(planes, projection(channels, channels) if project else None)

    def mix(self, out):
        x0, x1, x2, x3 = torch.split(out, self.width, dim=1)
        y0 = self.bn_split0(self.conv_split0(x0))
        return torch.cat([y0, *self._hierarchy(x1, x2, x3)], dim=1)

    def dead_layers_in_original(self):
        planes = self.conv1.out_channels
        with torch.device('meta'):
            return {'conv2': conv3x3(planes, planes, dilation=2), 'bn2': batch_norm(planes)}


class PoseHSRMSNet(PoseHSRNet):
    name = 'pose_hsr_msnet'
    block = MultiScaleBottleneck
    dilated_block = DilatedMultiScaleBottleneck
    runs_in_blocked_layout = False   # splits, concatenations, squeeze-excitation

    def layers_without_imagenet_counterpart(self):
        """The head, plus the split convs of the ResNet-stage blocks and of the first
        dilated block of each stage."""
        blocks = [*self.layer1, *self.layer2, *self.layer3,
                  self.new_layer4[0], self.new_layer5[0]]
        return (super().layers_without_imagenet_counterpart()
                + [layer for block in blocks for layer in block.split_layers()])


def get_pose_net(cfg, is_train, **kwargs):
    return build_pose_net(PoseHSRMSNet, cfg, is_train)


NETWORK = PoseHSRMSNet   # the network class of MODEL.NAME pose_hsr_msnet (models.MODELS)
