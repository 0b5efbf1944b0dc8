"""pose_hsrnet: HSRNet, "high spatial resolution" ResNet. The stem and layer1..layer3
of a ResNet (output stride 16), then two DetNet-style stages `new_layer4` and
`new_layer5` that keep stride 16 with dilated 3x3 convs, then two deconvolutions
back to stride 4."""
from torch import nn

from .common import Bottleneck, PoseNet, build_pose_net, projection

DILATED_WIDTH = 256         # bottleneck width of the dilated blocks (1024 in and out)
DILATED_BLOCKS = 3          # per dilated stage


class DilatedBottleneck(Bottleneck):
    """Stride 1, 3x3 conv dilated by 2; the first block of a stage has a 1x1
    projection shortcut (`extra_conv`) although its shape does not change."""
    shortcut_name = 'extra_conv'

    def __init__(self, channels, planes, project):
        super().__init__(channels, planes, dilation=2,
                         downsample=projection(channels, channels) if project else None)


def make_dilated_stage(block, channels, blocks):
    return nn.Sequential(*[block(channels, DILATED_WIDTH, project=index == 0)
                           for index in range(blocks)])


class PoseHSRNet(PoseNet):
    name = 'pose_hsrnet'
    depths = {59: (3, 4, 6), 110: (3, 4, 23), 161: (3, 8, 36)}
    stage_names = ('layer1', 'layer2', 'layer3', 'new_layer4', 'new_layer5')
    imagenet_source = ('the DetNet-59 ImageNet weights detnet59.pth (a torchvision ResNet '
                       'file such as resnet50-19c8e357.pth also fits the stem and '
                       'layer1..layer3)')
    block = Bottleneck
    dilated_block = DilatedBottleneck

    def _build_stages(self, blocks_per_stage):
        channels = self._add_resnet_stages(self.block, blocks_per_stage)
        self.new_layer4 = make_dilated_stage(self.dilated_block, channels, DILATED_BLOCKS)
        self.new_layer5 = make_dilated_stage(self.dilated_block, channels, DILATED_BLOCKS)
        return channels


def get_pose_net(cfg, is_train, **kwargs):
    return build_pose_net(PoseHSRNet, cfg, is_train)
