"""Training and validation throughput, part by part: the data pipeline alone for
1..N workers, the model step alone, both together, and valid.py with flip test.

    python tools/benchmark.py train --cfg experiments/coco/hsrnet59/256x192_d256x3_adam_lr1e-3.yaml \\
        [--data data/bench640] [--workers 1,2] [--batch 16] [--samples 256] [--iters 4]
        [--dtypes float32,bfloat16] [--profile ROWS] [--skip-model] [--skip-valid]
        [--json] [opts KEY VALUE ...]

(Was tools/benchmark_train.py.) The data are generated, never downloaded: COCO-like
640x480 JPEGs (quality 90, about 150 KB each: the sample generator's scenes with
photographic grain) with their annotations and detector boxes, written to --data
the first time.

Data pipeline figures (training, with augmentation, shuffled), per worker count:
  items   the public dataset item: float32 crop and heatmaps made in the workers
          (the path of the scripts before the fast path; an earlier commit's own
          pipeline is timed by `tools/benchmark.py compare`)
  crops   the scripts' fast path: uint8 crops from the workers, normalisation and
          targets of the batch by data.batching.DeviceBatcher on the device
  crops+  the fast path with the opt-in decode savings: DATASET.GROUP_BY_IMAGE and
          DATASET.REDUCED_DECODE
each with the bytes per sample that leave the workers; samples/s are what the
workers deliver after the first epoch (their start-up), each epoch's refill counted:
the workers work through it. The device's share of the fast paths is timed apart
(ms per batch: on a GPU it overlaps the workers, on the CPU it is main-process
time). Model step: what train.py's loop does per iteration on a batch already on
the device (the training step, the accuracy and the sums read at PRINT_FREQ),
float32 and bfloat16 autocast (bfloat16 only where the device has it natively: on
other CPUs it is 10-20x slower and the scripts never choose it). End to end: the
fast path feeding the training step with the largest worker count; the bound names
the slower of data and model. When the model is the bound, the wait for each
epoch's first batch is left out (the step idles then, which a COCO epoch does once
per ~4,700 batches, these sets once per few dozen); when the data are, it counts.
With SPEED.COMPILE on the model step is torch.compile'd as in train.py, and with
SPEED.CUDA_GRAPHS on it is captured as a CUDA graph as in train.py, either paid in
the untimed first step. --profile ROWS also profiles 3 model steps per precision:
ms per step against the time the GPU is busy, the time by category
(hsrnet.utils.profiling) and the ROWS ops that take the most time.
valid.py: persons/s of a validation pass with flip test on the detector boxes.
`--json` adds one machine-readable line (prefixed 'json: ').
"""
import json
import os

import torch

from benchmarks.common import (BENCH_DATA, ROOT, make_bench_set, pick_device, point_at_data,
                               precisions, say, valid_figure)
from benchmarks.train_figures import (PROFILED_STEPS, data_figure, end_to_end_figure,
                                      flops_line, model_figure, profile_figure, short_epochs)
from hsrnet.config import get_model_name
from hsrnet.engine.precision import cpu_features, describe_cpu
from hsrnet.runner.cli import load_fresh_config, names_from, worker_counts
from hsrnet.runner.launch import SETUP_ERRORS, report_error
from hsrnet.runner.setup import configure_backends
from hsrnet.utils import profiling
from hsrnet.utils.cpu_memory import keep_freed_memory
from hsrnet.utils.errors import ConfigError

TAKES_CONFIG = True   # --cfg YAML ... [opts] KEY VALUE: the scripts' command line
PATHS = ('items', 'crops', 'crops+')
DTYPES = ('float32', 'bfloat16')


def add_arguments(parser):
    parser.add_argument('--data', default=BENCH_DATA,
                        help='folder of the generated 640x480 set (made when missing)')
    parser.add_argument('--train-images', type=int, default=160)
    parser.add_argument('--val-images', type=int, default=16)
    parser.add_argument('--workers', default='1,2', type=worker_counts,
                        help='worker counts, e.g. 1,2,4')
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--samples', type=int, default=192, help='samples per data figure')
    parser.add_argument('--iters', type=int, default=4, help='timed steps per model figure')
    parser.add_argument('--cache-mb', type=float, default=0,
                        help='decoded-image cache per process (default 0: one image, as '
                             'on a dataset much larger than any cache)')
    parser.add_argument('--paths', default='items,crops,crops+', type=names_from(PATHS),
                        help='data paths to time (items, crops, crops+)')
    parser.add_argument('--dtypes', default='float32,bfloat16', type=names_from(DTYPES),
                        help='model-step precisions to time (float32, bfloat16)')
    parser.add_argument('--profile', type=int, default=0, metavar='ROWS',
                        help='also profile 3 model steps per precision and print the ROWS '
                             'ops that take the most device (GPU) or CPU time')
    parser.add_argument('--skip-model', action='store_true')
    parser.add_argument('--skip-valid', action='store_true')
    parser.add_argument('--json', action='store_true', help='also print one json line')


def load_config(args):
    """The yaml on the generated set (made here when missing), untrained weights."""
    cfg = load_fresh_config(args).clone()   # writable: the benchmark sets its data
    if cfg.SPEED.CUDA_GRAPHS and not torch.cuda.is_available():
        raise ConfigError('SPEED.CUDA_GRAPHS needs a CUDA GPU; this machine has none '
                          '(add SPEED.CUDA_GRAPHS false)')
    make_bench_set(args.data, args.train_images, args.val_images)
    point_at_data(cfg, args.data)
    cfg.MODEL.PRETRAINED = ''
    cfg.MODEL.INIT_WEIGHTS = False
    return cfg


