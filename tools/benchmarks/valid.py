"""valid.py persons/s end to end with flip test, on a dataset's detector boxes.

    python tools/benchmark.py valid --cfg EXPERIMENT.yaml [--batch N]
        [--data-root data/sample] [opts KEY VALUE ...]

One validation pass (data loading with WORKERS workers, forward passes of the
plain and flipped crops, decoding, OKS-NMS, COCO evaluation) on --data-root with
its detector boxes (default: the generated sample, see tools/make_sample_data.py).
Weights are the untrained initialisation: speed does not depend on them. The same
figure ends `tools/benchmark.py model` (unless --skip-valid) and, on the generated
640x480 set, `tools/benchmark.py train`.
"""
import os

import torch

from benchmarks.common import DETECTIONS, pick_device, point_at_data, say, valid_figure
from hsrnet.config import get_model_name
from hsrnet.runner.cli import load_fresh_config
from hsrnet.runner.launch import SETUP_ERRORS, report_error

TAKES_CONFIG = True   # --cfg YAML ... [opts] KEY VALUE: the scripts' command line


def add_arguments(parser, iters=False):
    parser.add_argument('--batch', type=int, default=16, help='images per forward pass')
    if iters:
        parser.add_argument('--iters', type=int, default=5, help='timed iterations per figure')
    parser.add_argument('--data-root', default='data/sample',
                        help='COCO-layout dataset for the validation pass (with '
                             + DETECTIONS + ')')


def setup(args):
    """(cfg, device), the header line printed; SETUP_ERRORS for a bad config."""
    import logging
    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    cfg = load_fresh_config(args).clone()   # writable: the benchmark sets its data
    device = pick_device()
    threads = '{} threads'.format(torch.get_num_threads()) if device.type == 'cpu' \
        else torch.cuda.get_device_name(device)
    say('benchmark: {} {}x{}, batch {}, {} ({})'.format(
        get_model_name(cfg)[0], cfg.MODEL.IMAGE_SIZE[1], cfg.MODEL.IMAGE_SIZE[0],
        args.batch, device.type, threads))
    return cfg, device


def print_figure(cfg, args, device):
    """The persons/s line (exit status 0), or status 2 where the data are missing."""
    cfg = point_at_data(cfg.clone(), args.data_root)
    try:
        speed, persons = valid_figure(cfg, device, args.batch, cfg.WORKERS, os.path.join(
            cfg.OUTPUT_DIR or 'output', 'benchmark'))
    except SETUP_ERRORS as error:
        return report_error('{} (make the sample with tools/make_sample_data.py or '
                            'give --data-root)'.format(error), 2)
    what = 'valid.py    flip test, {} detector boxes, WORKERS {}'.format(persons, cfg.WORKERS)
    say('{:<45} {:8.1f} persons/s'.format(what, speed))
    return 0


def run(args):
    try:
        cfg, device = setup(args)
    except SETUP_ERRORS as error:
        return report_error(error, 2)
    return print_figure(cfg, args, device)
