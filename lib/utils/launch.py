"""What train.py and valid.py share: the command line, the config, one-line errors
for bad setup, and the run context (ranks, device, logging, precision)."""
import argparse
import logging
import signal
import sys
from dataclasses import dataclass

import torch

from core.config import ConfigError, check_config, config, update_config, \
    update_config_from_list
from core.function import NonFiniteLossError, NonFinitePredictionError
from dataset import DataError
from utils.distributed import DistContext, init_distributed, shutdown_distributed
from utils.fileio import WriteError
from utils.preemption import TrainingStopped, exit_status
from utils.precision import Precision
from utils import runlock
from utils.runlock import RunLockError
from utils.utils import configure_backends, create_logger, select_device

# Errors that mean "the run is set up wrongly" (ConfigError is a ValueError), or
# cannot start (the output folder is in use, cannot be created or written): the
# scripts print them as one line and exit with status 2.
SETUP_ERRORS = (ConfigError, FileNotFoundError, ValueError, RunLockError, OSError)
SETUP_ERROR_STATUS = 2


def base_parser(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--cfg', required=True, help='experiment yaml file')
    parser.add_argument('--frequent', type=int, help='log every N iterations (PRINT_FREQ)')
    parser.add_argument('--gpus', type=str, help="GPU ids of this process, e.g. '0,1' (GPUS)")
    parser.add_argument('--workers', type=int, help='data loading processes (WORKERS)')
    return parser


def add_opts(parser):
    """HRNet's convention: trailing `KEY VALUE ...` pairs override config keys
    (a leading literal 'opts' is accepted too). Must be the last argument added."""
    parser.add_argument('opts', nargs=argparse.REMAINDER, default=[],
                        help='config overrides, e.g. DATASET.ROOT data/x TEST.BATCH_SIZE 8')


def load_config(args, flag_keys):
    """yaml, then the script's flags, then `opts`, then the consistency checks.

    `flag_keys` maps an argparse destination to (config node path, value function);
    a flag left out on the command line leaves its key alone.
    """
    cfg = config
    update_config(args.cfg, cfg)
    for dest, (key, convert) in flag_keys.items():
        value = getattr(args, dest)
        if value is None or value is False:
            continue
        *groups, leaf = key.split('.')
        node = cfg
        for group in groups:
            node = node[group]
        node[leaf] = convert(value)
    opts = list(args.opts or [])
    if opts[:1] == ['opts']:
        opts = opts[1:]
    flags = [o for o in opts[0::2] if o.startswith('-')]
    if flags:   # argparse.REMAINDER hands everything after the first KEY to opts
        raise ConfigError('opts: {} looks like a flag; give flags before the KEY VALUE '
                          'overrides'.format(flags[0]))
    update_config_from_list(opts, cfg)
    return check_config(cfg)


COMMON_FLAGS = {
    'frequent': ('PRINT_FREQ', int),
    'gpus': ('GPUS', str),
    'workers': ('WORKERS', int),
}


# Bad data, a NaN/infinite loss or prediction, or an output file that cannot be
# written, met while running: one line too (also in the log), exit status 1.
RUN_ERRORS = (DataError, NonFiniteLossError, NonFinitePredictionError, WriteError)
RUN_ERROR_STATUS = 1


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
    """Build `job_class(args)` (setup errors: one line, status 2), call its run()
    (RUN_ERRORS: logged, one line, status 1; stopped by SIGTERM/SIGINT after
    saving: one line, status 143/130; interrupted at once: one line, status 130),
    and always leave torchrun's process group. Returns the exit status."""
    log = logging.getLogger(__name__)
    try:
        try:
            job = job_class(args)
        except SETUP_ERRORS as error:
            return report_error(error, SETUP_ERROR_STATUS)
        try:
            job.run()
        except RUN_ERRORS as error:
            log.error('stopped: %s', error_message(error))
            return report_error(error, RUN_ERROR_STATUS)
        except TrainingStopped as stopped:
            log.warning('%s', stopped)
            print('stopped: {}'.format(stopped), file=sys.stderr)
            return stopped.status
    except KeyboardInterrupt as interrupt:
        signum = getattr(interrupt, 'signum', signal.SIGINT)
        message = '{}: interrupted at once; files written before are kept'.format(
            signal.Signals(signum).name)
        log.warning(message)
        print('stopped: {}'.format(message), file=sys.stderr)
        return exit_status(signum)
    finally:
        shutdown_distributed()
        runlock.release()
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

    @property
    def replicas(self):
        """How many GPUs share one batch in this process (DataParallel)."""
        return max(len(self.gpus), 1)

    @property
    def pin_memory(self):
        return self.device.type == 'cuda'


def setup_run(cfg, cfg_file, phase):
    """Join torchrun's process group if any, create the output folders and the
    log, and choose the device and precision."""
    dist_ctx = init_distributed()
    logger, output_dir, tb_log_dir = create_logger(cfg, cfg_file, phase, dist_ctx.rank)
    logger.info('%s: %s, %d process(es); outputs in %s', phase, cfg_file,
                dist_ctx.world_size, output_dir)
    configure_backends(cfg)
    device, gpus = select_device(cfg, dist_ctx)
    precision = Precision(cfg, device)
    logging.getLogger(__name__).info('device %s (%s)', device, precision.describe())
    return RunContext(cfg, dist_ctx, device, gpus, output_dir, tb_log_dir, precision)
