"""Training and validation throughput, part by part: the data pipeline alone for
1..N workers, the model step alone, both together, and valid.py with flip test.

    python tools/benchmark_train.py --cfg experiments/coco/hsrnet59/256x192_d256x3_adam_lr1e-3.yaml \
        [--data data/bench640] [--workers 1,2] [--batch 16] [--samples 256] [--iters 4]
        [--dtypes float32,bfloat16] [--profile ROWS] [--skip-model] [--skip-valid]
        [--json] [opts KEY VALUE ...]

The data are generated, never downloaded: COCO-like 640x480 JPEGs (quality 90,
about 150 KB each: the sample generator's scenes with photographic grain) with
their annotations and detector boxes, written to --data the first time.

Data pipeline figures (training, with augmentation, shuffled), per worker count:
  items   the public dataset item: float32 crop and heatmaps made in the workers
          (the path of the scripts before the fast path; an earlier commit's own
          pipeline is timed by tools/compare_data_pipeline.py)
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
the untimed first step.
valid.py: persons/s of a validation pass with flip test on the detector boxes.
`--json` adds one machine-readable line (prefixed 'json: ').
"""
import collections
import itertools
import json
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, os.path.join(ROOT, 'lib'))

from hsrnet import data as dataset  # noqa: E402
from hsrnet import models  # noqa: E402
from hsrnet.config import get_model_name  # noqa: E402
from hsrnet.head.accuracy import accuracy_on_device  # noqa: E402
from hsrnet.engine.loops import TrainingWindow, make_training_step, validate_model  # noqa: E402
from hsrnet.head.loss import JointsMSELoss  # noqa: E402
from hsrnet.data.batching import DeviceBatcher  # noqa: E402
from hsrnet.runner.cli import add_opts, base_parser, load_fresh_config, names_from, \
    worker_counts  # noqa: E402
from hsrnet.runner.launch import SETUP_ERRORS, report_error  # noqa: E402
from hsrnet.engine.optim import get_optimizer  # noqa: E402
from hsrnet.runner.setup import configure_backends  # noqa: E402
from hsrnet.utils.cpu_memory import keep_freed_memory  # noqa: E402
from hsrnet.utils.distributed import DistContext  # noqa: E402
from hsrnet.utils.errors import ConfigError  # noqa: E402
from hsrnet.data.loaders import EpochSeededLoader, build_val_loader  # noqa: E402
from hsrnet.engine.precision import Precision, cpu_features, describe_cpu  # noqa: E402
from hsrnet.utils import profiling  # noqa: E402
from hsrnet.utils.profiling import training_flops  # noqa: E402

DETECTIONS = os.path.join('person_detection_results',
                          'COCO_val2017_detections_AP_H_56_person.json')
PATHS = ('items', 'crops', 'crops+')
DTYPES = ('float32', 'bfloat16')
GRAIN = 18.0          # grey levels of noise: brings a 640x480 JPEG at quality 90 to ~150 KB


