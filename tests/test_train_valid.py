"""End to end: train.py and valid.py on a tiny generated sample, as CI runs them.

One 2-epoch training run (conftest's session fixture `trained`) feeds the other tests: resuming must
reproduce its weights exactly, valid.py must give the same results in one
process, under torchrun and from an original-format checkpoint.
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import (CFG_STEM, DEMO_CFG, DETECTIONS_FILE as DETECTIONS, RESULTS,  # noqa: F401
                      COCO_YAML, ROOT, SHARED_DATA, TIMEOUT, check_ok, load_results, output_dir_of,
                      run_script, tiny_opts, train_args, valid_args)
# The fixtures `sample` (the generated sample) and `trained` (a 2-epoch run on it)
# are conftest's, shared by the session.



@pytest.fixture(scope='module')
def single_valid(sample, trained, tmp_path_factory):
    """Results of valid.py (flip test, detector boxes) in one process."""
    out_dir = str(tmp_path_factory.mktemp('valid1'))
    model_file = os.path.join(output_dir_of(trained[0]), 'final_state.pth.tar')
    result = check_ok(run_script('valid.py', valid_args(sample, out_dir, model_file),
                                 env={'OMP_NUM_THREADS': '1'}))
    result.results_file = os.path.join(output_dir_of(out_dir), RESULTS)
    return load_results(out_dir), result


def test_training_writes_checkpoints_logs_and_debug_images(trained):
    out_dir, result = trained
    final_dir = output_dir_of(out_dir)
    names = set(os.listdir(final_dir))
    assert {'checkpoint.pth.tar', 'model_best.pth.tar', 'final_state.pth.tar',
            'train_config.yaml', 'results', 'debug'} <= names
    assert any(n.startswith(CFG_STEM) and n.endswith('_train.log') for n in names)
    for suffix in ('gt', 'pred', 'hm_gt', 'hm_pred'):
        assert os.path.isfile(os.path.join(final_dir, 'debug', 'train_0_{}.jpg'.format(suffix)))
    tb_runs = os.listdir(os.path.join(out_dir, 'log', 'coco', 'pose_hsrnet_59'))
    assert len(tb_runs) == 1 and tb_runs[0].startswith(CFG_STEM + '_')
    assert os.listdir(os.path.join(out_dir, 'log', 'coco', 'pose_hsrnet_59', tb_runs[0]))

    checkpoint = torch.load(os.path.join(final_dir, 'checkpoint.pth.tar'), weights_only=True)
    assert checkpoint['epoch'] == 2
    assert checkpoint['model'] == '64x48_pose_hsrnet_59_d256d256'
    assert {'state_dict', 'perf', 'best_perf', 'optimizer', 'scheduler'} <= set(checkpoint)
    assert checkpoint['scheduler']['last_epoch'] == 2
    final = torch.load(os.path.join(final_dir, 'final_state.pth.tar'), weights_only=True)
    weights = final['state_dict']
    assert all(torch.equal(weights[k], checkpoint['state_dict'][k]) for k in weights)
    # every checkpoint records the run: its merged config, experiment and version
    import hsrnet
    best = torch.load(os.path.join(final_dir, 'model_best.pth.tar'), weights_only=True)
    for saved in (checkpoint, best, final):
        assert saved['experiment'] == CFG_STEM and saved['version'] == hsrnet.__version__
        assert 'IMAGE_SIZE: [48, 64]' in saved['config'] and 'EXPERIMENT: ' + CFG_STEM \
            in saved['config']
    # each run's config and command line, beside its log
    record = [n for n in names if n.startswith(CFG_STEM) and n.endswith('_train_config.yaml')]
    assert len(record) == 1
    text = open(os.path.join(final_dir, record[0])).read()
    assert text.startswith('# ') and 'train.py' in text.splitlines()[0]
    assert 'Epoch [1] [2/2]' in result.stdout and '64x48_pose_hsrnet_59_d256d256: loss' \
        in result.stdout
    assert result.stdout.count('saving checkpoint') == 2
    # the second epoch says how long the rest of the run takes
    assert re.search(r'epoch 1, lr [0-9.e-]+; training ends in about 0:\d\d:\d\d at the pace '
                     r'so far \(1 epoch left\)', result.stdout)
    assert 'epoch 0, lr 0.001\n' in result.stdout        # no guess before any work


def test_resumed_run_ends_with_the_same_weights(sample, trained, tmp_path):
    out_dir = str(tmp_path)
    check_ok(run_script('train.py', train_args(sample, out_dir, **{
        'TRAIN.END_EPOCH': 1, 'DEBUG.DEBUG': 'true'})))
    resumed = check_ok(run_script('train.py', train_args(sample, out_dir, **{
        'TRAIN.RESUME': 'true', 'DEBUG.DEBUG': 'true'})))
    assert 'resumed from' in resumed.stdout and 'epoch 0,' not in resumed.stdout
    a = torch.load(os.path.join(output_dir_of(trained[0]), 'final_state.pth.tar'),
                   weights_only=True)['state_dict']
    b = torch.load(os.path.join(output_dir_of(out_dir), 'final_state.pth.tar'),
                   weights_only=True)['state_dict']
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


def test_validate_every_skips_validations_and_changes_no_weight(sample, trained, tmp_path):
    out_dir = str(tmp_path)
    result = check_ok(run_script('train.py', train_args(sample, out_dir, **{
        'TRAIN.VALIDATE_EVERY': 1, 'DEBUG.DEBUG': 'true'})))
    assert 'not validated' not in result.stdout
    assert result.stdout.count('heatmap accuracy') == 2   # after each of the 2 epochs
    # the demo yaml's VALIDATE_EVERY 4: the last epoch only
    assert trained[1].stdout.count('not validated after this epoch') == 1
    assert trained[1].stdout.count('heatmap accuracy') == 1
    a = torch.load(os.path.join(output_dir_of(trained[0]), 'final_state.pth.tar'),
                   weights_only=True)['state_dict']
    b = torch.load(os.path.join(output_dir_of(out_dir), 'final_state.pth.tar'),
                   weights_only=True)['state_dict']
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_valid_writes_results_and_table(single_valid):
    results, result = single_valid
    assert results and {'image_id', 'category_id', 'keypoints', 'score'} <= set(results[0])
    assert len(results[0]['keypoints']) == 17 * 3
    # detector boxes: no ground-truth heatmaps, so no loss or heatmap accuracy, in the
    # summary or in the progress lines
    assert '64x48_pose_hsrnet_59_d256d256: loss' not in result.stdout
    progress = [line for line in result.stdout.splitlines() if ' Test [' in line]
    assert progress and not any(' loss ' in line or ' acc ' in line for line in progress)
    assert result.stdout.count('| AP | AP .5 | AP .75 |') == 1   # the table, printed once
    ap = float(result.stdout.split('| AP | AP .5')[1].splitlines()[2].split('|')[1])
    with open(os.path.join(os.path.dirname(result.results_file), 'metrics_val2017.json')) as f:
        metrics = json.load(f)
    assert metrics['model'] == '64x48_pose_hsrnet_59_d256d256'
    assert round(metrics['metrics']['AP'], 3) == ap


def test_torchrun_valid_equals_one_process(sample, trained, single_valid, tmp_path):
    out_dir = str(tmp_path)
    model_file = os.path.join(output_dir_of(trained[0]), 'final_state.pth.tar')
    result = check_ok(run_script('valid.py', valid_args(sample, out_dir, model_file), nproc=2,
                                 env={'OMP_NUM_THREADS': '1'}))
    assert result.stdout.count('64x48_pose_hsrnet_59_d256d256: AP') == 1   # rank 0 only
    assert load_results(out_dir) == single_valid[0]


def test_original_format_checkpoint_through_model_file(sample, trained, single_valid,
                                                       tmp_path):
    """The original saved checkpoint.pth.tar with DataParallel's 'module.' prefix and a
    numpy perf; the same weights must give the same results."""
    final = torch.load(os.path.join(output_dir_of(trained[0]), 'final_state.pth.tar'),
                       weights_only=True)['state_dict']
    original = {'epoch': 2, 'model': ('pose_hsrnet_59', '64x48_pose_hsrnet_59_d256d256'),
                'state_dict': {'module.' + k: v for k, v in final.items()},
                'perf': np.float64(0.25), 'optimizer': {}}
    model_file = str(tmp_path / 'original_checkpoint.pth.tar')
    torch.save(original, model_file)
    out_dir = str(tmp_path / 'out')
    check_ok(run_script('valid.py', valid_args(sample, out_dir, model_file),
                        env={'OMP_NUM_THREADS': '1'}))
    assert load_results(out_dir) == single_valid[0]


def test_torchrun_training(sample, tmp_path):
    out_dir = str(tmp_path)
    result = check_ok(run_script('train.py', train_args(sample, out_dir, **{
        'TRAIN.END_EPOCH': 1}), nproc=2))
    assert result.stdout.count('saving checkpoint') == 1
    checkpoint = torch.load(os.path.join(output_dir_of(out_dir), 'checkpoint.pth.tar'),
                            weights_only=True)
    assert checkpoint['epoch'] == 1 and not any(k.startswith('module.')
                                                for k in checkpoint['state_dict'])


def test_valid_on_shared_coco_sample(trained, tmp_path):
    shared = os.path.join(SHARED_DATA, 'coco_sample')
    if not os.path.isdir(shared):
        pytest.skip('shared COCO sample not found: {}'.format(shared))
    out_dir = str(tmp_path)
    model_file = os.path.join(output_dir_of(trained[0]), 'final_state.pth.tar')
    check_ok(run_script('valid.py', valid_args(shared, out_dir, model_file)))
    with open(os.path.join(shared, DETECTIONS)) as f:
        detected_images = {d['image_id'] for d in json.load(f) if d['category_id'] == 1}
    results = load_results(out_dir)
    assert results and {r['image_id'] for r in results} <= detected_images


@pytest.mark.parametrize('script,extra', [
    ('train.py', ['--cfg', 'BAD_YAML']),
    ('valid.py', ['--cfg', DEMO_CFG, 'TRAIN.LRR', '0.1']),
    ('valid.py', ['--cfg', DEMO_CFG, '--model-file', 'no/such/file.pth']),
])
def test_setup_errors_are_one_line_with_status_2(tmp_path, script, extra):
    bad_yaml = tmp_path / 'bad.yaml'
    bad_yaml.write_text('TRAIN:\n  LRR: 0.1\n')
    args = [str(bad_yaml) if a == 'BAD_YAML' else a for a in extra]
    result = run_script(script, args + ['OUTPUT_DIR', str(tmp_path / 'out'),
                                        'LOG_DIR', str(tmp_path / 'log')])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
    assert 'LRR' in lines[0] or 'no/such/file.pth' in lines[0]
    if 'BAD_YAML' in extra:
        assert str(bad_yaml) in lines[0]


@pytest.mark.parametrize('workers', [0, 1])
def test_corrupt_image_is_one_line_naming_it(sample, trained, tmp_path, workers):
    root = tmp_path / 'sample'
    shutil.copytree(sample, root)
    images = root / 'images' / 'val2017'
    corrupt = images / sorted(os.listdir(images))[1]
    corrupt.write_bytes(b'not a jpeg')
    model_file = os.path.join(output_dir_of(trained[0]), 'final_state.pth.tar')
    result = run_script('valid.py', valid_args(str(root), str(tmp_path / 'out'), model_file,
                                               WORKERS=workers))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == ['error: cannot decode image {} (corrupt or not an image file)'.format(
        corrupt)], result.stderr


def test_corrupt_training_image_with_workers_ends_the_run(sample, tmp_path):
    # the workers ignore SIGTERM (a stop is the main process's to handle): after
    # the error the run must still end them instead of waiting for them forever
    root = tmp_path / 'sample'
    shutil.copytree(sample, root)
    images = root / 'images' / 'train2017'
    corrupt = images / sorted(os.listdir(images))[1]
    corrupt.write_bytes(b'not a jpeg')
    result = run_script('train.py', train_args(str(root), str(tmp_path / 'out'), WORKERS=1,
                                               **{'TRAIN.END_EPOCH': 1}))
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == \
        'error: cannot decode image {} (corrupt or not an image file)'.format(corrupt)


NAN_WRAPPER = '''
import os, runpy, sys
import torch
sys.path[:0] = [{lib!r}, os.path.dirname({script!r})]
from hsrnet.head import loss as loss_module

forward = loss_module.JointsMSELoss.forward
calls = [0]

def nan_on_second_training_step(self, *args):
    loss = forward(self, *args)
    if torch.is_grad_enabled():
        calls[0] += 1
        if calls[0] == 2:
            return loss * float('nan')
    return loss

loss_module.JointsMSELoss.forward = nan_on_second_training_step
sys.argv = [{script!r}] + sys.argv[1:]
runpy.run_path({script!r}, run_name='__main__')
'''


def test_nan_loss_stops_and_keeps_the_last_checkpoint(sample, trained, tmp_path):
    out_dir = str(tmp_path / 'out')
    final_dir = output_dir_of(out_dir)
    os.makedirs(final_dir)
    checkpoint = os.path.join(final_dir, 'checkpoint.pth.tar')
    shutil.copy(os.path.join(output_dir_of(trained[0]), 'checkpoint.pth.tar'), checkpoint)
    with open(checkpoint, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    wrapper = tmp_path / 'nan_train.py'
    wrapper.write_text(NAN_WRAPPER.format(lib=os.path.join(ROOT, 'lib'), script=os.path.join(
        ROOT, 'pose_estimation', 'train.py')))
    result = subprocess.run(
        [sys.executable, str(wrapper), '--cfg', DEMO_CFG] + [str(a) for a in tiny_opts(
            sample, out_dir, **{'TRAIN.RESUME': 'true', 'TRAIN.END_EPOCH': 3})],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith('error: loss is nan at epoch 2, iteration 1'), result.stderr
    assert checkpoint in error
    with open(checkpoint, 'rb') as f:
        assert hashlib.sha256(f.read()).hexdigest() == digest
    assert not os.path.exists(os.path.join(final_dir, 'final_state.pth.tar'))


def test_valid_takes_the_config_from_the_checkpoint(sample, trained, single_valid, tmp_path):
    """--model-file alone: the config recorded in the checkpoint, the output folder
    named after its experiment, the same results as with the yaml."""
    model_file = os.path.join(output_dir_of(trained[0]), 'final_state.pth.tar')
    out_dir = str(tmp_path)
    args = ['--model-file', model_file, '--flip-test', '--use-detect-bbox',
            'OUTPUT_DIR', out_dir, 'LOG_DIR', os.path.join(out_dir, 'log'),
            'DATASET.ROOT', sample]   # the data root moves; the network does not
    check_ok(run_script('valid.py', args, env={'OMP_NUM_THREADS': '1'}))
    assert load_results(out_dir) == single_valid[0]


def test_valid_refuses_a_yaml_of_another_network_in_one_line(sample, trained, tmp_path):
    model_file = os.path.join(output_dir_of(trained[0]), 'final_state.pth.tar')
    result = run_script('valid.py', ['--cfg', COCO_YAML, '--model-file', model_file,
                                     'OUTPUT_DIR', str(tmp_path), 'DATASET.ROOT', sample])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and 'MODEL.IMAGE_SIZE [192, 256] (checkpoint: [48, 64])' in lines[0] \
        and 'MODEL.EXTRA.HEATMAP_SIZE [48, 64] (checkpoint: [12, 16])' in lines[0]


def test_a_run_failing_at_setup_leaves_the_folders_records(sample, trained, tmp_path):
    """valid_config.yaml is the last set-up run's: a later run that fails at setup
    (no such model file) writes no record and keeps the earlier one."""
    model_file = os.path.join(output_dir_of(trained[0]), 'final_state.pth.tar')
    out_dir = str(tmp_path)
    check_ok(run_script('valid.py', valid_args(sample, out_dir, model_file)))
    folder = output_dir_of(out_dir)
    before = {n: open(os.path.join(folder, n)).read() for n in os.listdir(folder)
              if n.endswith('_config.yaml')}
    assert 'valid_config.yaml' in before and len(before) == 2
    failed = run_script('valid.py', valid_args(sample, out_dir, model_file + '.missing',
                                               **{'TEST.BATCH_SIZE': 2}))
    assert failed.returncode == 2
    after = {n: open(os.path.join(folder, n)).read() for n in os.listdir(folder)
             if n.endswith('_config.yaml')}
    assert after == before
