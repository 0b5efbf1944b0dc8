"""tools/benchmark.py, the one benchmark entry point: its subcommands keep the flags
(names and defaults) and the figures of the five scripts they replace, whose old
names still run; and the clock its figures are timed with."""
import itertools
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from conftest import ROOT
from tiny_model import tiny_yaml

sys.path.insert(0, os.path.join(ROOT, 'tools'))
import benchmark  # noqa: E402
from benchmarks import SUBCOMMANDS  # noqa: E402
from benchmarks.common import SteadyState  # noqa: E402
from benchmarks.train_figures import short_epochs  # noqa: E402

TOOL = os.path.join(ROOT, 'tools', 'benchmark.py')
DEMO_CFG = os.path.join(ROOT, 'experiments', 'sample', 'hsrnet59_demo.yaml')
BENCH_DATA = os.path.join(ROOT, 'data', 'bench640')

# The flags of the five scripts before they became subcommands, with their defaults
# (`required`: a value is given on the command line below).
OLD_FLAGS = {
    'train': {'data': BENCH_DATA, 'train_images': 160, 'val_images': 16, 'workers': [1, 2],
              'batch': 16, 'samples': 192, 'iters': 4, 'cache_mb': 0,
              'paths': ['items', 'crops', 'crops+'], 'dtypes': ['float32', 'bfloat16'],
              'profile': 0, 'skip_model': False, 'skip_valid': False, 'json': False,
              'opts': []},
    'data': {'root': '', 'samples': 1000, 'workers': None, 'batch_size': None,
             'cache_mb': None, 'opts': []},
    'model': {'batch': 16, 'iters': 5, 'data_root': 'data/sample', 'skip_valid': False,
              'opts': []},
    'valid': {'batch': 16, 'data_root': 'data/sample', 'opts': []},
    'infer': {'cfg': DEMO_CFG, 'rounds': 2, 'seconds': 3.0, 'flip_test': False,
              'threads': None},
    'compare': {'baseline': 'required', 'data': BENCH_DATA, 'workers': [1, 2], 'rounds': 4,
                'samples': 960, 'plain': False,
                'cfg': 'experiments/coco/hsrnet59/256x192_d256x3_adam_lr1e-3.yaml'},
}