def parse_args():
    parser = base_parser(__doc__.split('\n\n')[0], common_flags=False)
    parser.add_argument('--data', default=os.path.join(ROOT, 'data', 'bench640'),
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
    add_opts(parser)
    return parser.parse_args()


def make_bench_set(out_dir, train_images, val_images):
    """The generator's COCO layout at 640x480 with photographic grain (seeded)."""
    import cv2
    from hsrnet.samples import synthetic
    marker = os.path.join(out_dir, '.complete-{}-{}'.format(train_images, val_images))
    if os.path.isfile(marker):
        return
    sizes, probabilities = synthetic.IMAGE_SIZES, synthetic.IMAGE_SIZE_P
    synthetic.IMAGE_SIZES, synthetic.IMAGE_SIZE_P = np.array([[640, 480]]), np.array([1.0])
    try:
        synthetic.generate(out_dir, seed=0, train_images=train_images, val_images=val_images)
    finally:
        synthetic.IMAGE_SIZES, synthetic.IMAGE_SIZE_P = sizes, probabilities
    for split_index, split in enumerate(synthetic.SPLITS):
        folder = os.path.join(out_dir, 'images', split)
        for i, name in enumerate(sorted(os.listdir(folder))):
            path = os.path.join(folder, name)
            rng = np.random.default_rng([7, split_index, i])
            image = cv2.imread(path).astype(np.float32)
            image += GRAIN * rng.standard_normal(image.shape, dtype=np.float32)
            cv2.imwrite(path, np.clip(image, 0, 255).astype(np.uint8),
                        [cv2.IMWRITE_JPEG_QUALITY, 90])
    open(marker, 'w').close()


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


class SteadyState:
    """Batches of successive epochs, `skip` untimed, then `count` timed. `seconds` is
    what the timed ones took (with what the caller does with them, the device synced);
    `refill_seconds` the part of it spent waiting for each later epoch's first batch
    while the workers refill, which a COCO epoch does once per ~4,700 batches and
    these small sets once per few dozen. `samples` counts the timed batches' samples.

    Which rate is the steady state depends on who waits. The workers work through a
    refill (each makes its epoch's first batch), so the pipeline's own pace counts it
    (`rate_with_refill`); leaving it out would count those batches as made in no time.
    A training step fed faster than it runs only idles then, so the model-bound end to
    end leaves it out (`rate`)."""

    def __init__(self, device, clock=time.perf_counter):
        self.device, self.clock = device, clock
        self.seconds = self.refill_seconds = 0.0
        self.samples = 0

    def _now(self):
        _sync(self.device)
        return self.clock()

    def batches(self, epochs, skip, count):
        seen, start = 0, (self._now() if skip == 0 else None)
        for epoch in epochs:
            asked = self._now() if start is not None else None
            batches = iter(epoch)
            first = next(batches, None)
            if first is None:
                raise ValueError('benchmark_train: an epoch without batches')
            if asked is not None:
                self.refill_seconds += self._now() - asked
            for batch in itertools.chain([first], batches):
                yield batch
                seen += 1
                if seen > skip:
                    self.samples += len(batch[0])
                elif seen == skip:
                    start = self._now()
                if seen == skip + count:
                    self.seconds = self._now() - start
                    return

    @property
    def rate(self):
        return self.samples / (self.seconds - self.refill_seconds)

    @property
    def rate_with_refill(self):
        return self.samples / self.seconds


def nbytes(obj):
    """Bytes of the tensors/arrays/strings in a (nested) batch."""
    if isinstance(obj, torch.Tensor):
        return obj.nelement() * obj.element_size()
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, (list, tuple)):
        return sum(nbytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(nbytes(o) for o in obj.values())
    if isinstance(obj, str):
        return len(obj.encode())
    return 8


def data_figure(cfg, path, workers, args, device):
    """(samples/s the workers deliver after the first epoch; bytes per sample from
    the workers; ms per batch of the device's share, for the fast paths)."""
    cfg = cfg.clone()
    fast = path != 'items'
    if path == 'crops+':
        cfg.DATASET.GROUP_BY_IMAGE, cfg.DATASET.REDUCED_DECODE = True, True
    ds = dataset.build_dataset(cfg, cfg.DATASET.TRAIN_SET, True)
    ds.read_image.max_bytes = int(args.cache_mb * 2 ** 20)
    batcher = DeviceBatcher(cfg, device) if fast else None
    loader = EpochSeededLoader(ds, args.batch, workers, True, 0, DistContext(),
                               pin_memory=device.type == 'cuda', batcher=batcher,
                               group_by_image=cfg.DATASET.GROUP_BY_IMAGE,
                               persistent_workers=workers > 0)
    clock, kept = SteadyState(torch.device('cpu')), []   # the workers alone: no device
    # the first epoch is untimed: the workers' start-up, and a first batch from each
    # worker made meanwhile
    for i, batch in enumerate(clock.batches((epoch.loader for epoch in _epochs(loader)),
                                            len(loader), max(1, -(-args.samples // args.batch)))):
        if i == 0:
            per_sample = nbytes(batch) / len(batch[0])
        elif len(kept) < 3:
            kept.append(batch)
    device_ms = None
    if fast:   # the device's share, timed apart (on a GPU it overlaps the workers)
        batcher(kept[0])
        _sync(device)
        begin = time.perf_counter()
        for batch in kept:
            batcher(batch)
        _sync(device)
        device_ms = (time.perf_counter() - begin) / len(kept) * 1000
    return clock.rate_with_refill, per_sample, device_ms


def _epochs(loader):
    for epoch in itertools.count():
        loader.set_epoch(epoch)
        yield loader


def precisions(device, wanted=DTYPES):
    settings = [('float32', False, 'float32')] if 'float32' in wanted else []
    if 'bfloat16' in wanted and (device.type == 'cuda' or cpu_features()['native_bf16']):
        settings.append(('bfloat16', True, 'bfloat16'))
    return settings


def train_step_fn(cfg, model, criterion, optimizer, precision, device):
    """What train.py's loop does on the device per iteration: the step (graphed with
    SPEED.CUDA_GRAPHS), then the accuracy and the window's sums (read at PRINT_FREQ,
    so never here). Returns that and the same iteration with the step uncaptured
    (its ops visible to the profiler; the same kernels)."""
    window = TrainingWindow(device)
    training_step = make_training_step(cfg, model, criterion, optimizer, precision)
    uncaptured = getattr(training_step, 'uncaptured', training_step)

    def iteration(step):
        def run(input, target, weight):
            output, loss = step(input, target, weight)
            window.add(0, loss, input.size(0), *accuracy_on_device(output, target))
        return run
    return iteration(training_step), iteration(uncaptured)


# what model_figure built, for the figures that reuse it (the step holds the model)
Built = collections.namedtuple('Built', 'precision step uncaptured batch flops')


def model_figure(cfg, args, device, label, dtype_on, dtype):
    cfg = cfg.clone()
    cfg.AMP.ENABLED, cfg.AMP.DTYPE = dtype_on, dtype if dtype != 'float32' else 'float16'
    precision = Precision(cfg, device)
    torch.manual_seed(0)
    model = precision.prepare_model(models.build_model(cfg, is_train=False).to(device))
    width, height = cfg.MODEL.IMAGE_SIZE
    flops = training_flops(model, (args.batch, 3, height, width)) if args.profile else None
    if cfg.SPEED.COMPILE:   # as train.py; the untimed first step pays the compilation
        model.compile()
    optimizer = get_optimizer(cfg, model)
    step, uncaptured = train_step_fn(cfg, model, JointsMSELoss(True), optimizer, precision,
                                     device)
    hw, hh = cfg.MODEL.EXTRA.HEATMAP_SIZE
    input = precision.prepare_input(torch.randn(args.batch, 3, height, width), device)
    target = torch.rand(args.batch, cfg.MODEL.NUM_JOINTS, hh, hw, device=device)
    weight = torch.ones(args.batch, cfg.MODEL.NUM_JOINTS, 1, device=device)
    model.train()
    step(input, target, weight)
    _sync(device)
    start = time.perf_counter()
    for _ in range(args.iters):
        step(input, target, weight)
    _sync(device)
    return args.batch * args.iters / (time.perf_counter() - start), Built(
        precision, step, uncaptured, (input, target, weight), flops)


def profile_figure(built, device, rows, steps=3):
    """Where a model step's time goes: wall time per step, against the time the GPU
    is busy (the sum of its kernels; far less means the host is the bound); the
    device (on the CPU: CPU) time by category (utils.profiling), from the step
    uncaptured, whose ops say what each kernel is for; and the ops that take the
    most time."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    on_gpu = device.type == 'cuda'
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])

    def run(step, record_shapes):
        _sync(device)
        with profile(activities=activities, record_shapes=record_shapes) as prof:
            start = time.perf_counter()
            for _ in range(steps):
                step(*built.batch)
            _sync(device)
            wall = (time.perf_counter() - start) / steps * 1000
        return prof, wall

    prof, wall = run(built.step, False)
    averages = prof.key_averages()
    # the kernels themselves (an op's own row also carries its kernels' time: summing
    # every row would count it twice), as the table's "Self CUDA time total"
    busy = sum(a.self_device_time_total for a in averages
               if a.device_type == DeviceType.CUDA and not a.is_user_annotation)
    busy = busy / 1000 / steps if on_gpu else None
    sort = 'self_device_time_total' if on_gpu else 'self_cpu_time_total'
    table = averages.table(sort_by=sort, row_limit=rows)
    visible, _ = run(built.uncaptured, True)   # record_shapes: what each convolution is
    totals = profiling.account(visible.events(), device_kernels=on_gpu)
    return wall, busy, table, totals


def flops_line(built, rate, device, low_precision):
    """Achieved TFLOP/s of the timed step and its share of the device's dense peak."""
    achieved = built.flops / built.batch[0].size(0) * rate / 1e12
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else ''
    peak = profiling.peak_tflops(name, low_precision) if name else None
    return '{:.1f} GFLOP a sample: {:.1f} TFLOP/s{}'.format(
        built.flops / built.batch[0].size(0) / 1e9, achieved,
        '' if peak is None else ", {:.1f}% of the device's dense {} peak ({:.0f} TFLOP/s)"
        .format(100 * achieved / peak, 'bf16' if low_precision else 'TF32', peak)), achieved, peak


def end_to_end_figure(cfg, args, device, workers, built, items=False):
    """(SteadyState of training steps fed by the fast path, or by the public items
    with `items`: the path before it; batches an epoch; persons in the set)."""
    precision, step = built.precision, built.step
    ds = dataset.build_dataset(cfg, cfg.DATASET.TRAIN_SET, True)
    ds.read_image.max_bytes = int(args.cache_mb * 2 ** 20)
    batcher = None if items else DeviceBatcher(cfg, device, precision.memory_format)
    loader = EpochSeededLoader(ds, args.batch, workers, True, 0, DistContext(),
                               pin_memory=device.type == 'cuda', batcher=batcher,
                               persistent_workers=workers > 0)
    # on a GPU the first epoch is untimed: its last, smaller batch is a new shape,
    # which cudnn.benchmark tunes (and torch.compile recompiles) once per run, and on
    # a set of a few hundred persons that would weigh as much as the steady state
    warm = len(loader) if device.type == 'cuda' else 1
    clock = SteadyState(device)
    for input, target, weight, meta in clock.batches(_epochs(loader), warm, args.iters):
        if items:
            input = precision.prepare_input(input, device)
            target, weight = target.to(device), weight.to(device)
        step(input, target, weight)
    return clock, len(loader), len(ds)


def short_epochs(epoch_batches, persons, workers, args):
    """Say so when the set's epochs are too short for the end-to-end figure: at each
    epoch's refill every worker makes a batch, which the model-bound figure then gets
    without waiting; with epochs of fewer than 4 rounds of the workers that hides
    whether the workers keep up."""
    if epoch_batches >= 4 * workers:
        return
    per_image = persons / args.train_images
    print('note   epochs of {} batches for {} workers are short for the end-to-end figure; '
          '--train-images {} or more gives 4 rounds of the workers an epoch'.format(
              epoch_batches, workers,
              int(np.ceil(4 * workers * args.batch / per_image))), flush=True)


def valid_figure(cfg, args, device, workers):
    cfg = cfg.clone()
    cfg.TEST.USE_GT_BBOX, cfg.TEST.FLIP_TEST, cfg.TEST.BATCH_SIZE = False, True, args.batch
    ds = dataset.build_dataset(cfg, cfg.DATASET.TEST_SET, False)
    precision = Precision(cfg, device)
    loader = build_val_loader(ds, args.batch, workers, DistContext(), device.type == 'cuda',
                              batcher=DeviceBatcher(cfg, device, precision.memory_format))
    torch.manual_seed(0)
    model = precision.prepare_model(models.build_model(cfg, is_train=False).to(device))
    output_dir = os.path.join(ROOT, 'output', 'benchmark_train')
    os.makedirs(output_dir, exist_ok=True)
    start = time.perf_counter()
    validate_model(cfg, loader, ds, model, JointsMSELoss(True), output_dir,
                   precision=precision)
    return len(ds) / (time.perf_counter() - start), len(ds)


def main():
    args = parse_args()
    import logging
    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    try:
        cfg = load_fresh_config(args)
        if cfg.SPEED.CUDA_GRAPHS and not torch.cuda.is_available():
            raise ConfigError('SPEED.CUDA_GRAPHS needs a CUDA GPU; this machine has none '
                              '(add SPEED.CUDA_GRAPHS false)')
        make_bench_set(args.data, args.train_images, args.val_images)
        cfg.DATASET.ROOT = args.data
        cfg.TEST.COCO_BBOX_FILE = os.path.join(args.data, DETECTIONS)
        cfg.MODEL.PRETRAINED = ''
        cfg.MODEL.INIT_WEIGHTS = False
    except SETUP_ERRORS as error:
        return report_error(error, 2)
    device = torch.device('cuda') if torch.cuda.is_available() else torch.device('cpu')
    configure_backends(cfg)   # cudnn.benchmark etc. from the yaml, as the scripts do
    if device.type == 'cpu' and cfg.SPEED.CPU_MALLOC_CACHE:
        keep_freed_memory()   # as the scripts do (runner.launch.setup_run)
    workers_list = args.workers
    features = cpu_features()
    where = torch.cuda.get_device_name(device) if device.type == 'cuda' else \
        describe_cpu(features)
    result = {'model': get_model_name(cfg)[1], 'device': where, 'batch': args.batch,
              'data': {}, 'bytes_per_sample': {}, 'model_step': {}, 'end_to_end': {}}
    result['compile'] = bool(cfg.SPEED.COMPILE)
    result['cuda_graphs'] = bool(cfg.SPEED.CUDA_GRAPHS)
    print('benchmark_train: {} batch {} on {}{}{}'.format(
        result['model'], args.batch, where, ', torch.compile' if cfg.SPEED.COMPILE else '',
        ', CUDA graphs' if cfg.SPEED.CUDA_GRAPHS else ''), flush=True)
    torch.set_num_threads(torch.get_num_threads())
    for workers in workers_list:
        for path in args.paths:
            rate, per_sample, device_ms = data_figure(cfg, path, workers, args, device)
            result['data']['{} w{}'.format(path, workers)] = rate
            result['bytes_per_sample'][path] = per_sample
            if device_ms is not None:
                result.setdefault('device_ms_per_batch', {})[path] = device_ms
            print('data   {:7s} workers {}: {:8.1f} samples/s  {:9.0f} bytes/sample from '
                  'the workers{}'.format(path, workers, rate, per_sample,
                                         '' if device_ms is None else ', then {:.1f} ms per '
                                         'batch on the device'.format(device_ms)),
                  flush=True)
    if not args.skip_model:
        data_rate = result['data'].get('crops w{}'.format(max(workers_list)))
        for label, on, dtype in precisions(device, args.dtypes):
            rate, built = model_figure(cfg, args, device, label, on, dtype)
            result['model_step'][label] = rate
            print('model  training step {:9s}: {:8.1f} samples/s'.format(label, rate),
                  flush=True)
            if args.profile:
                wall, busy, table, totals = profile_figure(built, device, args.profile)
                line, achieved, peak = flops_line(built, rate, device, label != 'float32')
                result.setdefault('profile_ms_per_step', {})[label] = {
                    'wall': wall, 'device_busy': busy, 'tflops': achieved, 'peak_tflops': peak,
                    'categories': {k: v / 1000 / 3 for k, v in totals.items()}}
                print('profile {}: {:.1f} ms per step{}\n{}\n{} time of one step by category '
                      '(the step uncaptured: the same kernels, their ops visible):\n{}\n'
                      '  {}'.format(label, wall, ', the GPU busy {:.1f} ms of it'.format(busy)
                                    if device.type == 'cuda' else '', table,
                                    'GPU' if device.type == 'cuda' else 'CPU',
                                    '\n'.join(profiling.format_account(totals, 3)), line),
                      flush=True)
            if label == 'float32' and 'items' in args.paths:
                e2e_items = end_to_end_figure(cfg, args, device, max(workers_list), built,
                                              items=True)[0].rate
                result['end_to_end']['float32 items'] = {'rate': e2e_items}
                print('e2e    {:9s} workers {}: {:8.1f} samples/s fed by the public items '
                      '(the path before)'.format(label, max(workers_list), e2e_items),
                      flush=True)
            clock, epoch_batches, persons = end_to_end_figure(cfg, args, device,
                                                              max(workers_list), built)
            bound = 'data' if data_rate is not None and data_rate < rate else 'model'
            # model-bound: the refills are idle time a COCO epoch pays once per ~4,700
            # batches; data-bound: the workers work through them (SteadyState)
            e2e = clock.rate if bound == 'model' else clock.rate_with_refill
            result['end_to_end'][label] = {'rate': e2e, 'bound': bound,
                                           'rate_with_refill': clock.rate_with_refill}
            print('e2e    {:9s} workers {}: {:8.1f} samples/s ({}-bound: data {:.1f}, model '
                  '{:.1f}; {:.1f} with each epoch\'s refill)'.format(
                      label, max(workers_list), e2e, bound, data_rate or -1, rate,
                      clock.rate_with_refill), flush=True)
            short_epochs(epoch_batches, persons, max(workers_list), args)
        if 'bfloat16' in args.dtypes and not any(p[0] == 'bfloat16' for p in precisions(device)):
            print('model  bfloat16: not timed, this {} CPU has no native bfloat16 (10-20x '
                  'slower than float32 there)'.format(features['capability']))
    if not args.skip_valid:
        rate, persons = valid_figure(cfg, args, device, max(workers_list))
        result['valid_flip_persons_per_s'] = rate
        print('valid  flip test, {} detector boxes, workers {}: {:8.1f} persons/s'.format(
            persons, max(workers_list), rate), flush=True)
    if args.json:
        print('json: ' + json.dumps(result, sort_keys=True))
    return 0


if __name__ == '__main__':
    sys.exit(main())
