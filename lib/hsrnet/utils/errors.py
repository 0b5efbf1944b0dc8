"""The project's error classes, in one place that every module may import.

The scripts turn them into one line on stderr: setup errors (ConfigError and
missing files) exit with status 2, errors met while running (DataError,
NonFiniteLossError, NonFinitePredictionError, WriteError) with status 1; a
RunLockError (the output folder is in use) with status 2.
"""


class ConfigError(ValueError):
    """A yaml file or command-line override that does not fit the config tree,
    or keys that do not fit together."""


class DataError(ValueError):
    """Bad data met while reading samples (a corrupt image, ...). The scripts
    report it as one line, also when it comes out of a DataLoader worker."""


class ImageNotFoundError(DataError, FileNotFoundError):
    """An image named by the annotations is not on disk."""


class HeatmapCacheError(DataError):
    """A heatmaps file (valid.py --save-heatmaps, tools/redecode.py) that cannot be
    written, or read back as one: missing, corrupt, truncated or foreign."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class NonFinitePredictionError(FloatingPointError):
    """Predicted keypoints or boxes hold NaN or infinity: nothing is written or
    scored."""


class WriteError(OSError):
    """An output file could not be written (utils.fileio); the message names the
    file and the operating system's error."""

    def __str__(self):
        return self.args[-1] if self.args else ''


class RunLockError(RuntimeError):
    """Another live process holds the output folder (utils.runlock)."""
