"""The CUDA code paths: `pytest -m cuda` on a machine with a GPU (skipped, saying
so, without one). Tiny runs of the sample data, as tests/test_train_valid.py:
AMP float16 (GradScaler) and bfloat16, DataParallel (--gpus), torchrun with NCCL,
valid.py, exact resume with deterministic settings, the GPU speed settings."""
import os

import pytest
import torch

from conftest import check_ok, load_results, output_dir_of, run_script, train_args, valid_args

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU (none here)'),
]

DETERMINISTIC = {'CUDNN.DETERMINISTIC': 'true', 'CUDNN.BENCHMARK': 'false'}
DETERMINISTIC_ENV = {'CUBLAS_WORKSPACE_CONFIG': ':4096:8'}


def final_weights(out_dir):
    return torch.load(os.path.join(output_dir_of(out_dir), 'final_state.pth.tar'),
                      weights_only=True)


def all_finite(state):
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
def test_tiny_training_with_amp(sample, tmp_path, dtype):
    out_dir = str(tmp_path)
    result = check_ok(run_script('train.py', train_args(sample, out_dir, **{
        'AMP.ENABLED': 'true', 'AMP.DTYPE': dtype, 'TRAIN.END_EPOCH': 1})))
    assert 'autocast {} on cuda'.format(dtype) in result.stdout
    checkpoint = torch.load(os.path.join(output_dir_of(out_dir), 'checkpoint.pth.tar'),
                            weights_only=True)
    assert all_finite(checkpoint['state_dict'])
    scaler = checkpoint['scaler']
    assert bool(scaler) == (dtype == 'float16')   # GradScaler only for float16


