"""Broken inputs and faults (issues 10 and 21): each is one line naming the file or
key, a non-zero exit status where the run cannot go on, and nothing lost or silently
changed. docs/robustness.md lists what each gets; issue 21's cases are the
`test_<case>_...` tests of section 8.

In-process tests cover the loaders, checks and writers; a few real runs of
train.py / valid.py on a tiny generated sample (HSRNet-59 at 64x48, 13 training
persons, batches of 3: 5 steps per epoch) cover signals, kill -9, locks and
full disks end to end.

Already covered elsewhere and kept: malicious pickles and bad checkpoints
(test_checkpoint.py: test_code_in_a_checkpoint_is_refused_and_never_runs,
test_missing_and_non_checkpoint_files, ...), yaml errors (test_config.py,
test_train_valid.py::test_setup_errors_are_one_line_with_status_2), a corrupt
image and a NaN loss (test_train_valid.py). Here they are extended to train.py
(TRAIN.CHECKPOINT holding code) and to odd paths.
"""
import errno
import io
import json
import logging
import os
import pickle
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from conftest import ROOT, coco_config, load_tool
from test_train_valid import (DEMO_CFG, DETECTIONS, RESULTS, TIMEOUT, check_ok,
                              output_dir_of, run_script, tiny_opts)

TRAIN_PY = os.path.join(ROOT, 'pose_estimation', 'train.py')
STEPS = 5    # 13 training persons in batches of 3
SMALL = {'TRAIN.BATCH_SIZE': 3, 'TRAIN.END_EPOCH': 1}


def fault_args(sample, out_dir, cfg=DEMO_CFG, **extra):
    return ['--cfg', cfg] + [str(a) for a in tiny_opts(sample, out_dir, **dict(SMALL, **extra))]


def stderr_lines(result):
    return [line for line in result.stderr.strip().splitlines() if line.strip()]


def load(path):
    return torch.load(path, weights_only=True)


def same_weights(a, b):
    from hsrnet.utils.checkpoint import state_dict_from   # bare, or with the run's record
    a, b = state_dict_from(load(a)), state_dict_from(load(b))
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


class Training:
    """train.py running in the background (its own session, so that a signal to
    its process group reaches its workers too, as Ctrl-C in a terminal does)."""

    def __init__(self, args, env=None):
        self.proc = subprocess.Popen(
            [sys.executable, TRAIN_PY] + args, cwd=ROOT,
            env=dict(os.environ, PYTHONUNBUFFERED='1', **(env or {})),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.stdout = []

    def wait_for(self, text, timeout=TIMEOUT):
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.stdout.append(line)
            if text in line:
                return line
        self.proc.kill()
        out, err = self.proc.communicate()
        raise AssertionError('never printed {!r}:\n{}{}\n{}'.format(
            text, ''.join(self.stdout[-30:]), out[-2000:], err[-3000:]))

    def finish(self, timeout=TIMEOUT):
        out, err = self.proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode,
                                           ''.join(self.stdout) + out, err)


# ---------------------------------------------------------------- fixtures

# `sample` (conftest, one per session) is only read; tests that damage images copy it.

@pytest.fixture(scope='module')
def reference(sample, tmp_path_factory):
    """final_state.pth.tar of an uninterrupted one-epoch run (5 steps)."""
    out_dir = str(tmp_path_factory.mktemp('reference'))
    check_ok(run_script('train.py', fault_args(sample, out_dir)))
    return os.path.join(output_dir_of(out_dir), 'final_state.pth.tar')


def copy_sample(sample, tmp_path, name='sample'):
    root = tmp_path / name
    shutil.copytree(sample, root)
    return root


def val_image(root, n=1):
    folder = os.path.join(str(root), 'images', 'val2017')
    return os.path.join(folder, sorted(os.listdir(folder))[n])


def truncate(path, keep=0.3):
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * keep)])


def tiny_config(root, *opts):
    return coco_config(root, 'MODEL.IMAGE_SIZE', '[48, 64]', 'MODEL.EXTRA.HEATMAP_SIZE',
                       '[12, 16]', 'WORKERS', '0', 'DEBUG.DEBUG', 'false', *opts)


def edit_json(path, change):
    with open(path) as f:
        data = json.load(f)
    change(data)
    with open(path, 'w') as f:
        json.dump(data, f)


# ------------------------------------------------- 1. validated inputs

