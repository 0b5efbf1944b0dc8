"""The original's module names (spec/API.md: `core.config`, `models.pose_hsrnet`,
`dataset.coco`, `utils.transforms`, ...) for scripts that put `lib/` on sys.path.

Each such name is a file of `lib/<old package>/` that makes itself the package's
module: after `import core.config`, `sys.modules['core.config'] is hsrnet.config`,
so there is one module object per idea (one config tree, one registry, one set of
error classes) whichever name imported it. Only `hsrnet` is installed; these
names exist only where `lib/` is on sys.path, and nothing in the package imports them.
"""
import importlib
import sys


def alias(name, target):
    """Replace the module being imported as `name` by the module `target`."""
    sys.modules[name] = importlib.import_module(target)
