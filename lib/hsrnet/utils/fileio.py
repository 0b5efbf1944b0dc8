"""Writing output files so that a failure is one line and loses nothing.

Every output file (checkpoint, results, metrics) is written to a temporary file
beside it, `.<name>.<random>.tmp`, then renamed over it: the previous file stays
intact until the new one is complete. A write that fails (disk full, quota,
permissions) is a `WriteError` naming the file and the operating system's error,
and the temporary file is removed. A temporary file left by a process killed
while saving is removed at the next start (`remove_stale_temp_files`).
"""
import errno
import json
import logging
import os
import re
import secrets
import sys

from hsrnet.utils.errors import WriteError

logger = logging.getLogger(__name__)

TEMP_PATTERN = re.compile(r'^\..+\.[0-9a-f]{8}\.tmp$')


def inside_folder(relative):
    """Whether the relative path `relative` (a name read from an annotation file),
    joined to a folder, stays inside it: no absolute path, no '..' that climbs out
    (symbolic links are the user's own)."""
    norm = os.path.normpath(relative) if relative else '.'
    return not os.path.isabs(relative) and norm != '.' and norm.split(os.sep)[0] != os.pardir


def temp_path_for(path):
    """`dir/.name.<8 hex>.tmp` beside `path` (what remove_stale_temp_files knows)."""
    directory = os.path.dirname(os.path.abspath(path))
    return os.path.join(directory, '.{}.{}.tmp'.format(os.path.basename(path),
                                                       secrets.token_hex(4)))


def os_error_in(error, kind=OSError):
    """The OSError (or other `kind`) behind `error`: itself, or one in its
    __cause__/__context__ chain (torch.save reports a failed write, or a signal's
    exception raised while it wrote, as a RuntimeError of its own); or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def describe_os_error(error):
    """'No space left on device (errno 28 ENOSPC)' for an OSError; str() for others."""
    os_error = os_error_in(error)
    if os_error is None:
        return '{}: {}'.format(type(error).__name__, error)
    if os_error.errno is not None:
        name = errno.errorcode.get(os_error.errno, str(os_error.errno))
        reason = os_error.strerror or os.strerror(os_error.errno)
        return '{} ({})'.format(reason, name)
    return str(os_error)


def write_error(path, error):
    """A WriteError for a failed write of `path` caused by `error`."""
    os_error = os_error_in(error)
    return WriteError(os_error.errno if os_error is not None else None,
                      'cannot write {}: {}'.format(path, describe_os_error(error)))


def write_atomically(path, write):
    """Call `write(file)` on a temporary binary file beside `path`, flush it to disk
    and rename it over `path`. Any failure removes the temporary file, leaves
    `path` as it was, and raises WriteError (for an OS error) or re-raises (a
    KeyboardInterrupt met while writing as itself, not as the error torch.save
    turned it into)."""
    path = os.fspath(path)
    tmp_path = temp_path_for(path)
    try:
        with open(tmp_path, 'xb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, path)
    except BaseException as error:
        try:
            os.remove(tmp_path)
        except OSError:
            pass
        # a stop signal (KeyboardInterrupt, preemption.Interrupted) met during the
        # write stays what it is, whatever the writer made of it
        interrupt = os_error_in(error, KeyboardInterrupt)
        if interrupt is not None and interrupt is not error:
            raise interrupt from None
        if isinstance(error, Exception) and os_error_in(error) is not None:
            raise write_error(path, error) from None
        raise
    fsync_directory(os.path.dirname(os.path.abspath(path)))


def fsync_directory(directory):
    """Make a rename durable (not possible on every platform)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomically(obj, path):
    """Write json through a temporary file and a rename, so that readers never
    see a half-written file. NaN and infinity are refused (they are not json):
    ValueError naming the file."""
    try:
        text = json.dumps(obj, allow_nan=False)
    except ValueError as error:
        raise ValueError('{}: not written: {}'.format(path, error)) from None
    write_atomically(path, lambda f: f.write(text.encode('utf-8')))


def remove_stale_temp_files(directory, recursive_into=('results',)):
    """Remove the temporary files (`.<name>.<hex>.tmp`) an interrupted save left in
    `directory` (and its `recursive_into` sub-folders). Call it only while holding
    the folder's run lock. Returns the removed paths."""
    removed = []
    folders = [directory] + [os.path.join(directory, sub) for sub in recursive_into]
    for folder in folders:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in sorted(names):
            path = os.path.join(folder, name)
            if TEMP_PATTERN.match(name) and os.path.isfile(path):
                try:
                    os.remove(path)
                except OSError as error:
                    logger.warning('cannot remove stale temporary file %s: %s', path,
                                   describe_os_error(error))
                    continue
                removed.append(path)
    if removed:
        logger.warning('removed %d temporary file(s) left by an interrupted save: %s',
                       len(removed), ', '.join(removed))
    return removed


class ReportingFileHandler(logging.FileHandler):
    """A log file handler that reports a failed write as one line on stderr
    (naming the file and the OS error) and then stops writing the file, instead
    of logging's traceback after every record."""

    failed = False

    def emit(self, record):
        if self.failed:
            return
        try:
            super().emit(record)
            self.flush()
        except Exception as error:   # noqa: BLE001 (logging must not stop the run)
            self._fail(error)

    def flush(self):
        if self.failed:
            return
        try:
            super().flush()
        except Exception as error:   # noqa: BLE001
            self._fail(error)

    def handleError(self, record):
        self._fail(sys.exc_info()[1])

    def _fail(self, error):
        if self.failed:
            return
        self.failed = True
        print('warning: cannot write log file {}: {}; logging to the console only'.format(
            self.baseFilename, describe_os_error(error)), file=sys.stderr, flush=True)
        try:
            if self.stream is not None:
                self.stream.close()
        except OSError:
            pass
        self.stream = None

    def close(self):
        if self.failed:
            self.stream = None
        try:
            super().close()
        except OSError:
            pass
