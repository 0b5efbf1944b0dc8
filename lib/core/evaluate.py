"""Shim: the original's `core.evaluate` is `hsrnet.head.accuracy` (spec/API.md; hsrnet/_shims.py)."""
from hsrnet._shims import alias

alias(__name__, 'hsrnet.head.accuracy')
