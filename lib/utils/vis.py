"""Shim: the original's `utils.vis` is `hsrnet.utils.vis` (spec/API.md; hsrnet/_shims.py)."""
from hsrnet._shims import alias

alias(__name__, 'hsrnet.utils.vis')
