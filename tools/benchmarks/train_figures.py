"""The figures of `tools/benchmark.py train` (see benchmarks/train.py): the data
pipeline alone, the model step (and its profile), and the two together."""
import collections
import time

import numpy as np
import torch

from benchmarks.common import (SteadyState, epochs, say, seconds_per_call, set_precision,
                               sync)
from hsrnet import data as dataset
from hsrnet import models
from hsrnet.data.batching import DeviceBatcher
from hsrnet.data.loaders import EpochSeededLoader
from hsrnet.engine.loops import TrainingWindow, make_training_step
from hsrnet.engine.optim import get_optimizer
from hsrnet.engine.precision import Precision
from hsrnet.head.accuracy import accuracy_on_device
from hsrnet.head.loss import JointsMSELoss
from hsrnet.utils import profiling
from hsrnet.utils.distributed import DistContext

PROFILED_STEPS = 3


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


def training_loader(cfg, args, workers, device, batcher=None, group_by_image=False):
    """The scripts' training loader on cfg's set, the decoded-image cache --cache-mb."""
    ds = dataset.build_dataset(cfg, cfg.DATASET.TRAIN_SET, True)
    ds.read_image.max_bytes = int(args.cache_mb * 2 ** 20)
    return ds, EpochSeededLoader(ds, args.batch, workers, True, 0, DistContext(),
                                 pin_memory=device.type == 'cuda', batcher=batcher,
                                 group_by_image=group_by_image,
                                 persistent_workers=workers > 0)


def data_figure(cfg, path, workers, args, device):
    """(samples/s the workers deliver after the first epoch; bytes per sample from
    the workers; ms per batch of the device's share, for the fast paths)."""
    cfg = cfg.clone()
    fast = path != 'items'
    if path == 'crops+':
        cfg.DATASET.GROUP_BY_IMAGE, cfg.DATASET.REDUCED_DECODE = True, True
    batcher = DeviceBatcher(cfg, device) if fast else None
    _, loader = training_loader(cfg, args, workers, device, batcher,
                                cfg.DATASET.GROUP_BY_IMAGE)
    clock, kept = SteadyState(torch.device('cpu')), []   # the workers alone: no device
    # the first epoch is untimed: the workers' start-up, and a first batch from each
    # worker made meanwhile
    for i, batch in enumerate(clock.batches((epoch.loader for epoch in epochs(loader)),
                                            len(loader), max(1, -(-args.samples // args.batch)))):
        if i == 0:
            per_sample = nbytes(batch) / len(batch[0])
        elif len(kept) < 3:
            kept.append(batch)
    device_ms = None
    if fast:   # the device's share, timed apart (on a GPU it overlaps the workers)
        calls = iter([kept[0]] + kept)   # the first untimed
        device_ms = seconds_per_call(lambda: batcher(next(calls)), len(kept), device) * 1000
    return clock.rate_with_refill, per_sample, device_ms


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


def model_figure(cfg, args, device, dtype):
    """(samples/s of train.py's iteration on a batch already on the device, Built)."""
    cfg = set_precision(cfg.clone(), dtype)
    precision = Precision(cfg, device)
    torch.manual_seed(0)
    model = precision.prepare_model(models.build_model(cfg, is_train=False).to(device))
    width, height = cfg.MODEL.IMAGE_SIZE
    flops = profiling.training_flops(model, (args.batch, 3, height, width)) \
        if args.profile else None
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
    seconds = seconds_per_call(lambda: step(input, target, weight), args.iters, device)
    return args.batch / seconds, Built(precision, step, uncaptured, (input, target, weight),
                                       flops)


def profile_figure(built, device, rows, steps=PROFILED_STEPS):
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
        sync(device)
        with profile(activities=activities, record_shapes=record_shapes) as prof:
            start = time.perf_counter()
            for _ in range(steps):
                step(*built.batch)
            sync(device)
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
    batcher = None if items else DeviceBatcher(cfg, device, precision.memory_format)
    ds, loader = training_loader(cfg, args, workers, device, batcher)
    # on a GPU the first epoch is untimed: its last, smaller batch is a new shape,
    # which cudnn.benchmark tunes (and torch.compile recompiles) once per run, and on
    # a set of a few hundred persons that would weigh as much as the steady state
    warm = len(loader) if device.type == 'cuda' else 1
    clock = SteadyState(device)
    for input, target, weight, meta in clock.batches(epochs(loader), warm, args.iters):
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
    say('note   epochs of {} batches for {} workers are short for the end-to-end figure; '
        '--train-images {} or more gives 4 rounds of the workers an epoch'.format(
            epoch_batches, workers, int(np.ceil(4 * workers * args.batch / per_image))))
