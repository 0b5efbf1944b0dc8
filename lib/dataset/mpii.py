"""Shim: the original's `dataset.mpii` is `hsrnet.data.mpii` (spec/API.md; hsrnet/_shims.py)."""
from hsrnet._shims import alias

alias(__name__, 'hsrnet.data.mpii')
