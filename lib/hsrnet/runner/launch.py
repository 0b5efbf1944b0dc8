"""How train.py and valid.py run: one-line errors and exit statuses for bad setup
and bad data, and the run context (ranks, device, logging, precision)."""
import atexit
import gc
import logging
import signal
import sys
import time
from dataclasses import dataclass

import torch

from hsrnet.runner.setup import configure_backends, create_logger, record_run, select_device
from hsrnet.utils import runlock
from hsrnet.utils.cpu_memory import keep_freed_memory
from hsrnet.utils.distributed import DistContext, barrier, init_distributed, shutdown_distributed
from hsrnet.utils.errors import ConfigError, DataError, NonFiniteLossError, NonFinitePredictionError
from hsrnet.utils.fileio import WriteError
from hsrnet.engine.precision import Precision
from hsrnet.utils.preemption import (TrainingStopped, child_processes, end_worker_processes,
                              exit_status, interrupt_at_once)
from hsrnet.utils.runlock import RunLockError

# Errors that mean "the run is set up wrongly" (ConfigError is a ValueError), or
# cannot start (the output folder is in use, cannot be created or written): the
# scripts print them as one line and exit with status 2.
SETUP_ERRORS = (ConfigError, FileNotFoundError, ValueError, RunLockError, OSError)
SETUP_ERROR_STATUS = 2

# Bad data, a NaN/infinite loss or prediction, or an output file or folder that
# cannot be written (WriteError, or any other OSError, which names its file), met
# while running: one line too (also in the log), exit status 1.
RUN_ERRORS = (DataError, NonFiniteLossError, NonFinitePredictionError, WriteError, OSError)
RUN_ERROR_STATUS = 1


class NothingToDo(Exception):
    """Raised while building a job that has nothing to do (training already
    finished): its message is printed and the run ends with status 0, having
    written nothing."""


def error_message(error):
    """The error's own message; for one re-raised from a DataLoader worker (whose
    message holds the worker's traceback) the original exception's last line."""
    message = str(error)
    if 'Original Traceback' in message:
        last = message.rstrip().splitlines()[-1]
        message = last.split(': ', 1)[1] if ': ' in last else last
    return message


def report_error(error, status):
    print('error: {}'.format(error_message(error)), file=sys.stderr)
    return status


def run_job(job_class, args):
    """Build `job_class(args)` (setup errors: one line, status 2; NothingToDo: its
    line, status 0), call its run()
    (RUN_ERRORS: logged, one line, status 1; stopped by SIGTERM/SIGINT after
    saving: one line, status 143/130; interrupted at once, in setup or outside
    the training loop: one line, status 143/130), and always leave torchrun's
    process group. Returns the exit status."""
    log = logging.getLogger(__name__)
    holder = []
    children = child_processes()   # the caller's, left alone at the end
    # The interpreter's shutdown runs the cyclic GC over every object of torch's
    # modules, 0.3-0.4 s of each script's exit on the CPUs measured; frozen at exit
    # (atexit: after this job, before that shutdown) they are left out of it.
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    try:
        with interrupt_at_once():
            return _build_and_run(job_class, args, holder, log)
    except KeyboardInterrupt as interrupt:
        signum = getattr(interrupt, 'signum', signal.SIGINT)
        message = '{}: interrupted at once; files written before are kept'.format(
            signal.Signals(signum).name)
        log.warning(message)
        print('stopped: {}'.format(message), file=sys.stderr)
        return exit_status(signum)
    finally:
        # Workers an error left busy first (freeing their loaders would wait on
        # them); then free the model (DDP holds the process group) before the group
        # is destroyed, not during interpreter shutdown, where gloo's worker
        # threads may abort the process.
        end_worker_processes(children)
        holder.clear()
        gc.collect()
        shutdown_distributed()
        runlock.release()


def _build_and_run(job_class, args, holder, log):
    try:
        holder.append(job_class(args))
        ctx = getattr(holder[0], 'ctx', None)
        if ctx is not None and ctx.dist.is_main:   # set up: the run's record is kept
            record_run(holder[0].cfg, ctx.output_dir, ctx.started, ctx.phase, sys.argv)
    except NothingToDo as done:
        print(done, flush=True)
        return 0
    except SETUP_ERRORS as error:
        return report_error(error, SETUP_ERROR_STATUS)
    try:
        holder[0].run()
        # Ranks leave together: one rank that tears down its process group
        # while another still saves can abort in gloo's threads.
        barrier()
    except RUN_ERRORS as error:
        log.error('stopped: %s', error_message(error))
        return report_error(error, RUN_ERROR_STATUS)
    except TrainingStopped as stopped:
        log.warning('%s', stopped)
        print('stopped: {}'.format(stopped), file=sys.stderr)
        return stopped.status
    return 0


@dataclass
class RunContext:
    cfg: dict
    dist: DistContext
    device: torch.device
    gpus: list
    output_dir: str
    tb_log_dir: str
    precision: Precision
    phase: str = 'train'
    started: str = ''   # the run's start time, as in its log file's name

    @property
    def replicas(self):
        """How many GPUs share one batch in this process (DataParallel)."""
        return max(len(self.gpus), 1)

    @property
    def pin_memory(self):
        return self.device.type == 'cuda'


def setup_run(cfg, cfg_file, phase):
    """Join torchrun's process group if any, create the output folders and the
    log, and choose the device and precision. `cfg_file` None: the config came
    from a checkpoint (its EXPERIMENT names the folders)."""
    dist_ctx = init_distributed()
    started = time.strftime('%Y-%m-%d-%H-%M-%S')
    logger, output_dir, tb_log_dir = create_logger(cfg, cfg_file, phase, dist_ctx.rank, started)
    logger.info('%s: %s, %d process(es)%s; outputs in %s', phase,
                cfg_file or 'the config recorded in the checkpoint',
                dist_ctx.world_size, ' ({})'.format(torch.distributed.get_backend())
                if torch.distributed.is_available() and torch.distributed.is_initialized()
                else '', output_dir)
    configure_backends(cfg)
    device, gpus = select_device(cfg, dist_ctx)
    if device.type == 'cpu' and cfg.SPEED.CPU_MALLOC_CACHE and keep_freed_memory():
        logger.info('SPEED.CPU_MALLOC_CACHE: freed memory is kept for reuse')
    precision = Precision(cfg, device)
    logging.getLogger(__name__).info('device %s (%s)', device, precision.describe())
    return RunContext(cfg, dist_ctx, device, gpus, output_dir, tb_log_dir, precision, phase,
                      started)