def run_tool(*args, tool=TOOL, timeout=300):
    return subprocess.run([sys.executable, tool] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize('name', SUBCOMMANDS)
def test_each_subcommand_has_its_help_and_the_old_flags_and_defaults(name, capsys):
    with pytest.raises(SystemExit) as done:
        benchmark.main([name, '--help'])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith('usage: benchmark.py {} '.format(name))
    given = {'baseline': 'required'} if name == 'compare' else {}
    words = [name] + (['--cfg', DEMO_CFG] if 'cfg' not in OLD_FLAGS[name] else []) + \
        [w for key, value in given.items() for w in ('--' + key, value)]
    args = vars(benchmark.build_parser().parse_args(words))
    assert {key: args[key] for key in OLD_FLAGS[name]} == OLD_FLAGS[name]


def test_the_entry_point_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as done:
        benchmark.main(['-h'])
    out = capsys.readouterr().out
    assert done.value.code == 0 and all('\n    {} '.format(name) in out for name in SUBCOMMANDS)
    with pytest.raises(SystemExit) as done:
        benchmark.main([])
    assert done.value.code == 2 and 'required: SUBCOMMAND' in capsys.readouterr().err


def test_an_old_script_name_still_runs_its_subcommand(sample):
    done = run_tool('--cfg', DEMO_CFG, '--root', sample, '--samples', '4', '--workers', '0',
                    '--batch-size', '2', 'MODEL.IMAGE_SIZE', '[48, 64]',
                    'MODEL.EXTRA.HEATMAP_SIZE', '[12, 16]',
                    tool=os.path.join(ROOT, 'tools', 'benchmark_data.py'))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.splitlines()[0] == \
        'note: tools/benchmark_data.py is now `tools/benchmark.py data`; running that'
    lines = done.stdout.splitlines()
    assert [line[:30] for line in lines] == ['train shuffled                ',
                                             'train image-grouped           ',
                                             'valid in order, detector boxes']
    assert all('samples/s' in line and 'decodes/sample' in line for line in lines)


def test_benchmark_without_a_subcommand_prints_every_network_and_valid_figure(sample,
                                                                              tmp_path):
    """What tools/benchmark.py printed before it had subcommands (now `model`)."""
    done = run_tool('--cfg', tiny_yaml(tmp_path / 'tiny.yaml'), '--batch', '1', '--iters', '1',
                    '--data-root', sample, 'OUTPUT_DIR', tmp_path / 'out')
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'is now `tools/benchmark.py model`' in done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith('benchmark: pose_hsrnet_59 64x48, batch 1, ')
    labels = ['float32'] + (['float16 autocast'] if torch.cuda.is_available() else []) + \
        ['bfloat16 autocast']
    assert [line.rsplit(None, 2)[0] for line in lines[1:-1]] == [
        '{}  {}'.format(what, label) for label in labels
        for what in ('inference ', 'train step')]
    assert all(line.endswith(' img/s') for line in lines[1:-1])
    assert lines[-1].startswith('valid.py    flip test, ') and lines[-1].endswith(' persons/s')


def test_infer_subcommand_times_torch_against_onnxruntime(tmp_path):
    pytest.importorskip('onnxruntime')
    done = run_tool('infer', '--cfg', tiny_yaml(tmp_path / 'tiny.yaml'), '--rounds', '1',
                    '--seconds', '0.2')
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith('infer.py on the synthetic video: 2 frames, 6 persons')
    assert lines[1].split()[:2] == ['torch', 'fp32'] and 'persons/s' in lines[1]
    assert lines[2].split()[0] == 'onnxruntime' and 'persons/s' in lines[2]
    assert lines[3].startswith('  onnxruntime / torch: ') and lines[3].endswith('x')


def test_compare_times_a_checkout_against_this_tree(sample):
    done = run_tool('compare', '--baseline', ROOT, '--data', sample, '--workers', '0',
                    '--rounds', '1', '--samples', '32')
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'workers 0 round 1: baseline' in done.stdout and 'medians' in done.stdout
    missing = run_tool('compare', '--baseline', sample, timeout=60)
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        'error: {} is not a checkout of this project (no lib/)'.format(sample)]
    typo = run_tool('compare', '--baseline', ROOT, '--workers', '1,two', timeout=60)
    assert typo.returncode == 2 and "argument --workers: invalid worker_counts value: '1,two'" \
        in typo.stderr and 'Traceback' not in typo.stderr


def test_train_prints_every_figure_as_json(tmp_path):
    """`benchmark.py train` end to end on a tiny generated set, a tiny input and one
    step per figure: every part is timed (the model step profiled too) and lands in
    the json line."""
    done = run_tool('train', '--cfg', DEMO_CFG, '--data', tmp_path / 'bench',
                    '--train-images', '6', '--val-images', '2', '--workers', '0', '--batch', '2',
                    '--samples', '4', '--iters', '1', '--dtypes', 'float32', '--profile', '3',
                    '--json', 'MODEL.IMAGE_SIZE', '[48, 64]', 'MODEL.EXTRA.HEATMAP_SIZE',
                    '[12, 16]', 'OUTPUT_DIR', tmp_path / 'out')
    assert done.returncode == 0, done.stderr[-2000:]
    line = [l for l in done.stdout.splitlines() if l.startswith('json: ')]
    assert len(line) == 1, done.stdout
    result = json.loads(line[0][len('json: '):])
    assert set(result['data']) == {'items w0', 'crops w0', 'crops+ w0'}
    # the fast path sends uint8 crops: several times fewer bytes than float items
    assert result['bytes_per_sample']['items'] > 4 * result['bytes_per_sample']['crops']
    assert set(result['device_ms_per_batch']) == {'crops', 'crops+'}
    assert list(result['model_step']) == ['float32'] and result['model_step']['float32'] > 0
    assert result['end_to_end']['float32']['rate'] > 0
    assert 0 < result['end_to_end']['float32']['rate_with_refill'] \
        <= result['end_to_end']['float32']['rate']
    assert result['end_to_end']['float32 items']['rate'] > 0
    assert result['valid_flip_persons_per_s'] > 0 and result['compile'] is False
    assert result['profile_ms_per_step']['float32']['wall'] > 0
    assert 'profile float32:' in done.stdout and 'convolution' in done.stdout
    assert result['profile_ms_per_step']['float32']['device_busy'] is None   # no GPU
    printed = [l.split()[0] for l in done.stdout.splitlines()[1:] if l[:1].isalpha()]
    for figure in ('data', 'model', 'profile', 'e2e', 'valid', 'json:'):
        assert figure in printed, done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU-only refusal')
