"""Throughput of the data pipeline: samples/s of training (augmentation on) and of
validation with detector boxes, through a DataLoader as the scripts use it.

    python tools/benchmark.py data --cfg experiments/coco/hsrnet59/256x192_d256x3_adam_lr1e-3.yaml \\
        --root data/sample --samples 2000 --workers 2 [opts KEY VALUE ...]

(Was tools/benchmark_data.py.) Training is read shuffled and image-grouped
(data.ImageGroupedSampler), validation in order; each line gives samples/s after
the first batch (without the workers' start-up) and image decodes per sample.
With --root, DATASET.ROOT becomes DIR and TEST.COCO_BBOX_FILE is looked up in
DIR/person_detection_results/ under its yaml file name. Small datasets are
cycled until --samples have been read.
"""
import itertools
import multiprocessing
import os
import time

import torch
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

from benchmarks.common import point_at_data, say
from hsrnet import data as dataset
from hsrnet.runner.cli import load_fresh_config
from hsrnet.runner.launch import SETUP_ERRORS, report_error

TAKES_CONFIG = True   # --cfg YAML ... [opts] KEY VALUE: the scripts' command line


def add_arguments(parser):
    parser.add_argument('--root', default='', help='dataset root (overrides DATASET.ROOT)')
    parser.add_argument('--samples', type=int, default=1000, help='samples read per pipeline')
    parser.add_argument('--workers', type=int, default=None, help='DataLoader workers '
                        '(default: WORKERS of the config)')
    parser.add_argument('--batch-size', type=int, default=None,
                        help='default: TRAIN.BATCH_SIZE / TEST.BATCH_SIZE of the config')
    parser.add_argument('--cache-mb', type=float, default=None,
                        help='per-process decoded-image cache size (default: the dataset\'s)')


def load_config(args):
    cfg = load_fresh_config(args).clone()   # writable: the benchmark sets its data
    if args.root:
        point_at_data(cfg, args.root, os.path.join(
            'person_detection_results', os.path.basename(cfg.TEST.COCO_BBOX_FILE)))
    cfg.TEST.USE_GT_BBOX = False  # validation is measured with detector boxes
    return cfg


class DecodeCounter:
    """Wraps the dataset's image loader to count decodes, across forked workers."""

    def __init__(self, load):
        self.load = load
        self.count = multiprocessing.Value('q', 0)

    def __call__(self, path):
        with self.count.get_lock():
            self.count.value += 1
        return self.load(path)


def measure(ds, sampler, batch_size, workers, samples):
    """(samples/s after the first batch, i.e. without worker start-up; image
    decodes per sample read)."""
    counter = DecodeCounter(ds.read_image.load)
    ds.read_image.load = counter
    loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        persistent_workers=workers > 0)
    batches = max(2, -(-samples // batch_size) + 1)
    epochs = itertools.chain.from_iterable(itertools.repeat(loader))
    total, timed, start = 0, 0, None
    for inputs, _, _, _ in itertools.islice(epochs, batches):
        total += len(inputs)
        if start is None:
            start = time.perf_counter()
            continue
        timed += len(inputs)
    rate = timed / (time.perf_counter() - start)
    ds.read_image.load = counter.load
    return rate, counter.count.value / total


def pipeline_lines(cfg, args, name, image_set, is_train, workers):
    ds = dataset.build_dataset(cfg, image_set, is_train)
    if args.cache_mb is not None:
        ds.read_image.max_bytes = int(args.cache_mb * 2 ** 20)
    batch = args.batch_size or (cfg.TRAIN.BATCH_SIZE if is_train else cfg.TEST.BATCH_SIZE)
    samplers = [('shuffled', RandomSampler(ds)),
                ('image-grouped', dataset.ImageGroupedSampler(ds))] if is_train \
        else [('in order, detector boxes', SequentialSampler(ds))]
    for label, sampler in samplers:
        rate, decodes = measure(ds, sampler, batch, workers, args.samples)
        say('{:5s} {:24s} {:6d} boxes, {:5d} images, batch {:3d}, workers {}: '
            '{:8.1f} samples/s, {:.2f} decodes/sample'.format(
                name, label, len(ds), len(ds.image_groups()), batch, workers, rate, decodes))


def run(args):
    try:
        cfg = load_config(args)
        workers = cfg.WORKERS if args.workers is None else args.workers
        torch.manual_seed(0)
        torch.set_num_threads(1)  # as in DataLoader workers; WORKERS 0 then measures one worker
        pipeline_lines(cfg, args, 'train', cfg.DATASET.TRAIN_SET, True, workers)
        pipeline_lines(cfg, args, 'valid', cfg.DATASET.TEST_SET, False, workers)
    except SETUP_ERRORS as error:
        return report_error(error, 2)
    return 0
