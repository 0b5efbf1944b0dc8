"""The scripts' fast data path (data.batching): uint8 crops from the workers,
normalisation and Gaussian targets of the whole batch on the device, equal to the
public item; the opt-in decode savings (reduced-size JPEG decode, image-grouped
training order)."""
import itertools
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from conftest import ROOT, coco_config, generate_sample
from hsrnet.data import build_dataset
from hsrnet.head.codec import HeatmapCodec
from hsrnet.data.joints_dataset import jpeg_width
from hsrnet.data.batching import DeviceBatcher, SampleView, collate_samples
from hsrnet.utils.distributed import DistContext
from hsrnet.data.loaders import EpochSeededLoader
from hsrnet.utils.transforms import get_affine_transform


@pytest.fixture(scope='module')
def sample(tmp_path_factory):
    return generate_sample(tmp_path_factory.mktemp('sample'), 2, 5, 2)


@pytest.mark.parametrize('image_size,heatmap_size,sigma', [
    ((192, 256), (48, 64), 2), ((96, 128), (24, 32), 2), ((288, 384), (72, 96), 3),
    ((48, 64), (12, 16), 1.5)])
def test_batch_encoder_equals_the_numpy_encoder(image_size, heatmap_size, sigma):
    rng = np.random.default_rng(7)
    n, j = 24, 17
    w, h = image_size
    joints = np.zeros((n, j, 3))
    # all over the crop and well beyond, plus the cases right at the heatmap border
    joints[..., 0] = rng.uniform(-0.4 * w, 1.4 * w, (n, j))
    joints[..., 1] = rng.uniform(-0.4 * h, 1.4 * h, (n, j))
    stride = np.array(image_size) / np.array(heatmap_size)
    radius = sigma * 3
    edges = np.array([[-radius - 1, 5], [-radius - 1.01, 5], [-radius - 0.99, 5],
                      [heatmap_size[0] + radius - 1, 5], [heatmap_size[0] + radius, 5],
                      [5, heatmap_size[1] + radius], [5, heatmap_size[1] + radius - 0.51],
                      [-0.5, -0.5], [-0.49, -0.51], [heatmap_size[0] - 0.5, 3]])
    joints[0, :len(edges), :2] = edges * stride
    joints[1, :len(edges), :2] = (edges + rng.uniform(-0.6, 0.6, edges.shape)) * stride
    vis = np.repeat(rng.integers(0, 2, (n, j, 1)), 3, axis=2).astype(np.float64)
    vis[:2] = 1
    codec = HeatmapCodec(image_size, heatmap_size, sigma)
    target, weight = codec.encode_torch(torch.from_numpy(joints), torch.from_numpy(vis))
    assert target.dtype == weight.dtype == torch.float32
    batch_target, batch_weight = codec.encode(joints, vis)   # numpy, also batch-wise
    np.testing.assert_array_equal(weight.numpy(), batch_weight)
    np.testing.assert_array_equal(target.numpy(), batch_target)   # bit for bit
    for i in range(n):   # and the per-sample numpy of the dataset items
        ref_target, ref_weight = codec.encode(joints[i], vis[i])
        np.testing.assert_allclose(target[i].numpy(), ref_target, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(weight[i].numpy(), ref_weight)
    assert 0 < weight[0, :len(edges)].sum() < len(edges)   # border cases on both sides


def loader_batches(ds, fast, batch_size=4, seed=5):
    """Two epochs of batches of the public item or of the fast path, same seed."""
    view = SampleView(ds) if fast else ds
    loader = EpochSeededLoader(view, batch_size, 0, True, seed, DistContext(), False)
    if fast:
        loader.loader.collate_fn = collate_samples
    batches = []
    for epoch in range(2):
        loader.set_epoch(epoch)
        batches += list(loader)
    return batches


@pytest.mark.parametrize('color_rgb', ['false', 'true'])
def test_device_batches_equal_the_public_items(sample, color_rgb):
    cfg = coco_config(sample, 'DATASET.COLOR_RGB', color_rgb, 'MODEL.IMAGE_SIZE', '[96, 128]',
                      'MODEL.EXTRA.HEATMAP_SIZE', '[24, 32]')
    ds = build_dataset(cfg, 'train2017', True)
    batcher = DeviceBatcher(cfg, torch.device('cpu'))
    plain, fast = loader_batches(ds, False), loader_batches(ds, True)
    assert len(plain) == len(fast) > 2
    for (input, target, weight, meta), raw in zip(plain, fast):
        assert raw[0].dtype == torch.uint8 and raw[0].shape[1:] == (128, 96, 3)
        f_input, f_target, f_weight, f_meta = batcher(raw)
        assert torch.equal(f_input, input)                # bit for bit
        assert torch.equal(f_target, target)
        assert torch.equal(f_weight, weight)
        assert f_meta.keys() == meta.keys()
        for key in ('joints', 'joints_vis', 'center', 'scale', 'rotation', 'score'):
            assert torch.equal(f_meta[key], meta[key]), key
        assert f_meta['image'] == meta['image']


def test_workers_send_four_times_fewer_bytes(sample):
    cfg = coco_config(sample)
    ds = build_dataset(cfg, 'val2017', False)
    input, target, weight, _ = ds[0]
    crop = ds.load_sample(0)['crop']
    old = input.nbytes + target.nbytes + weight.nbytes
    assert old >= 5 * crop.nbytes


def test_channels_last_input_has_the_same_values(sample):
    cfg = coco_config(sample)
    ds = build_dataset(cfg, 'val2017', False)
    raw = collate_samples([ds.load_sample(i) for i in range(3)])
    plain = DeviceBatcher(cfg, torch.device('cpu'), targets=False)(raw)[0]
    last = DeviceBatcher(cfg, torch.device('cpu'), torch.channels_last, targets=False)(raw)[0]
    assert last.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(plain, last)


def test_jpeg_width_reads_the_frame_header(tmp_path):
    image = np.zeros((37, 53, 3), np.uint8)
    path = str(tmp_path / 'a.jpg')
    cv2.imwrite(path, image)
    assert jpeg_width(path) == 53
    cv2.imwrite(str(tmp_path / 'a.png'), image)
    assert jpeg_width(str(tmp_path / 'a.png')) is None
    assert jpeg_width(str(tmp_path / 'missing.jpg')) is None


def test_reduced_decode_gives_close_crops_and_the_same_joints(sample):
    """The reduced decode's crop is the crop of the image shrunk by the factor (up to
    the JPEG's DCT scaling: under 1.5 grey levels); the full-size decode differs from
    both by the aliasing of bilinear sampling, which is why this is opt-in."""
    opts = ['MODEL.IMAGE_SIZE', '[48, 64]', 'MODEL.EXTRA.HEATMAP_SIZE', '[12, 16]']
    full = build_dataset(coco_config(sample, *opts), 'train2017', True)
    reduced = build_dataset(coco_config(sample, *opts, 'DATASET.REDUCED_DECODE', 'true'),
                            'train2017', True)
    factors = []
    for i in range(len(full)):
        np.random.seed(i)
        a = full.load_sample(i)
        np.random.seed(i)
        b = reduced.load_sample(i)
        np.testing.assert_array_equal(a['joints'], b['joints'])
        f = reduced._decode_factor(b['image'])
        factors.append(f)
        if f == 1:
            assert np.array_equal(a['crop'], b['crop'])
            continue
        rec = full.db[i]
        image = cv2.imread(rec['image'])
        if b['rotation'] == 0 and a['center'][0] == rec['center'][0]:   # not flipped
            trans = get_affine_transform(b['center'], b['scale'], 0, (48, 64))
            small = cv2.resize(image, None, fx=1 / f, fy=1 / f, interpolation=cv2.INTER_AREA)
            warp = np.concatenate([trans[:, :2] * f, trans[:, :2] @ np.full((2, 1), (f - 1) / 2)
                                   + trans[:, 2:]], axis=1)
            ref = cv2.warpAffine(small, warp, (48, 64), flags=cv2.INTER_LINEAR)
            assert np.abs(ref.astype(float) - b['crop']).mean() < 1.5
        assert np.abs(a['crop'].astype(float) - b['crop']).mean() < 10
    assert max(factors) >= 2


class ScalarLog:
    """A TensorBoard writer stand-in that keeps what it is given."""

    def __init__(self):
        self.scalars = []

    def add_scalar(self, name, value, step):
        self.scalars.append((name, value, step))


def test_fast_path_training_gives_the_losses_of_the_item_path(sample):
    """Every opt-in off, CPU float32, same seed: the training losses of the fast path
    (train_one_epoch, device batches, loss read at PRINT_FREQ 1) are those of the
    loop before it (public items, loss.item() per iteration)."""
    from hsrnet import models
    from hsrnet.engine.loops import train_one_epoch
    from hsrnet.head.loss import JointsMSELoss
    from hsrnet.engine.optim import get_optimizer
    from hsrnet.utils.seeding import seed_everything

    cfg = coco_config(sample, 'MODEL.IMAGE_SIZE', '[48, 64]', 'MODEL.EXTRA.HEATMAP_SIZE',
                      '[12, 16]', 'MODEL.NAME', 'pose_hsrnet', 'MODEL.PRETRAINED', "''",
                      'MODEL.INIT_WEIGHTS', 'false', 'PRINT_FREQ', '1',
                      'DEBUG.DEBUG', 'false')
    ds = build_dataset(cfg, 'train2017', True)
    criterion = JointsMSELoss(True)

    def fresh():
        seed_everything(11)
        model = models.build_model(cfg, is_train=True)
        return model, get_optimizer(cfg, model)

    model, optimizer = fresh()
    before = []
    loader = EpochSeededLoader(ds, 4, 0, True, 5, DistContext(), False)
    for epoch in range(1):
        loader.set_epoch(epoch)
        model.train()
        for input, target, weight, _ in loader:
            loss = criterion(model(input), target, weight)
            before.append(loss.item())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    model, optimizer = fresh()
    log = ScalarLog()
    loader = EpochSeededLoader(ds, 4, 0, True, 5, DistContext(), False,
                               batcher=DeviceBatcher(cfg, torch.device('cpu')))
    for epoch in range(1):
        loader.set_epoch(epoch)
        train_one_epoch(cfg, loader, model, criterion, optimizer, epoch, '', writer=log)
    after = [value for name, value, _ in log.scalars if name == 'train_loss']
    assert len(after) == len(before) >= 3
    assert after == before


class FakeGrouped:
    """image_groups() of 9 images holding 1..3 persons each (18 persons)."""

    def __init__(self):
        sizes = [1, 2, 3] * 3
        starts = np.cumsum([0] + sizes[:-1])
        self.groups = [np.arange(s, s + n) for s, n in zip(starts, sizes)]

    def image_groups(self):
        return self.groups

    def __len__(self):
        return 18


def test_grouped_sampler_is_a_function_of_seed_epoch_and_rank():
    from hsrnet.data.samplers import ImageGroupedSampler
    ds = FakeGrouped()
    image_of = {int(i): g for g, idx in enumerate(ds.groups) for i in idx}

    def order(seed, epoch, rank=0, world=1):
        sampler = ImageGroupedSampler(ds, seed, DistContext(rank=rank, world_size=world))
        sampler.set_epoch(epoch)
        return list(sampler)

    one = order(3, 0)
    assert sorted(one) == list(range(18)) and one == order(3, 0)      # resumable
    assert one != order(3, 1) and one != order(4, 0)
    runs = [image_of[i] for i in one]
    assert len([k for k, _ in itertools.groupby(runs)]) == 9   # each image's persons together
    assert len(set(runs[:6])) >= 3                               # a batch mixes images
    shards = [order(3, 0, rank, 4) for rank in range(4)]   # padded to 4 x 5
    assert [len(s) for s in shards] == [5, 5, 5, 5]
    assert set().union(*shards) == set(range(18))
    assert sum(shards, [])[:18] == one                           # contiguous slices


def test_scripts_do_not_import_torchvision():
    code = ('import sys; sys.path[:0] = [{lib!r}, {scripts!r}]; import train, valid; '
            'import hsrnet.data.batching, hsrnet.engine.loops; print("torchvision" in sys.modules)'
            ).format(lib=os.path.join(ROOT, 'lib'), scripts=os.path.join(ROOT, 'pose_estimation'))
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=120, check=True, cwd=ROOT).stdout.split()
    assert out[-1] == 'False'


