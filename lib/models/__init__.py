"""Shim package: the original's `models` (spec/API.md). Its scripts call
`eval('models.' + cfg.MODEL.NAME + '.get_pose_net')(cfg, is_train)`; the networks and
their registry are hsrnet.models'."""
from hsrnet.models import MODELS, build_model  # noqa: F401

from . import pose_hsr_msnet, pose_hsrnet, pose_resnet  # noqa: F401
