"""Shim: the original's `dataset.coco` is `hsrnet.data.coco` (spec/API.md; hsrnet/_shims.py)."""
from hsrnet._shims import alias

alias(__name__, 'hsrnet.data.coco')
