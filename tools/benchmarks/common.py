"""What the benchmark subcommands share: the device and its clock (sync, a timed
loop, the steady-state clock of successive epochs), the precisions worth timing,
the generated 640x480 bench set and the data roots, and the validation figure."""
import itertools
import os
import time

import numpy as np
import torch

from _paths import ROOT
from hsrnet import data as dataset
from hsrnet import models
from hsrnet.data.batching import DeviceBatcher
from hsrnet.data.loaders import build_val_loader
from hsrnet.engine.loops import validate_model
from hsrnet.engine.precision import Precision, cpu_features
from hsrnet.head.loss import JointsMSELoss
from hsrnet.samples.synthetic import DETECTION_FILE
from hsrnet.utils.distributed import DistContext

DETECTIONS = os.path.join('person_detection_results', DETECTION_FILE)
BENCH_DATA = os.path.join(ROOT, 'data', 'bench640')   # the generated 640x480 set
GRAIN = 18.0          # grey levels of noise: brings a 640x480 JPEG at quality 90 to ~150 KB
DTYPES = ('float32', 'float16', 'bfloat16')


def say(line):
    """A figure as soon as it is measured (the runs are long)."""
    print(line, flush=True)


def pick_device():
    return torch.device('cuda') if torch.cuda.is_available() else torch.device('cpu')


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def seconds_per_call(fn, calls, device, warmup=1):
    """Mean seconds of `calls` calls of fn() after `warmup` untimed ones, the device
    synced before and after the timed ones (its queued work counted)."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync(device)
    return (time.perf_counter() - start) / calls


def precisions(device, wanted=DTYPES, emulated_bf16=False):
    """The dtypes of `wanted` worth timing on `device`: float16 autocast on a GPU
    only; bfloat16 where the device computes it natively, or anywhere with
    `emulated_bf16` (on other CPUs it is 10-20x slower and the scripts never choose it)."""
    usable = {'float32': True, 'float16': device.type == 'cuda',
              'bfloat16': device.type == 'cuda' or emulated_bf16
              or cpu_features()['native_bf16']}
    return [dtype for dtype in wanted if usable[dtype]]


def set_precision(cfg, dtype):
    """AMP settings for `dtype` ('float32': autocast off)."""
    cfg.AMP.ENABLED = dtype != 'float32'
    cfg.AMP.DTYPE = 'float16' if dtype == 'float32' else dtype
    return cfg


def point_at_data(cfg, root, detections=DETECTIONS):
    """DATASET.ROOT `root`, and the detector boxes of its `detections` file."""
    cfg.DATASET.ROOT = root
    cfg.TEST.COCO_BBOX_FILE = os.path.join(root, detections)
    return cfg


def epochs(loader):
    """The loader again and again, each pass a new epoch (its own shuffle and seeds)."""
    for epoch in itertools.count():
        loader.set_epoch(epoch)
        yield loader


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
        sync(self.device)
        return self.clock()

    def batches(self, epochs, skip, count):
        seen, start = 0, (self._now() if skip == 0 else None)
        for epoch in epochs:
            asked = self._now() if start is not None else None
            batches = iter(epoch)
            first = next(batches, None)
            if first is None:
                raise ValueError('benchmark: an epoch without batches')
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


def make_bench_set(out_dir, train_images, val_images):
    """The generator's COCO layout at 640x480 with photographic grain (seeded), made
    once per size (a marker file says it is complete)."""
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


def valid_figure(cfg, device, batch, workers, output_dir):
    """(persons/s, persons) of one validation pass as valid.py runs it with flip test
    on the detector boxes of cfg's data: loading, the plain and flipped forward
    passes, decoding, OKS-NMS and the dataset's evaluation. Weights are the seeded
    initialisation: speed does not depend on them."""
    cfg = cfg.clone()
    cfg.TEST.USE_GT_BBOX, cfg.TEST.FLIP_TEST, cfg.TEST.BATCH_SIZE = False, True, batch
    ds = dataset.build_dataset(cfg, cfg.DATASET.TEST_SET, False)
    precision = Precision(cfg, device)
    loader = build_val_loader(ds, batch, workers, DistContext(), device.type == 'cuda',
                              batcher=DeviceBatcher(cfg, device, precision.memory_format))
    torch.manual_seed(0)
    model = precision.prepare_model(models.build_model(cfg, is_train=False).to(device))
    os.makedirs(output_dir, exist_ok=True)
    start = time.perf_counter()
    validate_model(cfg, loader, ds, model, JointsMSELoss(cfg.LOSS.USE_TARGET_WEIGHT),
                   output_dir, precision=precision)
    return len(ds) / (time.perf_counter() - start), len(ds)