def test_grid_sample_crops_match_opencv(sample):
    """The GPU path's crop (data.gpu_decode.warp_batch; here on the CPU) with the
    CPU path's matrices, against cv2.warpAffine: under one grey level on average."""
    from hsrnet.data.gpu_decode import warp_batch
    cfg = coco_config(sample, 'MODEL.IMAGE_SIZE', '[96, 128]', 'MODEL.EXTRA.HEATMAP_SIZE',
                      '[24, 32]')
    ds = build_dataset(cfg, 'train2017', True)
    images, warps, expected = [], [], []
    for i in range(min(len(ds), 8)):
        np.random.seed(i)
        encoded = ds.load_sample(i, encoded=True)
        np.random.seed(i)
        plain = ds.load_sample(i, encoded=False)
        np.testing.assert_array_equal(encoded['joints'], plain['joints'])
        image = cv2.imdecode(encoded['jpeg'], cv2.IMREAD_COLOR)
        images.append(torch.from_numpy(image).permute(2, 0, 1).contiguous())
        warps.append(encoded['warp'])
        expected.append(plain['crop'])
    crops = warp_batch(images, np.stack(warps), (96, 128)).numpy()
    diff = np.abs(crops.astype(float) - np.stack(expected)).mean(axis=(1, 2, 3))
    assert crops.shape == (len(images), 128, 96, 3) and diff.max() < 1.0, diff


