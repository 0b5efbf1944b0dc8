"""Shim: the original's `nms.nms` is `hsrnet.nms.nms` (spec/API.md; hsrnet/_shims.py)."""
from hsrnet._shims import alias

alias(__name__, 'hsrnet.nms.nms')
