"""The pose networks. Scripts pick one by `cfg.MODEL.NAME`, either through
`build_model(cfg, is_train)` or, as the original did,
`eval('models.' + cfg.MODEL.NAME + '.get_pose_net')(cfg, is_train)`."""
from hsrnet.utils.errors import ConfigError

from . import pose_hsr_msnet, pose_hsrnet, pose_resnet
from .common import check_head

# MODEL.NAME -> the module of that family (its get_pose_net and network class): the
# one registry, read by the config checks and by build_model
MODELS = {module.__name__.rsplit('.', 1)[1]: module
          for module in (pose_resnet, pose_hsrnet, pose_hsr_msnet)}


def check_model_config(model_cfg):
    """MODEL.NAME, MODEL.EXTRA.NUM_LAYERS and the head's keys name a network that
    exists (ConfigError naming the key otherwise)."""
    if model_cfg.NAME not in MODELS:
        raise ConfigError('unknown MODEL.NAME {!r}; choose one of {}'.format(
            model_cfg.NAME, ', '.join(MODELS)))
    depths = MODELS[model_cfg.NAME].NETWORK.depths
    if model_cfg.EXTRA.NUM_LAYERS not in depths:
        raise ConfigError('MODEL.EXTRA.NUM_LAYERS {} is not available for {}; choose one of {}'
                          .format(model_cfg.EXTRA.NUM_LAYERS, model_cfg.NAME,
                                  ', '.join(map(str, depths))))
    check_head(model_cfg.EXTRA)


def build_model(cfg, is_train):
    """The network of `cfg.MODEL`; with is_train, initialised for training."""
    check_model_config(cfg.MODEL)
    return MODELS[cfg.MODEL.NAME].get_pose_net(cfg, is_train)
