"""Shim package: the original's `nms.nms` (spec/API.md) is `hsrnet.nms.nms`."""
