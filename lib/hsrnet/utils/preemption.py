"""Stopping training cleanly on SIGTERM (a cluster preempting the job) or SIGINT
(Ctrl-C).

While `StopSignals` is active, the first SIGTERM or SIGINT only records a
request; the training loop finishes its current step, saves a resumable
checkpoint and raises `TrainingStopped`, which the scripts report as one line
(how to resume) with exit status 128 + signal number: 143 for SIGTERM, 130 for
SIGINT. A second signal stops at once (KeyboardInterrupt), keeping the last
checkpoint. DataLoader workers ignore both signals (`ignore_stop_signals`): the
main process ends them.
"""
import atexit
import logging
import multiprocessing
import signal
import threading
from contextlib import contextmanager

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def exit_status(signum):
    return 128 + int(signum)


class TrainingStopped(Exception):
    """Training stopped on a signal after saving a resumable checkpoint."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.signum = signum
        self.status = exit_status(signum)


class ValidationStopped(Exception):
    """A validation left at a batch boundary because a stop was requested (the
    training loop's `should_stop`); `done` of `total` batches were predicted."""

    def __init__(self, done, total):
        super().__init__('validation stopped after batch {} of {}'.format(done, total))
        self.done, self.total = done, total


class Interrupted(KeyboardInterrupt):
    """A stop signal that ends the run at once (status 128 + signum); like
    Ctrl-C's KeyboardInterrupt, so `finally` blocks and the one-line report run."""

    def __init__(self, signum, message=None):
        super().__init__(message or '{} received'.format(signal.Signals(signum).name))
        self.signum = signum


class StoppedAtOnce(Interrupted):
    """A second stop signal: the run ends without saving (status 128 + signum)."""

    def __init__(self, signum):
        super().__init__(signum, '{} received twice'.format(signal.Signals(signum).name))


@contextmanager
def interrupt_at_once(signals=(signal.SIGTERM,)):
    """While active, SIGTERM raises Interrupted, as SIGINT raises
    KeyboardInterrupt: outside the training loop (setup, validation) a
    preempted run then reports itself in one line instead of vanishing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame):
        raise Interrupted(signum)
    previous = {signum: signal.signal(signum, handle) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class StopSignals:
    """Context manager: SIGTERM/SIGINT set `requested` instead of ending the process."""

    def __init__(self, signals=STOP_SIGNALS):
        self.signals = signals
        self.signum = None
        self._previous = {}

    @property
    def requested(self):
        return self.signum is not None

    @property
    def name(self):
        return signal.Signals(self.signum).name if self.signum is not None else ''

    def _handle(self, signum, frame):
        if self.signum is not None:   # the second signal: stop now
            raise StoppedAtOnce(signum)
        self.signum = signum
        logger.warning('%s received: finishing the current step, then saving a checkpoint '
                       '(send it again to stop at once)', signal.Signals(signum).name)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        return False


def ignore_stop_signals(worker_id=None):
    """DataLoader worker_init_fn: leave SIGTERM/SIGINT to the main process."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


_exit_hook = []


def kill_workers_at_exit():
    """Make sure the interpreter's exit ends the daemonic children (DataLoader
    workers) with SIGKILL. At exit multiprocessing terminate()s them and joins, but
    workers under `ignore_stop_signals` ignore that SIGTERM and the join would wait
    forever: a script that leaves a loader's iterator (persistent workers, a loop
    left early) alive at exit would never end. Registered once, after
    multiprocessing's own hook, so it runs first; called by the loaders."""
    if not _exit_hook:
        _exit_hook.append(atexit.register(_kill_daemonic_children))


def _kill_daemonic_children():
    children = [c for c in multiprocessing.active_children() if c.daemon]
    if not children:
        return
    if threading.current_thread() is threading.main_thread():
        # torch's SIGCHLD handler would report the killed workers as a failure
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in children:
        child.kill()
    for child in children:
        child.join(5.0)


def child_processes():
    """The multiprocessing children alive now (for `end_worker_processes`)."""
    return set(multiprocessing.active_children())


def end_worker_processes(existing=(), timeout=5.0):
    """Kill the child processes started since `existing` (child_processes() at the
    run's start) that are still alive when the run ends: DataLoader workers left
    waiting after an error, which would otherwise stay until the interpreter exits
    (where `kill_workers_at_exit` ends them). Called once the run's files are
    written, before the loaders are freed: freeing a loader whose workers are still
    busy waits for them (5 s each, then a SIGTERM they ignore)."""
    children = set(multiprocessing.active_children()) - set(existing)
    if children and threading.current_thread() is threading.main_thread():
        # torch's SIGCHLD handler would report the killed workers as a failure
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in children:
        child.kill()
    for child in children:
        child.join(timeout)
