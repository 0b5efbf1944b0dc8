"""One run per output folder.

A run takes an exclusive `fcntl.flock` on `<output folder>/.run.lock` before it
writes anything there, and writes its process id and phase into the file. A
second run into the same folder is refused with a `RunLockError` naming the
process that holds it. The operating system drops the lock when its process
ends in any way (`kill -9` included), so a lock file that still names a process
but is not locked is stale: it is taken over with a warning. A run that ends
normally empties the file.
"""
import atexit
import fcntl
import logging
import os
import socket

from hsrnet.utils.errors import RunLockError

logger = logging.getLogger(__name__)

LOCK_NAME = '.run.lock'

_held = {}   # real path of the folder -> open lock file of this process


def _describe(text):
    """'pid 123 (train on host)' from the lock file's content."""
    fields = dict(part.split('=', 1) for part in text.split() if '=' in part)
    if 'pid' not in fields:
        return 'another process'
    where = ' on '.join(fields[k] for k in ('phase', 'host') if k in fields)
    return 'process {}{}'.format(fields['pid'], ' ({})'.format(where) if where else '')


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire(folder, phase='run'):
    """Lock `folder` (which must exist) for this process; returns the lock file
    path. Raises RunLockError when another process holds it."""
    key = os.path.realpath(folder)
    path = os.path.join(folder, LOCK_NAME)
    if key in _held:
        return path
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    f = os.fdopen(fd, 'r+')
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = _describe(f.read())
        f.close()
        raise RunLockError(
            'output folder {} is in use by {} (lock file {}); wait for that run to end, '
            'stop it, or choose another OUTPUT_DIR'.format(folder, holder, path)) from None
    except OSError as error:
        f.close()
        raise RunLockError('cannot lock output folder {} ({}: {})'.format(
            folder, path, error)) from None
    f.seek(0)
    previous = f.read().strip()
    if previous:
        fields = dict(part.split('=', 1) for part in previous.split() if '=' in part)
        pid = int(fields['pid']) if fields.get('pid', '').isdigit() else None
        same_host = fields.get('host') in (None, socket.gethostname())
        state = ('is no longer running' if pid is None or not same_host or not _pid_alive(pid)
                 else 'no longer holds it')
        logger.warning('output folder %s: taking over the lock of %s, which %s (it stopped '
                       'without cleaning up)', folder, _describe(previous), state)
    f.seek(0)
    f.truncate()
    f.write('pid={} phase={} host={}\n'.format(os.getpid(), phase, socket.gethostname()))
    f.flush()
    _held[key] = f
    return path


def release(folder=None):
    """Empty and unlock the lock file of `folder` (all held locks by default)."""
    keys = list(_held) if folder is None else [os.path.realpath(folder)]
    for key in keys:
        f = _held.pop(key, None)
        if f is None:
            continue
        try:
            f.seek(0)
            f.truncate()
            f.flush()
        except OSError:
            pass
        finally:
            f.close()   # closing drops the flock


def held():
    return list(_held)


atexit.register(release)
