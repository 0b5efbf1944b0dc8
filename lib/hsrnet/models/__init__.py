"""The pose networks. Scripts pick one by `cfg.MODEL.NAME`, either through
`build_model(cfg, is_train)` or, as the original did,
`eval('models.' + cfg.MODEL.NAME + '.get_pose_net')(cfg, is_train)`."""
from hsrnet.utils.errors import ConfigError

from . import pose_hsr_msnet, pose_hsrnet, pose_resnet

MODELS = {
    'pose_resnet': pose_resnet.get_pose_net,
    'pose_hsrnet': pose_hsrnet.get_pose_net,
    'pose_hsr_msnet': pose_hsr_msnet.get_pose_net,
}


def build_model(cfg, is_train):
    """The network of `cfg.MODEL`; with is_train, initialised for training."""
    if cfg.MODEL.NAME not in MODELS:
        raise ConfigError('unknown MODEL.NAME {!r}; choose one of {}'.format(
            cfg.MODEL.NAME, ', '.join(MODELS)))
    return MODELS[cfg.MODEL.NAME](cfg, is_train)
