"""The training data pipeline of this tree against another checkout of the project
(an earlier commit), in alternating runs: samples/s and their ratio.

    git worktree add /tmp/before <commit>
    python tools/benchmark.py compare --baseline /tmp/before \\
        [--cfg experiments/coco/hsrnet59/256x192_d256x3_adam_lr1e-3.yaml] \\
        [--data data/bench640] [--workers 1,2] [--rounds 4] [--samples 960] [--plain]

(Was tools/compare_data_pipeline.py.) Each figure is a fresh process reading a
training epoch's worth of batches (shuffled, augmented) of the generated 640x480
JPEGs (`tools/benchmark.py train` makes them) after its first batch: the baseline
through its own train.py loader (its public items), this tree through the scripts'
fast path with DATASET.GROUP_BY_IMAGE and DATASET.REDUCED_DECODE (without them:
--plain), the workers' output (the device's share is timed by `benchmark.py
train`). Rounds alternate baseline and this tree, so that a machine that gets busier
or quieter affects both; the medians and their ratio are printed.
"""
import os
import statistics
import subprocess
import sys

from benchmarks.common import BENCH_DATA, ROOT, say
from hsrnet.runner.cli import worker_counts
from hsrnet.runner.launch import report_error

TAKES_CONFIG = False   # --cfg is relative to each checkout, which reads its own
DEFAULT_CFG = 'experiments/coco/hsrnet59/256x192_d256x3_adam_lr1e-3.yaml'

# Run in a fresh interpreter with a checkout's lib first on sys.path: the loader
# API it uses (build_dataset, EpochSeededLoader) is the same in every version, under
# the package's names or the names before it.
TIMER = r'''
import itertools, sys, time
checkout, cfg_file, root, workers, samples, fast = sys.argv[1:7]
cfg_file = checkout + '/' + cfg_file   # each checkout reads its own copy of the yaml
workers, samples, fast, opt_ins = int(workers), int(samples), fast != '0', fast == '2'
sys.path.insert(0, checkout + '/lib')
try:   # the package layout, or a checkout from before it (lib/dataset, lib/core, ...)
    from hsrnet import data as dataset
    from hsrnet.config import get_default_config, update_config
    from hsrnet.utils.distributed import DistContext
    from hsrnet.data.loaders import EpochSeededLoader
    from hsrnet.data.batching import DeviceBatcher
except ImportError:
    import dataset
    from core.config import get_default_config, update_config
    from utils.distributed import DistContext
    from utils.loaders import EpochSeededLoader
    from dataset.batching import DeviceBatcher
cfg = update_config(cfg_file, get_default_config())
cfg.DATASET.ROOT, cfg.MODEL.PRETRAINED = root, ''
batch = 16
extra = {}
if fast:
    cfg.DATASET.GROUP_BY_IMAGE, cfg.DATASET.REDUCED_DECODE = opt_ins, opt_ins
    extra = {'batcher': DeviceBatcher(cfg, __import__('torch').device('cpu')),
             'group_by_image': opt_ins, 'persistent_workers': workers > 0}
ds = dataset.build_dataset(cfg, cfg.DATASET.TRAIN_SET, True)
if hasattr(getattr(ds, 'read_image', None), 'max_bytes'):
    ds.read_image.max_bytes = 0   # one image: as on a set much larger than any cache
loader = EpochSeededLoader(ds, batch, workers, True, 0, DistContext(), False, **extra)
raw = getattr(loader, 'loader', loader)   # the DataLoader: the workers' output alone
def epochs():
    for epoch in itertools.count():
        loader.set_epoch(epoch)
        yield raw
start, done = None, 0
for _ in itertools.islice(itertools.chain.from_iterable(epochs()), samples // batch + 1):
    if start is None:   # the first batch pays the workers' start-up
        start = time.perf_counter()
        continue
    done += batch
print(done / (time.perf_counter() - start))
'''


def add_arguments(parser):
    parser.add_argument('--baseline', required=True, help='the other checkout (its root folder)')
    parser.add_argument('--cfg', default=DEFAULT_CFG,
                        help='experiment yaml, relative to each checkout (each reads its own)')
    parser.add_argument('--data', default=BENCH_DATA,
                        help="generated 640x480 set (`tools/benchmark.py train`'s --data)")
    parser.add_argument('--workers', default='1,2', type=worker_counts,
                        help='worker counts, e.g. 1,2')
    parser.add_argument('--rounds', type=int, default=4)
    parser.add_argument('--samples', type=int, default=960, help='samples per figure')
    parser.add_argument('--plain', action='store_true',
                        help='this tree without GROUP_BY_IMAGE and REDUCED_DECODE')


class TimerFailed(RuntimeError):
    pass


def rate(checkout, args, workers, fast):
    """samples/s of one fresh process: fast 0 the public items, 1 the fast path,
    2 the fast path with the opt-ins."""
    done = subprocess.run([sys.executable, '-c', TIMER, os.path.abspath(checkout),
                           args.cfg, os.path.abspath(args.data),
                           str(workers), str(args.samples), str(fast)],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise TimerFailed('{} failed: {}'.format(
            checkout, (done.stderr.strip().splitlines() or ['no output'])[-1]))
    return float(done.stdout.split()[-1])


def compare(args, workers):
    before, now = [], []
    for round_ in range(args.rounds):
        before.append(rate(args.baseline, args, workers, fast=0))
        now.append(rate(ROOT, args, workers, fast=1 if args.plain else 2))
        say('workers {} round {}: baseline {:7.1f} samples/s, this tree {:7.1f} '
            '({:.2f}x)'.format(workers, round_ + 1, before[-1], now[-1], now[-1] / before[-1]))
    b, n = statistics.median(before), statistics.median(now)
    say('workers {}: medians {:.1f} -> {:.1f} samples/s: {:.2f}x'.format(workers, b, n, n / b))


def run(args):
    if not os.path.isdir(os.path.join(args.baseline, 'lib')):
        return report_error('{} is not a checkout of this project (no lib/)'.format(
            args.baseline), 2)
    if not os.path.isdir(os.path.join(args.data, 'images')):
        return report_error('no generated set in {} (run `tools/benchmark.py train` once, '
                            'it makes it)'.format(args.data), 2)
    try:
        for workers in args.workers:
            compare(args, workers)
    except TimerFailed as error:
        return report_error(error, 1)
    return 0
