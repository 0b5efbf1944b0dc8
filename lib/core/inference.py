"""Shim: the original's `core.inference` is `hsrnet.head.inference` (spec/API.md; hsrnet/_shims.py)."""
from hsrnet._shims import alias

alias(__name__, 'hsrnet.head.inference')
