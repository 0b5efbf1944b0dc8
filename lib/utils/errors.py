"""The project's error classes, in one place that every module may import.

The scripts turn them into one line on stderr: setup errors (ConfigError and
missing files) exit with status 2, errors met while running (DataError,
NonFiniteLossError) with status 1.
"""


class ConfigError(ValueError):
    """A yaml file or command-line override that does not fit the config tree,
    or keys that do not fit together."""


class DataError(ValueError):
    """Bad data met while reading samples (a corrupt image, ...). The scripts
    report it as one line, also when it comes out of a DataLoader worker."""


class ImageNotFoundError(DataError, FileNotFoundError):
    """An image named by the annotations is not on disk."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""
