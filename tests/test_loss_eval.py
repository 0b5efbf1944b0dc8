"""Unit tests of the training machinery: loss, accuracy, optimizer and schedule,
seeded loaders, gathering across ranks, precision, progress line, debug images."""
import logging
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from conftest import LIB, ROOT
from hsrnet.config import ConfigError, get_default_config
from hsrnet.head.accuracy import accuracy
from hsrnet.head.loss import JointsMSELoss
from hsrnet.utils.distributed import DistContext, merge_in_dataset_order
from hsrnet.data.loaders import EpochSeededLoader
from hsrnet.data.samplers import ShardSampler
from hsrnet.utils.meters import AverageMeter, RunPace, progress_line
from hsrnet.engine.precision import Precision
from hsrnet.engine.optim import get_lr_scheduler, get_optimizer
from hsrnet.runner.setup import parse_gpus
from hsrnet.utils.seeding import derive_seed, seed_everything, seed_sample
from hsrnet.utils.vis import IMAGENET_MEAN, IMAGENET_STD, save_debug_images, to_display_images


# ---------------------------------------------------------------- loss

def _two_joint_example():
    output = torch.zeros(1, 2, 2, 2)
    output[0, 0, 0, 0] = 1.0          # joint 0: one pixel off by 1
    output[0, 1] = 2.0                # joint 1: every pixel off by 2
    target = torch.zeros(1, 2, 2, 2)
    weight = torch.tensor([[[1.0], [0.0]]])
    return output, target, weight


def test_loss_hand_computed_with_target_weight():
    # joint 0: 0.5 * mean([1, 0, 0, 0]) = 0.125; joint 1 weighted out: 0
    loss = JointsMSELoss(use_target_weight=True)(*_two_joint_example())
    assert loss.item() == pytest.approx((0.125 + 0.0) / 2)


def test_loss_hand_computed_without_target_weight():
    # joint 1: 0.5 * mean([4, 4, 4, 4]) = 2
    loss = JointsMSELoss(use_target_weight=False)(*_two_joint_example())
    assert loss.item() == pytest.approx((0.125 + 2.0) / 2)


def test_loss_equals_mean_over_joints_of_per_joint_mse():
    gen = torch.Generator().manual_seed(0)
    output = torch.rand(3, 5, 8, 6, generator=gen)
    target = torch.rand(3, 5, 8, 6, generator=gen)
    weight = (torch.rand(3, 5, 1, generator=gen) > 0.3).float()
    mse = torch.nn.MSELoss()
    expected = sum(0.5 * mse(output[:, j].flatten(1) * weight[:, j],
                             target[:, j].flatten(1) * weight[:, j]) for j in range(5)) / 5
    loss = JointsMSELoss(True)(output, target, weight)
    assert torch.allclose(loss, expected, rtol=1e-6)


def test_loss_is_float32_for_low_precision_output():
    output, target, weight = _two_joint_example()
    loss = JointsMSELoss(True)(output.bfloat16(), target, weight)
    assert loss.dtype == torch.float32


# ---------------------------------------------------------------- accuracy

def _peak(heatmaps, n, j, x, y):
    heatmaps[n, j, y, x] = 1.0


def test_accuracy_hand_computed():
    # heatmaps 40 high, 10 wide: x is divided by h/10 = 4 and y by w/10 = 1
    # (the original's pairing), threshold 0.5, strict.
    output = np.zeros((2, 3, 40, 10), dtype=np.float32)
    target = np.zeros_like(output)
    _peak(target, 0, 0, 4, 20); _peak(output, 0, 0, 5, 20)   # |dx| 1 -> 0.25: hit
    _peak(target, 0, 1, 2, 3); _peak(output, 0, 1, 2, 4)     # |dy| 1 -> 1.0: miss
    _peak(output, 0, 2, 7, 7)                                # no target: ignored
    _peak(target, 1, 0, 6, 10); _peak(output, 1, 0, 6, 10)   # exact: hit
    _peak(output, 1, 1, 1, 1)                                # no target: ignored
    _peak(target, 1, 2, 1, 1); _peak(output, 1, 2, 3, 1)     # |dx| 2 -> 0.5: miss
    acc, avg_acc, cnt, pred = accuracy(output, target)
    assert cnt == 3
    assert avg_acc == pytest.approx(1 / 3)
    assert np.allclose(acc, [1 / 3, 1.0, 0.0, 0.0])
    assert np.array_equal(pred[0, :2], [[5, 20], [2, 4]])


