"""pose_resnet: the Simple Baselines network (ResNet, output stride 32, three
deconvolutions back to stride 4), kept for comparison."""
from .common import Bottleneck, PoseNet, build_pose_net


class PoseResNet(PoseNet):
    name = 'pose_resnet'
    depths = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
    stage_names = ('layer1', 'layer2', 'layer3', 'layer4')
    imagenet_source = ("torchvision's ImageNet ResNet weights (resnet50-19c8e357.pth, "
                       "resnet101-5d3b4d8f.pth or resnet152-b121ed2d.pth)")

    def _build_stages(self, blocks_per_stage):
        return self._add_resnet_stages(Bottleneck, blocks_per_stage)


def get_pose_net(cfg, is_train, **kwargs):
    return build_pose_net(PoseResNet, cfg, is_train)
