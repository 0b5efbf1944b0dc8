"""Train a pose network: `python pose_estimation/train.py --cfg EXPERIMENT.yaml`.

One process uses the CPU, one GPU, or several GPUs of `--gpus` (DataParallel);
`torchrun --nproc_per_node N pose_estimation/train.py ...` trains with
DistributedDataParallel. Each epoch trains, validates and writes checkpoints.

SIGTERM or SIGINT (Ctrl-C) stops after the current step: checkpoint.pth.tar then
records the epoch and the batch reached, and the run exits with status 143 / 130
and one line saying how to resume. TRAIN.RESUME true continues from it, in the
middle of the epoch, exactly as an uninterrupted run would have gone on;
TRAIN.SAVE_EVERY N also saves such a checkpoint every N iterations. A resumed
run whose checkpoint already holds every epoch (and final_state.pth.tar) says so
and exits 0, writing nothing.
"""
import sys

import _init_paths  # noqa: F401  (puts lib/ on sys.path)

from hsrnet.engine.trainer import Trainer, finished_message
from hsrnet.runner.cli import COMMON_FLAGS, add_opts, base_parser, load_config
from hsrnet.runner.launch import NothingToDo, run_job, setup_run
from hsrnet.runner.setup import output_dirs


def parse_args(argv=None):
    parser = base_parser('Train a keypoint network')
    add_opts(parser)
    return parser.parse_args(argv)


def build_trainer(args):
    cfg = load_config(args, COMMON_FLAGS)
    # a restarted job whose training is finished: exit 0 before anything is written
    finished = finished_message(cfg, output_dirs(cfg, args.cfg)[0])
    if finished:
        raise NothingToDo(finished)
    return Trainer(cfg, setup_run(cfg, args.cfg, 'train'))


def main(argv=None):
    return run_job(build_trainer, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