def test_dataparallel_with_gpus_flag(sample, tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip('DataParallel needs 2 GPUs, this machine has {}'.format(
            torch.cuda.device_count()))
    out_dir = str(tmp_path)
    check_ok(run_script('train.py', ['--gpus', '0,1'] + train_args(sample, out_dir, **{
        'TRAIN.END_EPOCH': 1})))
    assert not any(k.startswith('module.') for k in final_weights(out_dir))


def test_torchrun_with_nccl(sample, tmp_path):
    out_dir = str(tmp_path)
    nproc = min(torch.cuda.device_count(), 2)
    result = check_ok(run_script('train.py', train_args(sample, out_dir, **{
        'TRAIN.END_EPOCH': 1}), nproc=max(nproc, 1), torchrun=True))
    assert 'nccl' in result.stdout.lower()
    assert all_finite(final_weights(out_dir))


def test_valid_on_the_gpu(sample, tmp_path):
    train_dir = str(tmp_path / 'train')
    check_ok(run_script('train.py', train_args(sample, train_dir, **{'TRAIN.END_EPOCH': 1})))
    model_file = os.path.join(output_dir_of(train_dir), 'final_state.pth.tar')
    out_dir = str(tmp_path / 'valid')
    result = check_ok(run_script('valid.py', valid_args(sample, out_dir, model_file)))
    assert 'on cuda' in result.stdout and load_results(out_dir)


def test_resume_equals_uninterrupted_on_the_gpu(sample, tmp_path):
    whole, split = str(tmp_path / 'whole'), str(tmp_path / 'split')
    check_ok(run_script('train.py', train_args(sample, whole, **DETERMINISTIC),
                        env=DETERMINISTIC_ENV))
    check_ok(run_script('train.py', train_args(sample, split, **dict(
        DETERMINISTIC, **{'TRAIN.END_EPOCH': 1})), env=DETERMINISTIC_ENV))
    resumed = check_ok(run_script('train.py', train_args(sample, split, **dict(
        DETERMINISTIC, **{'TRAIN.RESUME': 'true'})), env=DETERMINISTIC_ENV))
    assert 'resumed from' in resumed.stdout
    a, b = final_weights(whole), final_weights(split)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


def test_gpu_speed_settings_train(sample, tmp_path):
    """What the GPU speed yaml turns on (torch.compile aside, slow to start):
    channels_last + bf16 autocast, fused Adam, the step as a CUDA graph, pinned
    persistent prefetching workers, image-grouped order and reduced-size decode."""
    out_dir = str(tmp_path)
    result = check_ok(run_script('train.py', train_args(sample, out_dir, **{
        'TRAIN.END_EPOCH': 1, 'CHANNELS_LAST': 'true', 'AMP.ENABLED': 'true',
        'AMP.DTYPE': 'bfloat16', 'SPEED.FUSED_OPTIMIZER': 'true', 'SPEED.CUDA_GRAPHS': 'true',
        'WORKERS': 2,
        'LOADER.PERSISTENT_WORKERS': 'true', 'LOADER.PREFETCH_FACTOR': 4,
        'DATASET.GROUP_BY_IMAGE': 'true', 'DATASET.REDUCED_DECODE': 'true'})))
    assert 'channels_last' in result.stdout
    assert all_finite(final_weights(out_dir))


def test_device_batches_on_the_gpu_equal_the_cpu(sample):
    from conftest import coco_config
    from hsrnet.data import build_dataset
    from hsrnet.data.batching import DeviceBatcher
    from hsrnet.data.loaders import collate_samples
    cfg = coco_config(sample)
    ds = build_dataset(cfg, 'val2017', False)
    raw = collate_samples([ds.load_sample(i) for i in range(min(len(ds), 6))])
    cpu = DeviceBatcher(cfg, torch.device('cpu'))(raw)
    gpu = DeviceBatcher(cfg, torch.device('cuda'))(raw)
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(gpu[1].cpu(), cpu[1], rtol=0, atol=1e-6)
    assert torch.equal(gpu[2].cpu(), cpu[2])


def test_gpu_decode_and_warp_close_to_opencv(sample):
    from conftest import coco_config
    from hsrnet.data import build_dataset
    from hsrnet.data.batching import DeviceBatcher
    from hsrnet.data.gpu_decode import available
    from hsrnet.data.loaders import collate_samples
    if not available():
        pytest.skip('LOADER.GPU_DECODE needs torchvision (not installed)')
    cfg = coco_config(sample)
    ds = build_dataset(cfg, 'val2017', False)
    n = min(len(ds), 6)
    encoded = collate_samples([ds.load_sample(i, encoded=True) for i in range(n)])
    plain = collate_samples([ds.load_sample(i, encoded=False) for i in range(n)])
    batcher = DeviceBatcher(cfg, torch.device('cuda'))
    gpu, cpu = batcher(encoded), batcher(plain)
    # inputs are normalised: one grey level is 1 / (255 * std) ~ 0.017
    grey = (gpu[0] - cpu[0]).abs().mean().item() * 255 * 0.226
    assert grey < 1.0
    assert torch.equal(gpu[1], cpu[1]) and torch.equal(gpu[2], cpu[2])


def test_training_iteration_makes_no_host_sync(sample):
    """What train.py's loop does on the GPU per iteration (the batch made on the
    device from pinned crops, the training step with bf16 autocast, channels_last
    and fused Adam, the accuracy, the window's sums) under CUDA's sync debug mode
    'error': a copy that waits for the device, an .item(), any host sync raises.
    The first iteration (cuDNN's tuning, the optimizer's state, the codec's table
    copied once) runs before it."""
    from tiny_model import tiny_config
    from hsrnet.head.accuracy import accuracy_on_device
    from hsrnet.engine.loops import TrainingWindow, training_step
    from hsrnet.head.loss import JointsMSELoss
    from hsrnet.data import build_dataset
    from hsrnet.data.batching import DeviceBatcher
    from hsrnet.engine.optim import get_optimizer
    from hsrnet.data.loaders import collate_samples
    from hsrnet.engine.precision import Precision
    from hsrnet import models
    device = torch.device('cuda')
    cfg = tiny_config('DATASET.ROOT', sample, 'AMP.ENABLED', 'true', 'AMP.DTYPE', 'bfloat16',
                      'CHANNELS_LAST', 'true', 'SPEED.FUSED_OPTIMIZER', 'true')
    ds = build_dataset(cfg, 'train2017', True)
    raws = [collate_samples([ds.load_sample(j % len(ds)) for j in range(k, k + 4)])
            for k in (0, 4, 8)]
    # crops pinned beforehand, as the loader's pin_memory thread does
    raws = [(crops.pin_memory(), meta) for crops, meta in raws]
    precision = Precision(cfg, device)
    model = precision.prepare_model(models.build_model(cfg, is_train=True).to(device))
    optimizer = get_optimizer(cfg, model)
    criterion = JointsMSELoss(True)
    batcher = DeviceBatcher(cfg, device, precision.memory_format)
    window = TrainingWindow(device)

    def iteration(i, raw):
        input, target, weight, _ = batcher(raw)
        output, loss = training_step(model, criterion, optimizer, precision, input, target,
                                     weight)
        window.add(i, loss, input.size(0), *accuracy_on_device(output, target))

    model.train()
    iteration(0, raws[0])
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        for i, raw in enumerate(raws[1:], 1):
            iteration(i, raw)
    finally:
        torch.cuda.set_sync_debug_mode('default')
    loss_sum, count, _, _ = window.read(0, 2)   # the one read, at PRINT_FREQ
    assert count == 12 and loss_sum > 0


def test_cuda_graphs_train_as_the_eager_step(sample, tmp_path):
    """SPEED.CUDA_GRAPHS replays the captured step: 2 epochs (the lr drops after the
    first, the last batch of each epoch is smaller and runs eagerly) end with the
    eager run's weights and BatchNorm counts, uninterrupted and resumed alike."""
    from hsrnet.data import build_dataset
    from tiny_model import tiny_config
    persons = len(build_dataset(tiny_config('DATASET.ROOT', sample), 'train2017', True))
    batch = next(b for b in range(persons // 2, 1, -1) if persons % b)   # a smaller last batch
    opts = dict(DETERMINISTIC, **{'TRAIN.BATCH_SIZE': batch, 'TRAIN.LR_STEP': '[1]',
                                  'SPEED.FUSED_OPTIMIZER': 'true', 'AMP.ENABLED': 'true',
                                  'AMP.DTYPE': 'bfloat16'})
    graphs = dict(opts, **{'SPEED.CUDA_GRAPHS': 'true'})
    eager, whole, split = (str(tmp_path / name) for name in ('eager', 'whole', 'split'))
    check_ok(run_script('train.py', train_args(sample, eager, **opts), env=DETERMINISTIC_ENV))
    graphed = check_ok(run_script('train.py', train_args(sample, whole, **graphs),
                                  env=DETERMINISTIC_ENV))
    assert 'SPEED.CUDA_GRAPHS: training step captured for batches of {}x'.format(batch) \
        in graphed.stdout
    # no autograd node outlives its step onto another stream (capture, eager last batch)
    assert 'AccumulateGrad' not in graphed.stdout + graphed.stderr
    check_ok(run_script('train.py', train_args(sample, split, **dict(
        graphs, **{'TRAIN.END_EPOCH': 1})), env=DETERMINISTIC_ENV))
    check_ok(run_script('train.py', train_args(sample, split, **dict(
        graphs, **{'TRAIN.RESUME': 'true'})), env=DETERMINISTIC_ENV))
    reference = final_weights(eager)
    for out_dir in (whole, split):
        weights = final_weights(out_dir)
        assert set(weights) == set(reference)
        for name, value in reference.items():
            if value.is_floating_point():
                torch.testing.assert_close(weights[name], value, rtol=1e-3, atol=1e-5,
                                           msg=name)
            else:   # num_batches_tracked: the warm-up before the capture left no trace
                assert torch.equal(weights[name], value), name


@pytest.mark.parametrize('dtype, tolerance', [('float32', 1e-3), ('bfloat16', 2e-2)])
def test_compiled_and_graphed_step_trains_as_the_eager_one(dtype, tolerance):
    """SPEED.COMPILE inside SPEED.CUDA_GRAPHS (the GPU speed yaml's step) against the
    eager step from the same weights and batches: the losses of 20 steps agree within
    0.1% (float32) or 2% (bf16 autocast) relative, and the weights end finite.
    float32 is compared with TF32 off: cuDNN's TF32 convolutions (on by default)
    round to 1e-3, as much as the tolerance, and Adam's first steps (about lr x the
    gradient's sign) carry such differences on (measured on an H200 with TF32: 0.7%)."""
    import functools
    from tiny_model import tiny_config
    from hsrnet.engine.loops import make_training_step, training_step
    from hsrnet.head.loss import JointsMSELoss
    from hsrnet.engine.optim import get_optimizer
    from hsrnet.engine.precision import Precision
    from hsrnet import models
    device = torch.device('cuda')
    cfg = tiny_config('AMP.ENABLED', str(dtype == 'bfloat16').lower(), 'AMP.DTYPE', 'bfloat16',
                      'CHANNELS_LAST', 'true', 'SPEED.FUSED_OPTIMIZER', 'true',
                      'SPEED.CUDA_GRAPHS', 'true', 'SPEED.COMPILE', 'true')
    precision = Precision(cfg, device)
    generator = torch.Generator().manual_seed(0)
    width, height = cfg.MODEL.IMAGE_SIZE
    hw, hh = cfg.MODEL.EXTRA.HEATMAP_SIZE
    joints = cfg.MODEL.NUM_JOINTS
    batches = [(precision.prepare_input(torch.randn(8, 3, height, width, generator=generator),
                                        device),
                torch.rand(8, joints, hh, hw, generator=generator).to(device),
                (torch.rand(8, joints, 1, generator=generator) > 0.2).float().to(device))
               for _ in range(4)]

    def train(fast):
        torch.manual_seed(0)
        model = precision.prepare_model(models.build_model(cfg, is_train=False).to(device))
        optimizer = get_optimizer(cfg, model)
        criterion = JointsMSELoss(True)
        if fast:
            model.compile()
            step = make_training_step(cfg, model, criterion, optimizer, precision)
        else:
            step = functools.partial(training_step, model, criterion, optimizer, precision)
        model.train()
        losses = [float(step(*batches[i % len(batches)])[1].detach()) for i in range(20)]
        return losses, model, step

    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    if dtype == 'float32':
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        eager, _, _ = train(False)
        fast, model, step = train(True)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
        torch._dynamo.reset()
    assert step.graph is not None   # captured, compiled kernels and all
    relative = [abs(a - b) / abs(b) for a, b in zip(fast, eager)]
    assert max(relative) < tolerance, (max(relative), fast, eager)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
