"""Shim: the original's `utils.utils`, which its train.py and valid.py (and every
script derived from them) import as
`from utils.utils import create_logger, get_optimizer, save_checkpoint`.

The three live by concern now: the run's folders and logging in
hsrnet.runner.setup, the optimizer in hsrnet.engine.optim, checkpoint writing in
hsrnet.utils.checkpoint. This module only
re-exports them; nothing in the project imports it.
"""
from hsrnet.engine.optim import get_optimizer  # noqa: F401
from hsrnet.runner.setup import create_logger  # noqa: F401
from hsrnet.utils.checkpoint import save_checkpoint  # noqa: F401

__all__ = ['create_logger', 'get_optimizer', 'save_checkpoint']