def test_train_refuses_cuda_graphs_without_a_gpu_in_one_line(tmp_path):
    done = run_tool('train', '--cfg', DEMO_CFG, '--data', tmp_path / 'bench',
                    'SPEED.CUDA_GRAPHS', 'true', timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        'error: SPEED.CUDA_GRAPHS needs a CUDA GPU; this machine has none (add '
        'SPEED.CUDA_GRAPHS false)']
    assert not (tmp_path / 'bench').exists()   # refused before generating anything


@pytest.mark.parametrize('flag, value', [('--workers', '1,two'), ('--dtypes', 'bf16'),
                                         ('--paths', 'crops,fast')])
def test_train_refuses_a_bad_list_in_one_line(flag, value):
    done = run_tool('train', '--cfg', DEMO_CFG, flag, value, timeout=120)
    assert done.returncode == 2 and 'Traceback' not in done.stderr
    assert 'argument {}:'.format(flag) in done.stderr and value in done.stderr


def test_steady_state_times_each_epochs_refill_apart():
    """The clock of the train figures, on a fake clock: epochs of 3 batches (of 2
    samples) whose first batch takes 100 s to arrive (the refill), the others 1 s;
    the caller spends 10 s per batch. 2 untimed batches, then 5 timed ones: the last
    of epoch 0, all of epoch 1, the first of epoch 2."""
    now = [0.0]

    def epochs():
        for epoch in itertools.count():
            def batches(epoch=epoch):
                for i in range(3):
                    now[0] += 100 if i == 0 else 1
                    yield (['sample'] * 2, (epoch, i))
            yield batches()

    clock = SteadyState(torch.device('cpu'), clock=lambda: now[0])
    seen = []
    for batch in clock.batches(epochs(), 2, 5):
        now[0] += 10
        seen.append(batch[1])
    assert seen == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0)]
    # timed: 5 batches of 10 s each, the fetches of (0, 2) and (1, 1), (1, 2) at 1 s,
    # and the 100 s waits for (1, 0) and (2, 0), which `rate` leaves out
    assert clock.seconds == 5 * 10 + 3 * 1 + 2 * 100 and clock.refill_seconds == 200
    assert clock.samples == 10
    assert clock.rate == 10 / 53 and clock.rate_with_refill == 10 / 253


def test_steady_state_counts_the_first_epochs_wait_when_nothing_is_skipped():
    now = [0.0]

    def epoch():
        now[0] += 50
        yield (['sample'] * 4, 0)

    clock = SteadyState(torch.device('cpu'), clock=lambda: now[0])
    assert len(list(clock.batches(iter([epoch()]), 0, 1))) == 1
    assert clock.seconds == 50 and clock.refill_seconds == 50 and clock.samples == 4


def test_train_says_when_epochs_are_too_short_for_the_end_to_end_figure(capsys):
    """945 persons on 400 images in batches of 32: 30 batches an epoch, two rounds of
    15 workers; 4 rounds need 4 * 15 * 32 persons, 813 images at 2.36 a picture."""
    args = SimpleNamespace(train_images=400, batch=32)
    short_epochs(30, 945, 15, args)
    assert '--train-images 813 or more' in capsys.readouterr().out
    short_epochs(60, 945, 15, args)
    short_epochs(30, 945, 7, args)
    assert capsys.readouterr().out == ''