def test_jpeg_bytes_become_tensors_without_a_warning():
    """LOADER.GPU_DECODE's file bytes are read-only arrays: turned into tensors for
    nvJPEG without a copy and without torch's not-writable warning (a fresh process,
    as torch shows that warning once per process; -W error makes it fail)."""
    code = ('import sys; sys.path.insert(0, {lib!r}); import numpy as np; '
            'from hsrnet.data.gpu_decode import jpeg_tensors; '
            'a = np.frombuffer(bytes(range(8)), np.uint8); t = jpeg_tensors([a])[0]; '
            'print(t.data_ptr() == a.ctypes.data, t.tolist() == list(range(8)))'
            ).format(lib=os.path.join(ROOT, 'lib'))
    done = subprocess.run([sys.executable, '-W', 'error', '-c', code], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ['True', 'True']


def test_a_script_that_leaves_workers_running_still_exits(sample):
    """A loop left early with persistent workers, the loader alive at exit: the
    workers ignore SIGTERM, so multiprocessing's exit would wait on them forever
    without utils.preemption.kill_workers_at_exit."""
    code = '\n'.join([
        'import sys; sys.path.insert(0, {lib!r}); sys.path.insert(0, {tests!r})',
        'from conftest import coco_config',
        'from hsrnet.data import build_dataset',
        'from hsrnet.utils.distributed import DistContext',
        'from hsrnet.data.loaders import EpochSeededLoader',
        'ds = build_dataset(coco_config({root!r}), "train2017", True)',
        'loader = EpochSeededLoader(ds, 2, 2, True, 0, DistContext(), False,',
        '                           persistent_workers=True)',
        'loader.set_epoch(0)',
        'batches = iter(loader)',
        'next(batches)',
        'print("one batch")']).format(lib=os.path.join(ROOT, 'lib'),
                                      tests=os.path.join(ROOT, 'tests'), root=sample)
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'one batch' in done.stdout
    assert 'Traceback' not in done.stderr
