"""Shim package: the original's `utils.transforms`, `utils.vis` and `utils.utils`
(spec/API.md), from the hsrnet package."""
