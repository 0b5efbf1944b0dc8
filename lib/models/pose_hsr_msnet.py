"""Shim: the original's `models.pose_hsr_msnet` is `hsrnet.models.pose_hsr_msnet` (spec/API.md; hsrnet/_shims.py)."""
from hsrnet._shims import alias

alias(__name__, 'hsrnet.models.pose_hsr_msnet')
