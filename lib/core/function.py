"""Shim: the original's `core.function` is `hsrnet.engine.loops` (spec/API.md; hsrnet/_shims.py)."""
from hsrnet._shims import alias

alias(__name__, 'hsrnet.engine.loops')