def data_rows(cfg, args, device, result):
    for workers in args.workers:
        for path in args.paths:
            rate, per_sample, device_ms = data_figure(cfg, path, workers, args, device)
            result['data']['{} w{}'.format(path, workers)] = rate
            result['bytes_per_sample'][path] = per_sample
            if device_ms is not None:
                result.setdefault('device_ms_per_batch', {})[path] = device_ms
            say('data   {:7s} workers {}: {:8.1f} samples/s  {:9.0f} bytes/sample from '
                'the workers{}'.format(path, workers, rate, per_sample,
                                       '' if device_ms is None else ', then {:.1f} ms per '
                                       'batch on the device'.format(device_ms)))


def profile_rows(built, rate, label, device, args, result):
    wall, busy, table, totals = profile_figure(built, device, args.profile)
    line, achieved, peak = flops_line(built, rate, device, label != 'float32')
    result.setdefault('profile_ms_per_step', {})[label] = {
        'wall': wall, 'device_busy': busy, 'tflops': achieved, 'peak_tflops': peak,
        'categories': {k: v / 1000 / PROFILED_STEPS for k, v in totals.items()}}
    say('profile {}: {:.1f} ms per step{}\n{}\n{} time of one step by category '
        '(the step uncaptured: the same kernels, their ops visible):\n{}\n'
        '  {}'.format(label, wall, ', the GPU busy {:.1f} ms of it'.format(busy)
                      if device.type == 'cuda' else '', table,
                      'GPU' if device.type == 'cuda' else 'CPU',
                      '\n'.join(profiling.format_account(totals, PROFILED_STEPS)), line))


def end_to_end_rows(cfg, args, device, built, label, rate, result):
    workers = max(args.workers)
    if label == 'float32' and 'items' in args.paths:
        e2e_items = end_to_end_figure(cfg, args, device, workers, built, items=True)[0].rate
        result['end_to_end']['float32 items'] = {'rate': e2e_items}
        say('e2e    {:9s} workers {}: {:8.1f} samples/s fed by the public items '
            '(the path before)'.format(label, workers, e2e_items))
    clock, epoch_batches, persons = end_to_end_figure(cfg, args, device, workers, built)
    data_rate = result['data'].get('crops w{}'.format(workers))
    bound = 'data' if data_rate is not None and data_rate < rate else 'model'
    # model-bound: the refills are idle time a COCO epoch pays once per ~4,700
    # batches; data-bound: the workers work through them (SteadyState)
    e2e = clock.rate if bound == 'model' else clock.rate_with_refill
    result['end_to_end'][label] = {'rate': e2e, 'bound': bound,
                                   'rate_with_refill': clock.rate_with_refill}
    say('e2e    {:9s} workers {}: {:8.1f} samples/s ({}-bound: data {:.1f}, model '
        '{:.1f}; {:.1f} with each epoch\'s refill)'.format(
            label, workers, e2e, bound, data_rate or -1, rate, clock.rate_with_refill))
    short_epochs(epoch_batches, persons, workers, args)


def model_rows(cfg, args, device, result):
    timed = precisions(device, args.dtypes)
    for label in timed:
        rate, built = model_figure(cfg, args, device, label)
        result['model_step'][label] = rate
        say('model  training step {:9s}: {:8.1f} samples/s'.format(label, rate))
        if args.profile:
            profile_rows(built, rate, label, device, args, result)
        end_to_end_rows(cfg, args, device, built, label, rate, result)
    if 'bfloat16' in args.dtypes and 'bfloat16' not in timed:
        say('model  bfloat16: not timed, this {} CPU has no native bfloat16 (10-20x '
            'slower than float32 there)'.format(cpu_features()['capability']))


def run(args):
    import logging
    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    try:
        cfg = load_config(args)
    except SETUP_ERRORS as error:
        return report_error(error, 2)
    device = pick_device()
    configure_backends(cfg)   # cudnn.benchmark etc. from the yaml, as the scripts do
    if device.type == 'cpu' and cfg.SPEED.CPU_MALLOC_CACHE:
        keep_freed_memory()   # as the scripts do (runner.launch.setup_run)
    where = torch.cuda.get_device_name(device) if device.type == 'cuda' else describe_cpu()
    result = {'model': get_model_name(cfg)[1], 'device': where, 'batch': args.batch,
              'data': {}, 'bytes_per_sample': {}, 'model_step': {}, 'end_to_end': {},
              'compile': bool(cfg.SPEED.COMPILE), 'cuda_graphs': bool(cfg.SPEED.CUDA_GRAPHS)}
    say('benchmark_train: {} batch {} on {}{}{}'.format(
        result['model'], args.batch, where, ', torch.compile' if cfg.SPEED.COMPILE else '',
        ', CUDA graphs' if cfg.SPEED.CUDA_GRAPHS else ''))
    torch.set_num_threads(torch.get_num_threads())   # OpenMP's and MKL's too, as before
    data_rows(cfg, args, device, result)
    if not args.skip_model:
        model_rows(cfg, args, device, result)
    if not args.skip_valid:
        workers = max(args.workers)
        rate, persons = valid_figure(cfg, device, args.batch, workers,
                                     os.path.join(ROOT, 'output', 'benchmark_train'))
        result['valid_flip_persons_per_s'] = rate
        say('valid  flip test, {} detector boxes, workers {}: {:8.1f} persons/s'.format(
            persons, workers, rate))
    if args.json:
        say('json: ' + json.dumps(result, sort_keys=True))
    return 0