def test_bad_detection_boxes_are_skipped_with_one_warning(sample, tmp_path, caplog):
    from hsrnet import data as dataset
    root = copy_sample(sample, tmp_path)
    path = os.path.join(str(root), DETECTIONS)
    cfg = tiny_config(root, 'TEST.USE_GT_BBOX', 'false')
    total = len(dataset.build_dataset(cfg, 'val2017', False))

    def spoil(detections):
        detections[1]['bbox'][2] = float('nan')
        detections[3]['bbox'][3] = 0
        detections[4]['bbox'][2] = -20.0
        detections[5]['bbox'][0] = float('inf')
    edit_json(path, spoil)
    with caplog.at_level(logging.WARNING):
        ds = dataset.build_dataset(cfg, 'val2017', False)
    warnings = [r.getMessage() for r in caplog.records if 'detection entries' in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith('{}: skipped 4 detection entries with a non-finite or '
                                  'non-positive box or score (the first: entry 1,'.format(path))
    assert 'nan' in warnings[0]
    assert len(ds) == total - 4
    assert all(np.isfinite(r['center']).all() and (r['scale'] > 0).all() for r in ds.db)


def test_annotation_boxes_of_zero_or_negative_size_are_skipped_and_counted(sample, tmp_path,
                                                                           caplog):
    from hsrnet import data as dataset
    root = copy_sample(sample, tmp_path)
    path = os.path.join(str(root), 'annotations', 'person_keypoints_val2017.json')
    before = len(dataset.build_dataset(tiny_config(root), 'val2017', False))
    bad_ids = []

    def spoil(data):
        persons = [a for a in data['annotations'] if a['num_keypoints'] > 0]
        persons[0]['bbox'][2] = 0            # zero width: a NaN crop before
        persons[2]['bbox'][3] = -40          # negative height: reshaped before
        bad_ids.extend([persons[0]['id'], persons[2]['id']])
    edit_json(path, spoil)
    with caplog.at_level(logging.WARNING):
        ds = dataset.build_dataset(tiny_config(root), 'val2017', False)
    warnings = [r.getMessage() for r in caplog.records if 'person annotations' in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith('{}: skipped 2 person annotations whose box has a width or '
                                  'height <= 0 or is not finite (the first: annotation id {} '
                                  'of image'.format(path, bad_ids[0]))
    assert len(ds) == before - 2
    assert all(np.isfinite(r['scale']).all() and (r['scale'] > 0).all() for r in ds.db)


def test_keypoints_of_the_wrong_length_name_file_and_annotation(sample, tmp_path):
    from hsrnet import data as dataset
    root = copy_sample(sample, tmp_path)
    path = os.path.join(str(root), 'annotations', 'person_keypoints_val2017.json')
    ids = []

    def spoil(data):
        ann = [a for a in data['annotations'] if a['num_keypoints'] > 0][1]
        ann['keypoints'] = ann['keypoints'][:-3]
        ids.extend([ann['id'], ann['image_id']])
    edit_json(path, spoil)
    with pytest.raises(dataset.DataError) as info:
        dataset.build_dataset(tiny_config(root), 'val2017', False)
    assert str(info.value) == (
        '{}: annotation {} has 48 keypoint values, expected 51 (3 per joint, MODEL.NUM_JOINTS '
        '17; image {})'.format(path, *ids))


class NaNModel(torch.nn.Module):
    """Heatmaps of the right shape, NaN for the second person of each batch."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        out = torch.rand(x.shape[0], 17, x.shape[2] // 4, x.shape[3] // 4) + self.weight
        out[1:2] = float('nan')
        return out


def test_non_finite_predictions_are_refused_before_anything_is_written(sample, tmp_path):
    from hsrnet import data as dataset
    from hsrnet.engine.loops import validate
    from hsrnet.utils.errors import NonFinitePredictionError
    from hsrnet.head.loss import JointsMSELoss
    from hsrnet.utils.distributed import DistContext
    from hsrnet.utils.fileio import write_json_atomically
    from hsrnet.data.loaders import build_val_loader
    cfg = tiny_config(sample, 'TEST.USE_GT_BBOX', 'false')
    ds = dataset.build_dataset(cfg, 'val2017', False)
    loader = build_val_loader(ds, 4, 0, DistContext(), False)
    out = str(tmp_path / 'out')
    torch.manual_seed(0)
    with pytest.raises(NonFinitePredictionError) as info:
        validate(cfg, loader, ds, NaNModel(), JointsMSELoss(True), out, out)
    nan_poses = sum(1 for start in range(0, len(ds), 4) if len(ds) - start >= 2)
    assert str(info.value) == ('{} of {} predicted poses are not finite (NaN or infinity), the '
                               'first of image {}; nothing was written or evaluated'.format(
                                   nan_poses, len(ds), ds.db[1]['image']))
    assert not os.path.exists(os.path.join(out, RESULTS))
    assert not os.path.exists(os.path.join(out, 'results', 'metrics_val2017.json'))
    # and whatever the path, the json writer never writes a non-finite number
    target = tmp_path / 'results.json'
    with pytest.raises(ValueError, match='{}: not written: Out of range float'.format(target)):
        write_json_atomically([{'keypoints': [1.0, float('nan')]}], str(target))
    assert not target.exists()


# ------------------------------------------------- 2. images checked as decoded

def test_truncated_jpeg_and_wrong_size_are_data_errors_naming_the_file(sample, tmp_path):
    from hsrnet import data as dataset
    root = copy_sample(sample, tmp_path)
    truncated, small = val_image(root, 0), val_image(root, 1)
    truncate(truncated)
    assert cv2.imread(truncated) is not None    # the decoder fills the rest with grey
    cv2.imwrite(small, np.zeros((1, 1, 3), np.uint8))
    ds = dataset.build_dataset(tiny_config(root), 'val2017', False)
    first = {}
    for i, rec in enumerate(ds.db):
        first.setdefault(rec['image'], i)
    with pytest.raises(dataset.DataError) as info:
        ds[first[truncated]]
    size = os.path.getsize(truncated)
    assert str(info.value) == ('truncated or corrupt image {}: no JPEG end marker ({} bytes; '
                               'the file was cut short?)'.format(truncated, size))
    with pytest.raises(dataset.DataError) as info:
        ds[first[small]]
    width, height = ds.db[first[small]]['image_size']
    assert str(info.value) == ('image {} is 1x1 pixels but its annotation says {}x{} (width x '
                               'height)'.format(small, width, height))


def test_truncated_image_stops_valid_py_in_one_line(sample, reference, tmp_path):
    root = copy_sample(sample, tmp_path)
    truncated = val_image(root, 2)
    truncate(truncated)
    result = run_script('valid.py', ['--cfg', DEMO_CFG, '--model-file', reference] +
                        fault_args(str(root), str(tmp_path / 'out'))[2:])
    assert result.returncode == 1
    assert stderr_lines(result) == [
        'error: truncated or corrupt image {}: no JPEG end marker ({} bytes; the file was cut '
        'short?)'.format(truncated, os.path.getsize(truncated))], result.stderr[-2000:]


def test_skip_bad_images_warns_and_counts_in_the_epoch_summary(sample, tmp_path):
    root = copy_sample(sample, tmp_path)
    train_folder = os.path.join(str(root), 'images', 'train2017')
    truncated = os.path.join(train_folder, sorted(os.listdir(train_folder))[0])
    truncate(truncated)
    small = val_image(root, 0)
    cv2.imwrite(small, np.zeros((1, 1, 3), np.uint8))
    out_dir = str(tmp_path / 'out')
    result = check_ok(run_script('train.py', fault_args(str(root), out_dir, **{
        'DATASET.SKIP_BAD_IMAGES': 'true'})))
    assert 'skipped (DATASET.SKIP_BAD_IMAGES): truncated or corrupt image {}'.format(
        truncated) in result.stdout
    assert 'skipped (DATASET.SKIP_BAD_IMAGES): image {} is 1x1 pixels'.format(small) \
        in result.stdout
    assert re.search(r' epoch 0: [1-9]\d* sample\(s\) of unreadable images skipped on this '
                     r'rank \(DATASET.SKIP_BAD_IMAGES', result.stdout), result.stdout[-3000:]
    assert re.search(r' validation: [1-9]\d* sample\(s\) of unreadable images skipped',
                     result.stdout)
    with open(os.path.join(output_dir_of(out_dir), RESULTS)) as f:
        results = json.load(f)
    image_id = int(os.path.splitext(os.path.basename(small))[0])
    assert results and image_id not in {r['image_id'] for r in results}


# ------------------------------------------------- 3. preemption-safe training

class _Items(Dataset):
    """Item i -> (i, numbers from python's, numpy's and torch's global RNGs)."""

    def __len__(self):
        return 11

    def __getitem__(self, i):
        import random
        return i, torch.tensor([random.random(), np.random.rand(), torch.rand(()).item()])


def _epoch(loader, epoch, start=0):
    loader.set_epoch(epoch, start)
    batches = list(loader)
    return torch.cat([b[0] for b in batches]).tolist(), torch.cat([b[1] for b in batches])


@pytest.mark.parametrize('workers', [0, 2])
def test_a_resumed_epoch_gets_the_same_samples_and_augmentation(workers):
    from hsrnet.utils.distributed import DistContext
    from hsrnet.data.loaders import EpochSeededLoader
    make = lambda w: EpochSeededLoader(_Items(), 3, w, True, 5, DistContext(), False)
    order, aug = _epoch(make(0), 2)
    assert sorted(order) == list(range(11))
    resumed = make(workers)          # another process, maybe with workers
    assert resumed.batches_per_epoch == 4
    order2, aug2 = _epoch(resumed, 2, start=2)
    assert order2 == order[6:] and torch.equal(aug2, aug[6:])
    assert len(resumed) == 2
    with pytest.raises(ValueError, match='cannot start epoch 2 at batch 5: it has 4 batches'):
        resumed.set_epoch(2, 5)


def test_a_second_signal_stops_at_once_in_one_line(capsys):
    """The first SIGTERM/SIGINT is a request (the step finishes, a checkpoint is
    saved); a second one stops at once, as does Ctrl-C during setup."""
    from hsrnet.runner.launch import run_job
    from hsrnet.utils.preemption import StopSignals, StoppedAtOnce
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.name == 'SIGTERM'
        with pytest.raises(StoppedAtOnce):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)     # the handler runs before this ends
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    class SignalledTwice:
        def __init__(self, args):
            pass

        def run(self):
            raise StoppedAtOnce(signal.SIGTERM)

    class CtrlCAtSetup:
        def __init__(self, args):
            raise KeyboardInterrupt

    class SigtermAtSetup:   # a cluster preempting the job while it loads its data
        def __init__(self, args):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)     # the handler runs before this ends

        def run(self):
            raise AssertionError('never reached')

    assert run_job(SignalledTwice, None) == 143
    assert run_job(CtrlCAtSetup, None) == 130
    assert run_job(SigtermAtSetup, None) == 143
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert capsys.readouterr().err.splitlines() == [
        'stopped: SIGTERM: interrupted at once; files written before are kept',
        'stopped: SIGINT: interrupted at once; files written before are kept',
        'stopped: SIGTERM: interrupted at once; files written before are kept']


def test_sigterm_saves_mid_epoch_and_the_resumed_run_equals_an_uninterrupted_one(
        sample, reference, tmp_path):
    out_dir = str(tmp_path / 'out')
    first = Training(fault_args(sample, out_dir))
    first.wait_for('Epoch [0] [2/{}]'.format(STEPS))
    first.proc.send_signal(signal.SIGSTOP)     # hold it there while a second run starts
    try:
        second = run_script('train.py', fault_args(sample, out_dir))
    finally:
        first.proc.send_signal(signal.SIGTERM)
        first.proc.send_signal(signal.SIGCONT)
    result = first.finish()
    assert second.returncode == 2
    folder = output_dir_of(out_dir)
    assert stderr_lines(second) == [
        'error: output folder {} is in use by process {} (train on {}) (lock file {}); wait '
        'for that run to end, stop it, or choose another OUTPUT_DIR'.format(
            folder, first.proc.pid, os.uname().nodename, os.path.join(folder, '.run.lock'))]

    assert result.returncode == 143, result.stdout[-2000:] + result.stderr[-2000:]
    checkpoint = os.path.join(folder, 'checkpoint.pth.tar')
    state = load(checkpoint)
    assert state['epoch'] == 0 and 2 <= state['batch'] < STEPS
    lines = stderr_lines(result)
    assert lines == ['stopped: SIGTERM: training stopped at epoch 0, batch {} of {}; checkpoint '
                     'saved to {}; resume with: {} {} {} TRAIN.RESUME true'.format(
                         state['batch'], STEPS, checkpoint,
                         os.path.basename(sys.executable), TRAIN_PY,
                         shlex.join(fault_args(sample, out_dir)))], result.stderr
    assert not os.path.exists(os.path.join(folder, 'final_state.pth.tar'))

    resumed = check_ok(run_script('train.py', fault_args(sample, out_dir, **{
        'TRAIN.RESUME': 'true'})))
    assert 'epoch 0 from batch {}'.format(state['batch']) in resumed.stdout
    assert 'Epoch [0] [{}/{}]'.format(state['batch'] + 1, STEPS) in resumed.stdout
    assert 'Epoch [0] [{}/{}]'.format(state['batch'], STEPS) not in resumed.stdout
    same_weights(reference, os.path.join(folder, 'final_state.pth.tar'))


def test_ctrl_c_with_workers_saves_and_exits_130_in_one_line(sample, tmp_path):
    out_dir = str(tmp_path / 'out')
    run = Training(fault_args(sample, out_dir, WORKERS=1))
    run.wait_for('Epoch [0] [2/{}]'.format(STEPS))
    os.killpg(run.proc.pid, signal.SIGINT)    # the terminal's Ctrl-C: the whole group
    result = run.finish()
    assert result.returncode == 130, result.stderr[-3000:]
    lines = stderr_lines(result)
    assert len(lines) == 1 and lines[0].startswith(
        'stopped: SIGINT: training stopped at epoch 0, batch '), result.stderr
    assert lines[0].endswith(' TRAIN.RESUME true') and 'Traceback' not in result.stderr
    state = load(os.path.join(output_dir_of(out_dir), 'checkpoint.pth.tar'))
    assert state['epoch'] == 0 and state['batch'] >= 2


def test_kill_9_then_auto_resume_from_the_yaml_equals_an_uninterrupted_run(
        sample, reference, tmp_path):
    """TRAIN.SAVE_EVERY 2 saves mid-epoch; after kill -9 (which leaves the lock file
    naming a dead process, and here a temporary file of a save it interrupted),
    a yaml with TRAIN.RESUME true picks the checkpoint up."""
    auto_cfg = auto_resume_yaml(tmp_path)
    out_dir = str(tmp_path / 'out')
    folder = output_dir_of(out_dir)
    run = Training(fault_args(sample, out_dir, cfg=auto_cfg, **{'TRAIN.SAVE_EVERY': 2}))
    run.wait_for('Epoch [0] [3/{}]'.format(STEPS))     # after the save at batch 2
    run.proc.kill()
    run.finish()
    assert run.proc.returncode == -signal.SIGKILL
    batch = load(os.path.join(folder, 'checkpoint.pth.tar'))['batch']
    assert batch in (2, 4)       # 4 only if the run got ahead of this test
    stale = os.path.join(folder, '.checkpoint.pth.tar.0123abcd.tmp')
    with open(stale, 'wb') as f:
        f.write(b'PK\x03\x04 half a checkpoint')

    resumed = check_ok(run_script('train.py', fault_args(sample, out_dir, cfg=auto_cfg)))
    assert 'taking over the lock of process {} (train on {}), which is no longer running'.format(
        run.proc.pid, os.uname().nodename) in resumed.stdout
    assert re.search(r'removed \d temporary file\(s\) left by an interrupted save: .*'
                     + re.escape(stale), resumed.stdout)
    assert not os.path.exists(stale)
    assert 'resumed from {} at epoch 0, batch {}'.format(
        os.path.join(folder, 'checkpoint.pth.tar'), batch) in resumed.stdout
    same_weights(reference, os.path.join(folder, 'final_state.pth.tar'))
    with open(os.path.join(folder, '.run.lock')) as f:
        assert f.read() == ''      # a run that ended normally leaves no owner


def auto_resume_yaml(tmp_path):
    """The demo yaml with TRAIN.RESUME true, as a job script that restarts itself
    uses it (same stem: same output folder)."""
    yaml_dir = tmp_path / 'cfg'
    yaml_dir.mkdir()
    auto_cfg = yaml_dir / os.path.basename(DEMO_CFG)
    auto_cfg.write_text('_BASE_: {}\nTRAIN:\n  RESUME: true\n'.format(DEMO_CFG))
    return str(auto_cfg)


def test_mid_epoch_checkpoint_needs_the_same_batch_size(sample, reference, tmp_path):
    """Resuming mid-epoch with another batch size would skip other samples."""
    state = load(os.path.join(os.path.dirname(reference), 'checkpoint.pth.tar'))
    state.update(epoch=0, batch=2, batch_size=4)
    out_dir = str(tmp_path / 'out')
    folder = output_dir_of(out_dir)
    os.makedirs(folder)
    torch.save(state, os.path.join(folder, 'checkpoint.pth.tar'))
    result = run_script('train.py', fault_args(sample, out_dir, **{'TRAIN.RESUME': 'true'}))
    assert result.returncode == 2
    assert stderr_lines(result) == [
        'error: TRAIN.RESUME: the checkpoint stopped in the middle of epoch 0 (batch 2) with '
        'TRAIN.BATCH_SIZE x GPUs = 4, this run has 3; resume with the same setting'], \
        result.stderr[-2000:]


# ------------------------------------------------- 4. disk faults

class FullDisk(io.FileIO):
    """A file on a disk that fills up after `room` bytes."""

    room = 1000

    def write(self, data):
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def full_disk_open(path, mode='r', *args, **kwargs):
    return FullDisk(path, mode.replace('b', ''))


def test_failed_checkpoint_write_is_one_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    from hsrnet.utils import fileio
    from hsrnet.utils.checkpoint import save_atomic
    path = str(tmp_path / 'checkpoint.pth.tar')
    save_atomic({'w': torch.zeros(3)}, path)
    with open(path, 'rb') as f:
        before = f.read()
    monkeypatch.setattr(fileio, 'open', full_disk_open, raising=False)
    with pytest.raises(fileio.WriteError) as info:
        save_atomic({'w': torch.ones(10000)}, path)
    assert str(info.value) == 'cannot write {}: No space left on device (ENOSPC)'.format(path)
    assert info.value.errno == errno.ENOSPC
    with pytest.raises(fileio.WriteError, match='results.json: No space left on device'):
        fileio.write_json_atomically(list(range(1000)), str(tmp_path / 'results.json'))
    with open(path, 'rb') as f:
        assert f.read() == before
    assert sorted(os.listdir(tmp_path)) == ['checkpoint.pth.tar']


FULL_DISK_WRAPPER = '''
import errno, io, os, runpy, sys
sys.path[:0] = [{lib!r}, os.path.dirname({script!r})]
from hsrnet.utils import fileio

class FullDisk(io.FileIO):
    def write(self, data):
        if self.tell() + len(data) > 100000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)

opened = [0]
def open_on_a_filling_disk(path, mode='r', *args, **kwargs):
    if '.checkpoint.pth.tar.' in path:
        opened[0] += 1
        if opened[0] >= 2:
            return FullDisk(path, mode.replace('b', ''))
    return open(path, mode, *args, **kwargs)

fileio.open = open_on_a_filling_disk
sys.argv = [{script!r}] + sys.argv[1:]
runpy.run_path({script!r}, run_name='__main__')
'''


def test_full_disk_at_save_is_one_line_in_console_and_log(sample, tmp_path):
    wrapper = tmp_path / 'full_disk_train.py'
    wrapper.write_text(FULL_DISK_WRAPPER.format(lib=os.path.join(ROOT, 'lib'), script=TRAIN_PY))
    out_dir = str(tmp_path / 'out')
    folder = output_dir_of(out_dir)
    result = subprocess.run([sys.executable, str(wrapper)] + fault_args(
        sample, out_dir, **{'TRAIN.SAVE_EVERY': 2}), cwd=ROOT, capture_output=True, text=True,
        timeout=TIMEOUT)
    checkpoint = os.path.join(folder, 'checkpoint.pth.tar')
    message = 'cannot write {}: No space left on device (ENOSPC)'.format(checkpoint)
    assert result.returncode == 1, result.stderr[-3000:]
    assert stderr_lines(result) == ['error: ' + message], result.stderr[-3000:]
    log_file = [n for n in os.listdir(folder) if n.endswith('_train.log')][0]
    with open(os.path.join(folder, log_file)) as f:
        assert 'stopped: ' + message in f.read()
    assert load(checkpoint)['batch'] == 2          # the previous checkpoint, intact
    assert not [n for n in os.listdir(folder) if n.endswith('.tmp')]


def test_failed_log_and_tensorboard_writes_are_one_line_each(tmp_path, capsys, caplog):
    from hsrnet.utils.fileio import ReportingFileHandler
    from hsrnet.utils.tensorboard import TensorBoardWriter
    log_file = str(tmp_path / 'run.log')
    handler = ReportingFileHandler(log_file)
    log = logging.getLogger('test_faults.log')
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning('first line')
        handler.stream = FullDisk(log_file, 'a')
        handler.stream.room = 0
        log.warning('second line')
        log.warning('third line')
    finally:
        log.removeHandler(handler)
        handler.close()
    err = capsys.readouterr().err
    assert err.splitlines() == ['warning: cannot write log file {}: No space left on device '
                                '(ENOSPC); logging to the console only'.format(log_file)], err
    with open(log_file) as f:
        assert f.read().splitlines()[0].endswith('first line')

    writer = TensorBoardWriter(str(tmp_path / 'tb'))
    writer.add_scalar('train_loss', 0.5, 1)
    events = next(iter(writer._files.values()))
    events._py_recordio_writer._writer = FullDisk(events._file_name, 'a')
    events._py_recordio_writer._writer.room = 0
    with caplog.at_level(logging.WARNING):
        writer.add_scalar('train_loss', 0.4, 2)
        writer.add_scalars('valid', {'AP': 0.1}, 2)
    writer.close()
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ['cannot write TensorBoard file {}: No space left on device (ENOSPC); '
                        'TensorBoard logging stopped, training goes on'.format(events._file_name)]


# ------------------------------------------------- 5. one run per output folder

HOLD_LOCK = '''
import sys, time
sys.path.insert(0, {lib!r})
from hsrnet.utils import runlock
runlock.acquire({folder!r}, 'train')
print('locked', flush=True)
time.sleep(60)
'''


def test_run_lock_names_the_holder_and_takes_over_a_stale_one(tmp_path, caplog):
    from hsrnet.utils import runlock
    folder = str(tmp_path)
    holder = subprocess.Popen([sys.executable, '-c', HOLD_LOCK.format(
        lib=os.path.join(ROOT, 'lib'), folder=folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        with pytest.raises(runlock.RunLockError) as info:
            runlock.acquire(folder, 'valid')
        assert str(info.value) == (
            'output folder {} is in use by process {} (train on {}) (lock file {}); wait for '
            'that run to end, stop it, or choose another OUTPUT_DIR'.format(
                folder, holder.pid, os.uname().nodename, os.path.join(folder, '.run.lock')))
    finally:
        holder.kill()
        holder.wait()
    with caplog.at_level(logging.WARNING):
        runlock.acquire(folder, 'valid')
    try:
        assert [r.getMessage() for r in caplog.records] == [
            'output folder {}: taking over the lock of process {} (train on {}), which is no '
            'longer running (it stopped without cleaning up)'.format(
                folder, holder.pid, os.uname().nodename)]
        with open(os.path.join(folder, '.run.lock')) as f:
            assert f.read().startswith('pid={} phase=valid'.format(os.getpid()))
    finally:
        runlock.release(folder)


# ------------------------------------------------- 6. config consistency at setup

def test_image_size_must_be_four_times_the_heatmap_size():
    from hsrnet.config import ConfigError, check_config, get_default_config
    cfg = get_default_config()
    cfg.MODEL.IMAGE_SIZE = [192, 256]
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    assert str(info.value) == (
        'MODEL.IMAGE_SIZE [192, 256] must be 4 x MODEL.EXTRA.HEATMAP_SIZE [64, 64] (the '
        'networks output heatmaps at 1/4 of the input size); for IMAGE_SIZE [192, 256] set '
        'MODEL.EXTRA.HEATMAP_SIZE [48, 64]')


@pytest.mark.parametrize('key', ['TRAIN.BATCH_SIZE', 'TEST.BATCH_SIZE'])
def test_a_bad_batch_size_names_its_key(key):
    from hsrnet.config import ConfigError, check_config, get_default_config
    cfg = get_default_config()
    group, leaf = key.split('.')
    cfg[group][leaf] = 0
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    assert str(info.value) == '{} must be >= 1, got 0'.format(key)   # defaults.RANGES


def test_the_size_the_model_actually_outputs_is_checked():
    from hsrnet import models
    from hsrnet.config import ConfigError, get_default_config, update_config_from_list
    from hsrnet.engine.preflight import check_model_output
    cfg = get_default_config()
    update_config_from_list(['MODEL.IMAGE_SIZE', '[32, 64]', 'MODEL.EXTRA.HEATMAP_SIZE',
                             '[8, 16]', 'MODEL.INIT_WEIGHTS', 'false',
                             'MODEL.EXTRA.NUM_DECONV_LAYERS', '2',
                             'MODEL.EXTRA.NUM_DECONV_FILTERS', '[32, 32]',
                             'MODEL.EXTRA.NUM_DECONV_KERNELS', '[4, 4]'], cfg)
    model = models.build_model(cfg, is_train=False)    # stride 32 / 2 deconvs = 8
    with pytest.raises(ConfigError) as info:
        check_model_output(cfg, model, 'cpu')
    assert str(info.value) == (
        'the model (pose_resnet at MODEL.IMAGE_SIZE [32, 64]) outputs 16 heatmaps of 4x8 (width '
        'x height) but MODEL.NUM_JOINTS is 16 and MODEL.EXTRA.HEATMAP_SIZE is [8, 16]')


def test_inconsistent_sizes_stop_train_py_at_setup_in_one_line(sample, tmp_path):
    result = run_script('train.py', fault_args(sample, str(tmp_path / 'out'), **{
        'MODEL.EXTRA.HEATMAP_SIZE': '[12, 12]'}))
    assert result.returncode == 2
    assert stderr_lines(result) == [
        'error: MODEL.IMAGE_SIZE [48, 64] must be 4 x MODEL.EXTRA.HEATMAP_SIZE [12, 12] (the '
        'networks output heatmaps at 1/4 of the input size); for IMAGE_SIZE [48, 64] set '
        'MODEL.EXTRA.HEATMAP_SIZE [12, 16]']


# ------------------------------------------------- 7. what already held, kept

class RunsCode:
    def __reduce__(self):
        return (os.system, ('touch ' + os.environ.get('FAULTS_PWNED', '/nonexistent/x'),))


def test_train_py_refuses_a_checkpoint_holding_code(sample, tmp_path):
    marker = tmp_path / 'pwned'
    bad = tmp_path / 'resume.pth.tar'
    with open(bad, 'wb') as f:
        os.environ['FAULTS_PWNED'] = str(marker)
        try:
            pickle.dump({'epoch': 1, 'state_dict': RunsCode()}, f, protocol=2)
        finally:
            del os.environ['FAULTS_PWNED']
    result = run_script('train.py', fault_args(sample, str(tmp_path / 'out'), **{
        'TRAIN.RESUME': 'true', 'TRAIN.CHECKPOINT': str(bad)}))
    assert result.returncode == 2
    lines = stderr_lines(result)
    assert len(lines) == 1 and lines[0].startswith('error: {}: refused: not a plain weights '
                                                   'file'.format(bad)), result.stderr[-2000:]
    assert not marker.exists()


def test_paths_with_spaces_and_non_ascii_characters(sample, reference, tmp_path):
    root = copy_sample(sample, tmp_path, 'données d’essai')
    out_dir = str(tmp_path / 'sortie été' / 'out dir')
    model_file = str(tmp_path / 'modèle final.pth.tar')
    shutil.copy(reference, model_file)
    cfg_file = str(tmp_path / 'réglages de test' / os.path.basename(DEMO_CFG))
    os.makedirs(os.path.dirname(cfg_file))
    with open(cfg_file, 'w') as f:   # its _BASE_ named from where the demo yaml is
        f.write('_BASE_: {}\n'.format(os.path.abspath(DEMO_CFG)))
    check_ok(run_script('valid.py', ['--cfg', cfg_file, '--model-file', model_file] +
                        fault_args(str(root), out_dir)[2:]))
    with open(os.path.join(output_dir_of(out_dir), RESULTS)) as f:
        assert json.load(f)


def _wait_ignoring_stop_signals():
    from hsrnet.utils.preemption import ignore_stop_signals
    ignore_stop_signals()
    time.sleep(60)


def test_run_job_ends_its_own_leftover_workers_only():
    """A worker left waiting after an error (it ignores SIGTERM, as DataLoader
    workers do) is killed when the run ends; the caller's own children are not."""
    import multiprocessing
    from hsrnet.runner.launch import run_job
    from hsrnet.utils.errors import DataError
    fork = multiprocessing.get_context('fork')
    callers = fork.Process(target=time.sleep, args=(60,), daemon=True)
    callers.start()
    started = []

    class LeavesAWorker:
        def __init__(self, args):
            pass

        def run(self):
            worker = fork.Process(target=_wait_ignoring_stop_signals, daemon=True)
            worker.start()
            started.append(worker)
            raise DataError('cannot decode image x.jpg')

    try:
        assert run_job(LeavesAWorker, None) == 1
        assert not started[0].is_alive() and started[0].exitcode == -signal.SIGKILL
        assert callers.is_alive()
    finally:
        callers.kill()
        callers.join()


# ------------------------------------------------- 8. round two (issue 21)
# One test per case of the issue; the cases already done on the config side are
# tested in test_config.py: 1 (END_EPOCH <= BEGIN_EPOCH) test_end_epoch_must_be_above_
# begin_epoch, 5 and 12 (value ranges) test_value_ranges, 22 (a flag wins over opts)
# test_load_config_freezes_and_an_explicit_flag_wins_over_opts, and here end to end.

RUN_TIMEOUT = 3 * TIMEOUT      # whole training runs, on a loaded machine


def folder_snapshot(folder):
    """{relative path: (bytes, mtime)} of every file under `folder`."""
    files = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, 'rb') as f:
                files[os.path.relpath(path, folder)] = (f.read(), os.stat(path).st_mtime_ns)
    return files


def test_1_a_finished_training_is_never_overwritten(sample, reference, tmp_path):
    """END_EPOCH <= BEGIN_EPOCH is a setup error; a resumed run whose checkpoint
    already holds every epoch (auto-resume from the yaml) says so, exits 0 and
    writes nothing, not even a log."""
    out_dir = str(tmp_path / 'out')
    folder = output_dir_of(out_dir)
    shutil.copytree(os.path.dirname(reference), folder)
    before = folder_snapshot(folder)
    result = run_script('train.py', fault_args(sample, out_dir, **{'TRAIN.END_EPOCH': 0}))
    assert result.returncode == 2
    assert stderr_lines(result) == ['error: TRAIN.END_EPOCH must be >= 1, got 0']
    result = run_script('train.py', fault_args(sample, out_dir, cfg=auto_resume_yaml(tmp_path)))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines() == [
        'training is already finished: {} has 1 epoch trained (TRAIN.END_EPOCH 1) and {} is '
        'written; nothing to do, nothing written'.format(
            os.path.join(folder, 'checkpoint.pth.tar'), os.path.join(folder, 'final_state.pth.tar'))]
    assert folder_snapshot(folder) == before
    assert os.listdir(out_dir) == ['coco']          # no TensorBoard folder either


def test_2_infer_never_writes_over_its_inputs(sample, tiny_checkpoint, tmp_path):
    folder = tmp_path / 'pictures'
    folder.mkdir()
    shutil.copy(val_image(sample, 0), folder / 'a.jpg')
    shutil.copy(val_image(sample, 1), folder / 'a_pose.jpg')
    before = folder_snapshot(str(folder))
    status, err = run_infer(*infer_args(tiny_checkpoint, folder, folder), '--whole-image')
    assert status == 2
    assert err.splitlines() == [
        'error: --out {0}: a_pose.jpg (the drawing of a.jpg) would replace the input '
        '{0}/a_pose.jpg; choose another output folder'.format(folder)]
    assert folder_snapshot(str(folder)) == before


def test_3_nan_weights_and_outputs_are_refused_in_one_line(sample, tiny_checkpoint, tmp_path,
                                                           monkeypatch, capsys):
    """NaN weights: refused by infer.py and tools/export_onnx.py (as by valid.py);
    a network that outputs NaN: infer.py writes nothing; no json holds NaN."""
    from hsrnet.apps.estimator import PoseEstimator
    from hsrnet.apps.media import StagedOutput
    state = load(tiny_checkpoint)
    key = next(k for k, v in state['state_dict'].items() if v.is_floating_point())
    state['state_dict'][key][0] = float('nan')
    nan_file = str(tmp_path / 'nan.pth.tar')
    torch.save(state, nan_file)
    refusal = 'error: {}: refused: tensors holding NaN or infinity (1): {} (the training that ' \
              'saved it had diverged?)'.format(nan_file, key)
    image = val_image(sample, 0)
    status, err = run_infer(*infer_args(nan_file, image, tmp_path / 'out'), '--whole-image')
    assert (status, err.splitlines()) == (2, [refusal])
    assert not os.path.exists(tmp_path / 'out')
    export_onnx = load_tool('export_onnx')
    onnx_file = tmp_path / 'nan.onnx'
    tiny = tiny_yaml(tmp_path / 'tiny.yaml')
    assert export_onnx.main(['--cfg', tiny, '--model-file', nan_file, '--out',
                             str(onnx_file)]) == 2
    assert capsys.readouterr().err.splitlines() == [refusal]
    assert not onnx_file.exists()

    monkeypatch.setattr(PoseEstimator, 'heatmaps', lambda self, inputs: np.full(
        (len(inputs), 17, 16, 12), np.nan, np.float32))
    status, err = run_infer(*infer_args(tiny_checkpoint, image, tmp_path / 'out'),
                            '--whole-image')
    assert (status, err.splitlines()) == (1, [
        'error: {}: the network gives non-finite heatmaps (NaN or infinity) for 1 of 1 '
        'persons'.format(tiny_checkpoint)])
    assert os.listdir(tmp_path / 'out') == []
    staged = StagedOutput(str(tmp_path / 'json'))
    with pytest.raises(ValueError, match=r'keypoints.json: not written: Out of range float'):
        staged.write_json('keypoints.json', [{'keypoints': [1.0, float('nan')]}])
    staged.discard()


def test_4_pictures_sharing_a_stem_get_a_drawing_each(sample, tiny_checkpoint, tmp_path):
    folder = tmp_path / 'pictures'
    folder.mkdir()
    shutil.copy(val_image(sample, 0), folder / 'x.jpg')
    cv2.imwrite(str(folder / 'x.png'), cv2.imread(val_image(sample, 1)))
    out = tmp_path / 'out'
    status, err = run_infer(*infer_args(tiny_checkpoint, folder, out), '--whole-image')
    assert status == 0, err
    assert sorted(os.listdir(out)) == ['keypoints.json', 'x.jpg_pose.jpg', 'x.png_pose.jpg']
    with open(out / 'keypoints.json') as f:
        assert [r['file_name'] for r in json.load(f)] == ['x.jpg', 'x.png']
    assert cv2.imread(str(out / 'x.png_pose.jpg')).shape == cv2.imread(val_image(sample, 1)).shape


def test_6_an_annotation_file_without_the_person_category_is_refused(sample, tmp_path):
    from hsrnet import data as dataset
    root = copy_sample(sample, tmp_path)
    path = os.path.join(str(root), 'annotations', 'person_keypoints_val2017.json')
    edit_json(path, lambda data: data.update(categories=[]))
    with pytest.raises(ValueError) as info:
        dataset.build_dataset(tiny_config(root), 'val2017', False)
    assert str(info.value) == ('{}: "categories" has no person category (id 1; found ids none): '
                               'COCO evaluation scores only the categories listed there'
                               .format(path))
    assert len(dataset.build_dataset(tiny_config(root), 'val2017', True)) > 0   # training reads none


def test_7_a_truncated_avi_is_refused_as_a_truncated_mp4_is(tiny_checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    videos = {}
    for ext, fourcc in (('avi', 'MJPG'), ('mp4', 'mp4v')):
        path = str(tmp_path / 'clip.{}'.format(ext))
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), 10.0, (96, 64))
        for _ in range(10):
            writer.write(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
        writer.release()
        truncate(path, keep=0.5)
        videos[ext] = path
    capture = cv2.VideoCapture(videos['avi'])
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 10
    readable = 0
    while capture.read()[0]:
        readable += 1
    assert 0 < readable < 10
    status, err = run_infer(*infer_args(tiny_checkpoint, videos['avi'], tmp_path / 'out'),
                            '--whole-image', '--quiet')
    assert (status, err.splitlines()) == (1, [
        'error: {}: truncated video: only {} of the 10 frames its header announces could be read '
        '(the file was cut short?)'.format(videos['avi'], readable)])
    assert os.listdir(tmp_path / 'out') == []
    status, err = run_infer(*infer_args(tiny_checkpoint, videos['mp4'], tmp_path / 'out4'),
                            '--whole-image', '--quiet')
    assert status == 2 and err.startswith('error: {}: cannot open'.format(videos['mp4']))
    assert not os.path.exists(tmp_path / 'out4')


def test_8_detector_boxes_outside_their_image_get_one_warning(sample, tmp_path, caplog):
    from hsrnet import data as dataset
    root = copy_sample(sample, tmp_path)
    path = os.path.join(str(root), DETECTIONS)
    cfg = tiny_config(root, 'TEST.USE_GT_BBOX', 'false')
    with caplog.at_level(logging.WARNING):
        total = len(dataset.build_dataset(cfg, 'val2017', False))
    assert not [r for r in caplog.records if 'outside' in r.getMessage()]
    spoiled = {}

    def spoil(detections):
        detections[1]['bbox'] = [5000.0, 5000.0, 50.0, 80.0]
        detections[2]['bbox'] = [-500.0, 10.0, 100.0, 100.0]
        detections[3]['bbox'] = [0.0, 0.0, 1e30, 1e30]
        spoiled.update(detections[1])
    edit_json(path, spoil)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        ds = dataset.build_dataset(cfg, 'val2017', False)
    warnings = [r.getMessage() for r in caplog.records if 'outside' in r.getMessage()]
    with open(os.path.join(str(root), 'annotations', 'person_keypoints_val2017.json')) as f:
        image = [i for i in json.load(f)['images'] if i['id'] == spoiled['image_id']][0]
    assert warnings == [
        '{}: 3 of {} person boxes lie (almost) entirely outside their image (less than 1% of the '
        'box inside; the first: image_id {}, bbox [5000.0, 5000.0, 50.0, 80.0], image {}x{}); '
        'their poses are guesses that count as false positives'.format(
            path, total, spoiled['image_id'], image['width'], image['height'])]
    assert len(ds) == total


def test_9_mpii_image_paths_stay_in_the_images_folder(tmp_path):
    from hsrnet import data as dataset
    from test_dataset import mpii_config
    (tmp_path / 'annot').mkdir()
    entry = {'image': 'a.jpg', 'center': [10, 20], 'scale': 1.0,
             'joints': [[0, 0]] * 16, 'joints_vis': [1] * 16}
    path = tmp_path / 'annot' / 'valid.json'
    for image in ('../../../../etc/passwd', '/etc/passwd', 'sub/../../b.jpg'):
        path.write_text(json.dumps([entry, dict(entry, image=image)]))
        with pytest.raises(ValueError) as info:
            dataset.build_dataset(mpii_config(tmp_path), 'valid', False)
        assert str(info.value).startswith(
            '{}: entry 1 is malformed (image must be a file name inside the images folder '
            '{}): '.format(path, tmp_path / 'images'))
    path.write_text(json.dumps([entry, dict(entry, image='sub/./b.jpg')]))
    ds = dataset.build_dataset(mpii_config(tmp_path), 'valid', False)
    assert ds.db[1]['image'] == os.path.join(str(tmp_path), 'images', 'sub/./b.jpg')


@pytest.mark.parametrize('fault', ['optimizer of other shapes', "epoch 'abc'", 'batch 10**9'])
def test_10_11_bad_training_checkpoints_are_one_line(sample, reference, tmp_path, fault):
    """Resuming from an optimizer state of another model (the same number of
    parameters, other shapes: before, a traceback at the first Adam step) or a
    checkpoint with nonsense in its fields: one line naming file and field."""
    state = load(os.path.join(os.path.dirname(reference), 'checkpoint.pth.tar'))
    out_dir = str(tmp_path / 'out')
    folder = output_dir_of(out_dir)
    checkpoint = os.path.join(folder, 'checkpoint.pth.tar')
    if fault == 'optimizer of other shapes':
        moments = state['optimizer']['state'][0]
        moments['exp_avg'] = torch.zeros(1, 2, 3)
        first = next(iter(state['state_dict']))       # the network's first parameter
        message = ('{}: the optimizer state does not fit this model: its exp_avg of parameter '
                   '{} has shape (1, 2, 3), the parameter {}'.format(
                       checkpoint, first, tuple(state['state_dict'][first].shape)))
    elif fault == "epoch 'abc'":
        state['epoch'] = 'abc'
        message = ("{}: not a valid training checkpoint: epoch must be a whole number >= 0, got "
                   "'abc'".format(checkpoint))
    else:
        state.update(batch=10 ** 9)
        message = ('{}: not a valid training checkpoint: batch 1000000000 is past the end of '
                   'epoch 1 ({} batches)'.format(checkpoint, STEPS))
    os.makedirs(folder)
    torch.save(state, checkpoint)
    result = run_script('train.py', fault_args(sample, out_dir, **{'TRAIN.RESUME': 'true',
                                                                   'TRAIN.END_EPOCH': 2}))
    assert result.returncode == 2
    assert stderr_lines(result) == ['error: ' + message], result.stderr[-2000:]


def test_10_11_checkpoint_fields_and_optimizer_groups_are_checked():
    from hsrnet.engine.optim import load_optimizer_state
    from hsrnet.engine.trainer import checkpoint_position
    assert checkpoint_position({'epoch': 3}, 'c') == (3, 0, True)
    assert checkpoint_position({'epoch': 3, 'batch': 2, 'validated': False}, 'c') == (3, 2, False)
    for fields, message in (({'epoch': -5}, 'epoch must be a whole number >= 0, got -5'),
                            ({'epoch': 1, 'batch': 1e9}, 'batch must be a whole number >= 0, '
                                                         'got 1000000000.0'),
                            ({'epoch': 1, 'perf': 'x'}, "perf must be a number, got 'x'"),
                            ({'epoch': 1, 'validated': 'no'}, "validated must be true or false")):
        with pytest.raises(ValueError, match=re.escape('c: not a valid training checkpoint: '
                                                       + message)):
            checkpoint_position(fields, 'c')
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    other = torch.nn.Linear(3, 4)
    saved = torch.optim.Adam(other.parameters())
    other(torch.ones(1, 3)).sum().backward()
    saved.step()
    with pytest.raises(ValueError, match=re.escape(
            'c: the optimizer state does not fit this model (2 parameters saved, the model has '
            '4): saved by another network or with other settings?')):
        load_optimizer_state(torch.optim.Adam(model.parameters()), saved.state_dict(), 'c')


def test_13_an_empty_or_non_utf8_yaml_is_one_line(tmp_path):
    from hsrnet.config import ConfigError, get_default_config, update_config
    empty = tmp_path / 'empty.yaml'
    empty.write_text('# nothing here\n')
    with pytest.raises(ConfigError) as info:
        update_config(str(empty), get_default_config())
    assert str(info.value) == ('{}: the config file is empty (it sets no key; every default '
                               'would be used)'.format(empty))
    latin = tmp_path / 'latin1.yaml'
    latin.write_bytes('# réglages\nWORKERS: 2\n'.encode('latin-1'))
    with pytest.raises(ConfigError, match=re.escape('{}: not UTF-8 text ('.format(latin))):
        update_config(str(latin), get_default_config())


def test_14_an_annotation_file_holding_a_list_is_one_line(sample, tmp_path):
    from hsrnet import data as dataset
    root = copy_sample(sample, tmp_path)
    path = os.path.join(str(root), 'annotations', 'person_keypoints_val2017.json')
    with open(path, 'w') as f:
        json.dump([{'id': 1}], f)
    with pytest.raises(ValueError) as info:
        dataset.build_dataset(tiny_config(root), 'val2017', False)
    assert str(info.value) == ('{}: not a COCO annotation file: expected {{"images": [...], '
                               '"annotations": [...], "categories": [...]}}, got a json list'
                               .format(path))


def test_15_redecode_of_nan_heatmaps_is_one_line(sample, tmp_path, capsys):
    from hsrnet import data as dataset
    from hsrnet.config import dump_config
    from hsrnet.engine.heatmap_cache import save_heatmaps
    from hsrnet.evaluation import PosePredictions
    cfg = tiny_config(sample)
    ds = dataset.build_dataset(cfg, 'val2017', False)
    n = len(ds)
    predictions = PosePredictions(
        keypoints=np.zeros((n, 17, 3)), centers=np.array([r['center'] for r in ds.db]),
        scales=np.array([r['scale'] for r in ds.db]), box_scores=np.ones(n),
        images=[r['image'] for r in ds.db])
    heatmaps = np.random.default_rng(0).random((n, 17, 16, 12), dtype=np.float32)
    heatmaps[2] = np.nan
    saved = save_heatmaps(str(tmp_path / 'hm.npz'), heatmaps, predictions, cfg)
    yaml_file = tmp_path / 'run.yaml'
    yaml_file.write_text(dump_config(cfg))
    redecode = load_tool('redecode')
    assert redecode.main(['--cfg', str(yaml_file), '--heatmaps', saved,
                          '--output-dir', str(tmp_path / 'out')]) == 1
    assert capsys.readouterr().err.splitlines() == [
        'error: heatmaps file {}: 1 of {} predicted poses are not finite (NaN or infinity), the '
        'first of image {}; nothing was written or evaluated'.format(saved, n, ds.db[2]['image'])]
    assert not os.path.exists(tmp_path / 'out')


def test_16_a_second_signal_during_a_save_exits_143_keeping_the_old_checkpoint(
        tmp_path, monkeypatch, capsys):
    from hsrnet.runner.launch import run_job
    from hsrnet.utils import fileio
    from hsrnet.utils.checkpoint import save_atomic
    from hsrnet.utils.preemption import StopSignals
    path = str(tmp_path / 'checkpoint.pth.tar')
    save_atomic({'w': torch.zeros(3)}, path)
    with open(path, 'rb') as f:
        before = f.read()

    class SignalledWhileWriting(io.FileIO):
        writes = 0

        def write(self, data):
            SignalledWhileWriting.writes += 1
            if SignalledWhileWriting.writes == 3:    # in the middle of torch.save
                os.kill(os.getpid(), signal.SIGTERM)
            return super().write(data)

    class StoppedWhileSaving:
        def __init__(self, args):
            pass

        def run(self):
            with StopSignals():
                os.kill(os.getpid(), signal.SIGTERM)      # the first: save and stop
                monkeypatch.setattr(fileio, 'open', lambda p, mode='r', *a, **k:
                                    SignalledWhileWriting(p, mode.replace('b', '')),
                                    raising=False)
                save_atomic({'w': torch.ones(100000)}, path)

    assert run_job(StoppedWhileSaving, None) == 143
    assert SignalledWhileWriting.writes >= 3
    assert capsys.readouterr().err.splitlines() == [
        'stopped: SIGTERM: interrupted at once; files written before are kept']
    with open(path, 'rb') as f:
        assert f.read() == before
    assert os.listdir(tmp_path) == ['checkpoint.pth.tar']


def test_17_a_full_disk_in_infer_names_the_file(sample, tiny_checkpoint, tmp_path, monkeypatch):
    from hsrnet.apps import media
    monkeypatch.setattr(media, 'open', full_disk_open, raising=False)
    image = val_image(sample, 0)
    out = tmp_path / 'out'
    status, err = run_infer(*infer_args(tiny_checkpoint, image, out), '--whole-image')
    drawing = out / (os.path.splitext(os.path.basename(image))[0] + '_pose.jpg')
    assert (status, err.splitlines()) == (1, [
        'error: cannot write {}: No space left on device (ENOSPC)'.format(drawing)])
    assert os.listdir(out) == []


def test_18_boxes_all_below_the_threshold_say_so(sample, tiny_checkpoint, tmp_path):
    detections = os.path.join(sample, DETECTIONS)
    with open(detections) as f:
        best = max(d['score'] for d in json.load(f) if d['category_id'] == 1)
    folder = os.path.dirname(val_image(sample, 0))
    status, err = run_infer(*infer_args(tiny_checkpoint, folder, tmp_path / 'out'), '--boxes',
                            detections, '--box-thre', '2')
    lines = err.splitlines()
    assert status == 2 and len(lines) == 1
    assert re.fullmatch(r'error: {}: each of the \d+ person boxes of the inputs of {} scores below '
                        r'--box-thre 2 \(the highest: {}\)'.format(
                            re.escape(detections), re.escape(folder),
                            re.escape('{:.4g}'.format(best))), lines[0]), lines[0]
    assert not os.path.exists(tmp_path / 'out')


INFER_PY = os.path.join(ROOT, 'pose_estimation', 'infer.py')


def test_19_sigterm_in_infer_removes_its_temporary_folder_and_says_so(tiny_checkpoint, tmp_path):
    from hsrnet.samples.synthetic_video import write_video
    video = tmp_path / 'long.mp4'
    info = write_video(video, seed=2, seconds=30, fps=10)
    out = tmp_path / 'out'
    from tiny_model import TINY_OPTS
    proc = subprocess.Popen([sys.executable, INFER_PY] + infer_args(
        tiny_checkpoint, video, out) + ['--whole-image', '--frames-per-batch', '1'] + TINY_OPTS,
        cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED='1'), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith('infer: ')   # the run has started
        proc.send_signal(signal.SIGTERM)
        out_text, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == 143
    lines = [line for line in err.replace('\r', '\n').splitlines() if line.strip()]
    match = re.fullmatch(r'stopped: SIGTERM: interrupted after (\d+) frames; nothing written '
                         r'\(the temporary folder in {} was removed\)'.format(re.escape(str(out))),
                         lines[-1])
    assert match and int(match.group(1)) < info['frames'], err[-2000:]
    assert os.listdir(out) == []


def test_20_sigterm_in_validation_stops_within_a_batch_and_the_resume_validates_first(
        sample, reference, tmp_path):
    out_dir = str(tmp_path / 'out')
    folder = output_dir_of(out_dir)
    checkpoint = os.path.join(folder, 'checkpoint.pth.tar')
    args = fault_args(sample, out_dir, **{'TEST.BATCH_SIZE': 1})    # 8 validation batches
    run = Training(args)
    run.wait_for('Test [1/', timeout=RUN_TIMEOUT)
    run.proc.send_signal(signal.SIGTERM)
    result = run.finish(timeout=RUN_TIMEOUT)
    assert result.returncode == 143, result.stderr[-3000:]
    lines = stderr_lines(result)
    match = re.fullmatch(
        r'stopped: SIGTERM: training stopped in the validation after epoch 0 \(batch (\d+) of '
        r'(\d+)\); checkpoint saved to {} \(epoch 0 trained, not yet validated: a resume '
        r'validates it first\); resume with: .* TRAIN\.RESUME true'.format(re.escape(checkpoint)),
        lines[0])
    assert len(lines) == 1 and match, lines
    done, total = int(match.group(1)), int(match.group(2))
    assert done < total
    assert 'Test [{}/'.format(done) in result.stdout                # the batch in progress
    assert 'Test [{}/'.format(done + 1) not in result.stdout        # and no other
    state = load(checkpoint)
    assert (state['epoch'], state['batch'], state['validated']) == (1, 0, False)
    assert not [name for name in ('model_best.pth.tar', 'final_state.pth.tar', RESULTS)
                if os.path.exists(os.path.join(folder, name))]

    resumed = check_ok(run_script('train.py', args + ['TRAIN.RESUME', 'true'],
                                  timeout=RUN_TIMEOUT))
    assert 'the checkpoint was saved before the validation after epoch 0: running it first' \
        in resumed.stdout
    assert 'Epoch [0]' not in resumed.stdout and 'Test [{}/{}]'.format(total, total) \
        in resumed.stdout
    assert load(checkpoint)['validated'] is True
    assert os.path.isfile(os.path.join(folder, 'model_best.pth.tar'))
    assert os.path.isfile(os.path.join(folder, RESULTS))
    same_weights(reference, os.path.join(folder, 'final_state.pth.tar'))


def test_21_an_unwritable_log_dir_is_one_warning_and_training_goes_on(sample, tmp_path):
    blocker = tmp_path / 'not_a_folder'
    blocker.write_text('x')
    out_dir = str(tmp_path / 'out')
    result = check_ok(run_script('train.py', fault_args(sample, out_dir, **{
        'LOG_DIR': str(blocker / 'log'), 'TRAIN.BATCH_SIZE': 13, 'TEST.BATCH_SIZE': 8}),
        timeout=RUN_TIMEOUT))
    warnings = [line for line in result.stdout.splitlines() if 'TensorBoard' in line]
    assert len(warnings) == 1 and re.search(
        r' cannot create the TensorBoard folder {}/coco/pose_hsrnet_59/hsrnet59_demo_[0-9-]+: '
        r'Not a directory \(ENOTDIR\); no TensorBoard logging, training goes on$'.format(
            re.escape(str(blocker / 'log'))), warnings[0]), warnings
    assert os.path.isfile(os.path.join(output_dir_of(out_dir), 'final_state.pth.tar'))


def test_22_an_explicit_flag_wins_over_opts_in_valid_py(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, 'pose_estimation'))
    import valid
    from hsrnet.runner.cli import load_config
    args = valid.parse_args(['--cfg', DEMO_CFG, '--coco-bbox-file', 'flag.json', 'opts',
                             'TEST.COCO_BBOX_FILE', 'opts.json', 'TEST.BATCH_SIZE', '5'])
    cfg = load_config(args, valid.VALID_FLAGS)
    assert (cfg.TEST.COCO_BBOX_FILE, cfg.TEST.BATCH_SIZE) == ('flag.json', 5)


# helpers of the round-two tests

@pytest.fixture(scope='module')
def tiny_checkpoint(tmp_path_factory):
    from tiny_model import save_tiny_checkpoint
    return save_tiny_checkpoint(tmp_path_factory.mktemp('tiny') / 'tiny.pth.tar')


def infer_args(model_file, input, out):
    from tiny_model import DEMO_YAML
    return ['--cfg', DEMO_YAML, '--model-file', str(model_file), '--input', str(input),
            '--out', str(out)]


def run_infer(*args):
    """infer.py's main in this process, the tiny network's overrides last: (status, stderr)."""
    from test_infer import run_infer as run
    from tiny_model import TINY_OPTS
    return run(*(list(args) + TINY_OPTS))


def tiny_yaml(path):
    from tiny_model import tiny_yaml as write
    return write(path)
