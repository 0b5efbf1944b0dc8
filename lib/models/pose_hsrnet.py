"""Shim: the original's `models.pose_hsrnet` is `hsrnet.models.pose_hsrnet` (spec/API.md; hsrnet/_shims.py)."""
from hsrnet._shims import alias

alias(__name__, 'hsrnet.models.pose_hsrnet')
