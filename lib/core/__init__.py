"""Shim package: the original's `core.config`, `core.inference`, `core.function`,
`core.loss` and `core.evaluate` (spec/API.md), each the hsrnet module itself."""