def test_accuracy_joint_without_any_target_is_minus_one():
    output = np.zeros((1, 2, 8, 8), dtype=np.float32)
    target = np.zeros_like(output)
    _peak(target, 0, 0, 3, 3); _peak(output, 0, 0, 3, 3)
    acc, avg_acc, cnt, _ = accuracy(torch.from_numpy(output), torch.from_numpy(target))
    assert cnt == 1 and avg_acc == 1.0
    assert np.allclose(acc, [1.0, 1.0, -1.0])


def test_accuracy_no_valid_joint():
    zeros = np.zeros((1, 2, 8, 8), dtype=np.float32)
    acc, avg_acc, cnt, _ = accuracy(zeros, zeros)
    assert cnt == 0 and avg_acc == 0 and acc[0] == 0


# ---------------------------------------------------------------- optimizer, schedule

def _cfg(**train):
    cfg = get_default_config()
    cfg.TRAIN.update(train)
    return cfg


def test_adam_has_no_weight_decay():
    opt = get_optimizer(_cfg(OPTIMIZER='adam', LR=0.002, WD=0.1), torch.nn.Linear(2, 2))
    assert isinstance(opt, torch.optim.Adam)
    assert opt.param_groups[0]['lr'] == 0.002 and opt.param_groups[0]['weight_decay'] == 0


def test_sgd_settings():
    opt = get_optimizer(_cfg(OPTIMIZER='sgd', LR=0.1, MOMENTUM=0.8, WD=1e-3, NESTEROV=True),
                        torch.nn.Linear(2, 2))
    group = opt.param_groups[0]
    assert isinstance(opt, torch.optim.SGD)
    assert (group['momentum'], group['weight_decay'], group['nesterov']) == (0.8, 1e-3, True)


def test_unknown_optimizer_is_config_error():
    with pytest.raises(ConfigError, match='TRAIN.OPTIMIZER'):
        get_optimizer(_cfg(OPTIMIZER='lamb'), torch.nn.Linear(2, 2))


def test_multistep_schedule_per_epoch():
    cfg = _cfg(LR=1e-3, LR_STEP=[2, 4], LR_FACTOR=0.1)
    opt = get_optimizer(cfg, torch.nn.Linear(2, 2))
    sched = get_lr_scheduler(cfg, opt)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]['lr'])
        opt.step()
        sched.step()
    assert np.allclose(lrs, [1e-3, 1e-3, 1e-4, 1e-4, 1e-5])


def test_parse_gpus():
    assert parse_gpus('0,1') == [0, 1]
    with pytest.raises(ConfigError, match='GPUS'):
        parse_gpus('a,b')


# ---------------------------------------------------------------- seeding, loaders

