"""Shim: the original's `core.loss` is `hsrnet.head.loss` (spec/API.md; hsrnet/_shims.py)."""
from hsrnet._shims import alias

alias(__name__, 'hsrnet.head.loss')
