"""Run setup shared by train.py and valid.py: output folders and logging, the
device, the cuDNN settings."""
import logging
import os
import shlex
import sys
import time

import torch

from hsrnet.config import dump_config, get_model_name
from hsrnet.utils import runlock
from hsrnet.utils.errors import ConfigError
from hsrnet.utils.fileio import ReportingFileHandler, describe_os_error, \
    remove_stale_temp_files, write_atomically

logger = logging.getLogger(__name__)

LOG_FORMAT = '%(asctime)-15s %(message)s'


def _dataset_folder(cfg):
    name = cfg.DATASET.DATASET
    if cfg.DATASET.HYBRID_JOINTS_TYPE:
        name += '_' + cfg.DATASET.HYBRID_JOINTS_TYPE
    return name.replace(':', '_')


def output_dirs(cfg, cfg_file, time_str=None):
    """(OUTPUT_DIR/<dataset>/<model>/<experiment>, LOG_DIR/<dataset>/<model>/<experiment>_<time>,
    time), the experiment being EXPERIMENT or, unset, the yaml file's stem."""
    dataset = _dataset_folder(cfg)
    model_name = get_model_name(cfg)[0]
    cfg_stem = cfg.get('EXPERIMENT') or os.path.splitext(os.path.basename(cfg_file))[0]
    time_str = time_str or time.strftime('%Y-%m-%d-%H-%M-%S')
    final_output_dir = os.path.join(cfg.OUTPUT_DIR, dataset, model_name, cfg_stem)
    tb_log_dir = os.path.join(cfg.LOG_DIR, dataset, model_name,
                              '{}_{}'.format(cfg_stem, time_str))
    return final_output_dir, tb_log_dir, time_str


def create_logger(cfg, cfg_file, phase='train', rank=0, time_str=None):
    """Create the output folders and log to the console and to a file beside the
    checkpoints (<experiment>_<time>_<phase>.log), as the original did; the run's
    config is recorded once the run is set up (record_run).

    Only rank 0 writes files and logs at INFO; other ranks report warnings only.
    The TensorBoard folder is made for the 'train' phase only (None when it
    cannot be: one warning, training goes on). Rank 0 locks the
    output folder (utils.runlock: one run per folder) before writing in it, and
    removes the temporary files an interrupted save left there.
    Returns (logger, final_output_dir, tb_log_dir).
    """
    final_output_dir, tb_log_dir, time_str = output_dirs(cfg, cfg_file, time_str)
    console = logging.StreamHandler(sys.stdout)
    if rank != 0:
        logging.basicConfig(level=logging.WARNING, handlers=[console], force=True,
                            format='[rank {}] {}'.format(rank, LOG_FORMAT))
        return logging.getLogger(), final_output_dir, tb_log_dir
    os.makedirs(final_output_dir, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, force=True, handlers=[console])
    runlock.acquire(final_output_dir, phase)
    cfg_stem = os.path.basename(final_output_dir)
    log_file = os.path.join(final_output_dir, '{}_{}_{}.log'.format(cfg_stem, time_str, phase))
    file_handler = ReportingFileHandler(log_file)
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(file_handler)
    if phase == 'train':     # only training writes TensorBoard scalars
        try:
            os.makedirs(tb_log_dir, exist_ok=True)
        except OSError as error:   # LOG_DIR read-only, full, ...: training goes on
            logger.warning('cannot create the TensorBoard folder %s: %s; no TensorBoard '
                           'logging, training goes on', tb_log_dir, describe_os_error(error))
            tb_log_dir = None
    remove_stale_temp_files(final_output_dir)
    return logging.getLogger(), final_output_dir, tb_log_dir


def record_run(cfg, output_dir, time_str, phase, argv):
    """The run's merged config and command line, once the run is set up (a run that
    fails at setup leaves the folder as it was): kept per run beside its log
    (<experiment>_<time>_<phase>_config.yaml, the command line in its first line),
    and as <phase>_config.yaml, the latest run's."""
    stem = os.path.basename(output_dir)
    text = '# {}\n{}'.format(' '.join(shlex.quote(a) for a in argv), dump_config(cfg))
    for name in ('{}_{}_{}_config.yaml'.format(stem, time_str, phase),
                 '{}_config.yaml'.format(phase)):
        write_atomically(os.path.join(output_dir, name),
                         lambda f: f.write(text.encode('utf-8')))


def parse_gpus(gpus):
    """'0,1' -> [0, 1]."""
    try:
        ids = [int(g) for g in str(gpus).split(',') if g.strip()]
    except ValueError:
        ids = []
    if not ids or min(ids) < 0:
        raise ConfigError("GPUS must be comma-separated GPU ids such as '0' or '0,1', got {!r}"
                          .format(gpus))
    return ids


def select_device(cfg, dist_ctx):
    """(device, gpu ids for DataParallel): CUDA when present, else the CPU.

    Under torchrun each rank takes the GPU of its LOCAL_RANK; otherwise GPUS names
    the GPUs of this one process (the first one holds the model).
    """
    if not torch.cuda.is_available():
        if str(cfg.GPUS) not in ('', '0'):
            logger.info('no CUDA device: GPUS=%s is ignored, running on the CPU', cfg.GPUS)
        return torch.device('cpu'), []
    if dist_ctx.enabled:
        return torch.device('cuda', dist_ctx.local_rank), [dist_ctx.local_rank]
    gpus = parse_gpus(cfg.GPUS)
    count = torch.cuda.device_count()
    if max(gpus) >= count:
        raise ConfigError('GPUS={} names a GPU that does not exist (this machine has {})'
                          .format(cfg.GPUS, count))
    return torch.device('cuda', gpus[0]), gpus


def configure_backends(cfg):
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = cfg.CUDNN.BENCHMARK
        torch.backends.cudnn.deterministic = cfg.CUDNN.DETERMINISTIC
        torch.backends.cudnn.enabled = cfg.CUDNN.ENABLED