class _RandomItems(Dataset):
    """Item i -> (i, a number from numpy's global RNG): stands in for augmentation."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return i, np.random.rand()


def _epoch_items(loader, epoch):
    loader.set_epoch(epoch)
    batches = list(loader)
    return torch.cat([b[0] for b in batches]).tolist(), torch.cat([b[1] for b in batches])


@pytest.mark.parametrize('workers', [0, 1])
def test_epoch_seeded_loader_replays_an_epoch(workers):
    make = lambda: EpochSeededLoader(_RandomItems(), 4, workers, True, 7, DistContext(), False)
    first = make()
    order1, aug1 = _epoch_items(first, 1)
    order0, aug0 = _epoch_items(first, 0)
    resumed = make()                         # a fresh loader, as after a restart
    order1b, aug1b = _epoch_items(resumed, 1)
    assert order1 == order1b and torch.equal(aug1, aug1b)
    assert order0 != order1 and not torch.equal(aug0, aug1)
    assert sorted(order0) == list(range(10))


def test_derive_seed_depends_on_every_part():
    assert derive_seed(1, 2, 0) == derive_seed(1, 2, 0)
    assert len({derive_seed(1, 2, 0), derive_seed(1, 3, 0), derive_seed(1, 2, 1),
                derive_seed(2, 2, 0)}) == 4


def test_shard_sampler_covers_every_item_once_in_contiguous_slices():
    shards = [list(ShardSampler(7, DistContext(rank, 3))) for rank in range(3)]
    assert shards == [[0, 1], [2, 3], [4, 5, 6]]
    assert [list(ShardSampler(2, DistContext(rank, 3))) for rank in range(3)] == [[], [0], [1]]


def test_merge_in_dataset_order_drops_padding_duplicates():
    # DistributedSampler-style padding: 5 items over 2 ranks, item 0 repeated.
    shards = [{'indices': [0, 2, 4], 'preds': np.array([[0.], [2.], [4.]]),
               'image': ['a', 'c', 'e']},
              {'indices': [1, 3, 0], 'preds': np.array([[1.], [3.], [99.]]),
               'image': ['b', 'd', 'x']}]
    merged = merge_in_dataset_order(shards, 5)
    assert merged['preds'][:, 0].tolist() == [0, 1, 2, 3, 4]
    assert merged['image'] == ['a', 'b', 'c', 'd', 'e']
    with pytest.raises(ValueError, match='no result'):
        merge_in_dataset_order(shards, 6)


# ---------------------------------------------------------------- precision, progress

def test_fp16_on_cpu_becomes_bf16():
    cfg = get_default_config()
    cfg.AMP.ENABLED, cfg.AMP.DTYPE, cfg.CHANNELS_LAST = True, 'float16', True
    precision = Precision(cfg, torch.device('cpu'),
                          features={'capability': 'AVX512', 'native_bf16': True})
    assert precision.dtype == torch.bfloat16 and not precision.scaler.is_enabled()
    with precision.autocast():
        out = torch.nn.Linear(4, 4)(torch.ones(2, 4))
    assert out.dtype == torch.bfloat16
    images = precision.prepare_input(torch.ones(1, 3, 4, 4), torch.device('cpu'))
    assert images.is_contiguous(memory_format=torch.channels_last)


def test_bf16_is_never_chosen_on_a_cpu_without_native_bf16(caplog):
    cfg = get_default_config()
    cfg.AMP.ENABLED, cfg.AMP.DTYPE = True, 'bfloat16'
    with caplog.at_level('WARNING', logger='hsrnet.engine.precision'):
        precision = Precision(cfg, torch.device('cpu'),
                              features={'capability': 'AVX2', 'native_bf16': False})
    assert not precision.enabled and 'no native bfloat16' in caplog.text
    with precision.autocast():
        out = torch.nn.Linear(4, 4)(torch.ones(2, 4))
    assert out.dtype == torch.float32 and precision.describe().startswith('float32')


@pytest.mark.parametrize('capability,channels_last', [('AVX512', True), ('AVX2', True),
                                                      ('DEFAULT', False)])
def test_cpu_auto_chooses_the_memory_format_from_the_cpu(capability, channels_last):
    cfg = get_default_config()
    cfg.CPU_AUTO, cfg.CHANNELS_LAST = True, not channels_last
    precision = Precision(cfg, torch.device('cpu'),
                          features={'capability': capability, 'native_bf16': False})
    expected = torch.channels_last if channels_last else torch.contiguous_format
    assert precision.memory_format == expected


def test_cpu_features_follow_the_emulation_variables():
    script = ('import torch, sys; sys.path.insert(0, {!r}); from hsrnet.engine.precision import '
              'cpu_features; f = cpu_features(); print(f["capability"], f["native_bf16"])'
              ).format(os.path.join(ROOT, 'lib'))
    env = dict(os.environ, ATEN_CPU_CAPABILITY='avx2', ONEDNN_MAX_CPU_ISA='AVX2')
    out = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    assert out in (['AVX2', 'False'], ['DEFAULT', 'False'])


def test_progress_line_reports_speed_and_eta():
    batch_time, data_time, loss = AverageMeter(), AverageMeter(), AverageMeter()
    batch_time.update(0.5)
    data_time.update(0.1)
    loss.update(0.25, 4)
    line = progress_line('Epoch [0]', 10, 30, batch_time, data_time, 8, loss=loss)
    assert 'Epoch [0] [10/30]' in line and '16.0 img/s' in line
    assert 'loss 0.25 (0.25)' in line and 'ETA 0:00:10' in line



def test_run_pace_spreads_the_time_so_far_over_the_work_left():
    now = [100.0]
    pace = RunPace(clock=lambda: now[0])
    assert pace.remaining(50) is None            # nothing done yet: no guess
    now[0] += 30.0                               # 20 batches and a validation in 30 s
    pace.advance(20)
    assert pace.remaining(40).total_seconds() == 60
    assert pace.remaining(0).total_seconds() == 0

# ---------------------------------------------------------------- debug images

def test_display_images_undo_normalisation():
    pixels = np.random.default_rng(0).integers(0, 256, (2, 6, 5, 3)).astype(np.float32)
    normalised = (pixels / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    batch = torch.from_numpy(normalised.transpose(0, 3, 1, 2).copy())
    assert np.abs(to_display_images(batch).astype(int) - pixels).max() <= 1
    assert np.array_equal(to_display_images(batch, color_rgb=True),
                          to_display_images(batch)[..., ::-1])


def test_save_debug_images_writes_all_four(tmp_path):
    cfg = get_default_config()
    cfg.DEBUG.update(DEBUG=True, SAVE_BATCH_IMAGES_GT=True, SAVE_BATCH_IMAGES_PRED=True,
                     SAVE_HEATMAPS_GT=True, SAVE_HEATMAPS_PRED=True)
    images = torch.zeros(3, 3, 32, 24)
    heatmaps = torch.rand(3, 4, 8, 6)
    joints = torch.full((3, 4, 3), 10.0)
    meta = {'joints': joints, 'joints_vis': torch.ones(3, 4, 3)}
    prefix = str(tmp_path / 'debug' / 'train_0')
    save_debug_images(cfg, images, meta, heatmaps, joints[..., :2].numpy(), heatmaps, prefix)
    for suffix in ('gt', 'pred', 'hm_gt', 'hm_pred'):
        assert os.path.isfile('{}_{}.jpg'.format(prefix, suffix))
    gt = cv2.imread(prefix + '_gt.jpg')
    assert gt.shape[:2] == (2 + 34, 2 + 3 * 26)      # one row of 3 crops, 2 px padding
    assert gt[2 + 10, 2 + 10, 1] > 150                # a green joint at (10, 10)
    hm = cv2.imread(prefix + '_hm_gt.jpg')
    # 3 rows of crop + 4 heatmaps, 8x6 heatmaps shown 6x larger, 1 px padding
    assert hm.shape[:2] == (1 + 3 * 49, 1 + 5 * 37)


def test_training_window_names_the_first_non_finite_loss_and_its_window():
    from hsrnet.engine.loops import TrainingWindow
    from hsrnet.utils.errors import NonFiniteLossError
    window = TrainingWindow(torch.device('cpu'))
    one = torch.tensor(1.0)
    for i in range(3):
        window.add(i, torch.tensor(0.5 * (i + 1)), 2, torch.tensor(0.25), one)
    loss_sum, count, acc_sum, acc_count = window.read(epoch=4, iteration=2)
    assert (loss_sum, count, acc_sum, acc_count) == (6.0, 6.0, 0.75, 3.0)
    for i, value in zip(range(3, 8), [0.1, float('inf'), float('nan'), 0.2, 0.3]):
        window.add(i, torch.tensor(value), 2, torch.tensor(0.5), one)
    with pytest.raises(NonFiniteLossError,
                       match=r'^loss is inf at epoch 4, iteration 4 \(iterations 3-7'):
        window.read(epoch=4, iteration=7)


def test_accuracy_on_device_equals_accuracy():
    from hsrnet.head.accuracy import accuracy_on_device
    g = torch.Generator().manual_seed(0)
    for trial in range(10):
        output = torch.rand(5, 17, 8, 6, generator=g) - 0.3
        target = torch.rand(5, 17, 8, 6, generator=g) * (torch.rand(5, 17, 1, 1, generator=g) > 0.3)
        if trial == 0:
            target.zero_()
        _, avg_acc, cnt, _ = accuracy(output, target)
        device_acc, device_cnt = accuracy_on_device(output, target)
        assert device_acc.item() == pytest.approx(avg_acc, abs=1e-6) and device_cnt.item() == cnt


def test_cpu_malloc_cache_applies_in_a_fresh_process():
    script = ('import sys; sys.path.insert(0, {!r}); from hsrnet.utils.cpu_memory import '
              'keep_freed_memory; import numpy as np; ok = keep_freed_memory(); '
              'a = np.ones(1 << 24); del a; print(ok)').format(os.path.join(ROOT, 'lib'))
    out = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == [str(sys.platform.startswith('linux'))]


def test_debug_pictures_that_cannot_be_written_are_one_warning(tmp_path, caplog):
    # a debug picture never stops training: its folder is a file here
    cfg = get_default_config()
    cfg.DEBUG.update(DEBUG=True, SAVE_BATCH_IMAGES_GT=True, SAVE_BATCH_IMAGES_PRED=False,
                     SAVE_HEATMAPS_GT=False, SAVE_HEATMAPS_PRED=False)
    (tmp_path / 'debug').write_text('not a folder')
    images, heatmaps = torch.zeros(2, 3, 32, 24), torch.rand(2, 4, 8, 6)
    joints = torch.full((2, 4, 3), 10.0)
    meta = {'joints': joints, 'joints_vis': torch.ones(2, 4, 3)}
    with caplog.at_level(logging.WARNING):
        for i in range(3):
            save_debug_images(cfg, images, meta, heatmaps, joints[..., :2].numpy(), heatmaps,
                              str(tmp_path / 'debug' / 'train_{}'.format(i)))
    warnings = [r.getMessage() for r in caplog.records if 'debug pictures' in r.getMessage()]
    assert len(warnings) == 1 and str(tmp_path / 'debug') in warnings[0]
    from hsrnet.utils.vis import write_image
    with pytest.raises(OSError, match=r'cannot write image .*x\.unknown'):
        write_image(str(tmp_path / 'x.unknown'), np.zeros((4, 4, 3), np.uint8))


def test_seed_sample_draws_what_seed_everything_draws():
    import random

    def draws(seed_fn, seed):
        seed_fn(seed)
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    for seed in (0, 12345, 2 ** 32 + 7):
        assert draws(seed_sample, seed) == draws(seed_everything, seed)
    assert draws(seed_sample, 1) != draws(seed_sample, 2)


def _any_rank_worker(rank, init_file, results):
    import torch.distributed as dist
    from hsrnet.utils.distributed import any_rank
    dist.init_process_group('gloo', init_method='file://' + init_file, rank=rank, world_size=2)
    try:
        results[rank] = (any_rank(False), any_rank(rank == 1), any_rank(True))
    finally:
        dist.destroy_process_group()


def test_any_rank_is_true_when_one_rank_says_so(tmp_path):
    import torch.multiprocessing as mp
    from hsrnet.utils.distributed import any_rank
    assert any_rank(True) is True and any_rank(False) is False   # a world of one
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_any_rank_worker, args=(str(tmp_path / 'init'), results), nprocs=2)
        assert dict(results) == {0: (False, True, True), 1: (False, True, True)}


def test_workers_start_after_the_main_process_used_opencv_threads():
    """OpenCV's thread pool, used in the main process, then workers forked: they
    start and deliver (a worker that resized the inherited pool waited forever)."""
    import subprocess
    import sys
    script = ('import sys; sys.path.insert(0, {!r}); import cv2, numpy as np, torch; '
              'from hsrnet.data.loaders import build_val_loader; from hsrnet.utils.distributed import '
              'DistContext; image = np.zeros((1500, 1500, 3), np.uint8); '
              'cv2.resize(cv2.warpAffine(image, np.eye(2, 3), (1500, 1500)), (700, 700)); '
              'loader = build_val_loader(list(range(6)), 3, 2, DistContext(), False); '
              'print(sum(len(b) for b in loader), cv2.getNumThreads())').format(LIB)
    done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ['6', '1']
