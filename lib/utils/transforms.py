"""Shim: the original's `utils.transforms` is `hsrnet.utils.transforms` (spec/API.md; hsrnet/_shims.py)."""
from hsrnet._shims import alias

alias(__name__, 'hsrnet.utils.transforms')
