"""Shim: the original's `core.config` is `hsrnet.config` (spec/API.md; hsrnet/_shims.py)."""
from hsrnet._shims import alias

alias(__name__, 'hsrnet.config')
