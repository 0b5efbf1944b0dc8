"""UDP (MODEL.UDP, Huang et al. CVPR 2020): crops, targets, decoding and the flip
test in unbiased coordinates, and nothing changed with it off."""
import os

import cv2
import numpy as np
import pytest
import torch

from conftest import ROOT, coco_config, load_tool
from hsrnet.config import ConfigError, check_config, get_default_config, update_config_from_list
from hsrnet.data import build_dataset
from hsrnet.engine.heatmap_cache import load_heatmaps, save_heatmaps
from hsrnet.evaluation import PosePredictions
from hsrnet.head.codec import HeatmapCodec
from hsrnet.utils.keypoints import COCO_KEYPOINTS
from hsrnet.utils.seeding import seed_sample
from hsrnet.utils.transforms import (affine_transform_points, crop_input, get_affine_transform,
                                     normalize_pixels, transform_preds)

IMAGE, HEATMAP = (192, 256), (48, 64)
PAIRS = COCO_KEYPOINTS.flip_pairs


def homogeneous(m):
    return np.concatenate([m, np.broadcast_to([0.0, 0.0, 1.0], m.shape[:-2] + (1, 3))], -2)


def synthetic_people(n=64, joints=17, seed=0):
    """Boxes (centres, scales of the input's aspect ratio) and joints at random
    sub-pixel positions in their middle 70%, in image pixels."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(150, 450, (n, 2))
    scales = rng.uniform(0.6, 1.6, (n, 1)) * np.array([0.75, 1.0])
    rel = rng.uniform(0.15, 0.85, (n, joints, 2))
    return centers, scales, centers[:, None] + (rel - 0.5) * scales[:, None] * 200


def round_trip_error(udp, post_process, dark):
    """Image joints -> crop (the pipeline's affine) -> targets -> decoded joints:
    the distances in image pixels."""
    centers, scales, joints = synthetic_people()
    codec = HeatmapCodec(IMAGE, HEATMAP, 2, post_process=post_process, dark=dark, udp=udp)
    crop = affine_transform_points(joints, get_affine_transform(centers, scales, 0, IMAGE,
                                                                udp=udp))
    target, weight = codec.encode(crop, np.ones(joints.shape[:2]))
    assert (weight == 1).all()
    preds, _ = codec.decode(target, centers, scales)
    return np.linalg.norm(preds - joints, axis=-1)


def test_udp_affine_maps_the_box_onto_pixel_intervals():
    center, scale = np.array([310.3, 207.9]), np.array([0.96, 1.28])
    trans = get_affine_transform(center, scale, 0, IMAGE, udp=True)
    corners = center + np.array([[-0.5, -0.5], [0.5, 0.5], [0.0, 0.0]]) * scale * 200
    np.testing.assert_allclose(affine_transform_points(corners, trans),
                               [[0, 0], [191, 255], [95.5, 127.5]], atol=1e-9)
    for rot in (0.0, 25.0):
        to_input = get_affine_transform(center, scale, rot, IMAGE, udp=True)
        to_heatmap = get_affine_transform(center, scale, rot, HEATMAP, udp=True)
        # heatmap coordinates = input coordinates x (heatmap - 1) / (image - 1)
        factor = np.diag([47 / 191, 63 / 255, 1.0])
        np.testing.assert_allclose(homogeneous(to_heatmap), factor @ homogeneous(to_input),
                                   atol=1e-12)
        back = get_affine_transform(center, scale, rot, IMAGE, inv=1, udp=True)
        np.testing.assert_allclose(homogeneous(back) @ homogeneous(to_input), np.eye(3),
                                   atol=1e-12)
    # the rotation turns the same way as the original's affine (square box and crop:
    # one zoom, (w - 1) / w of the original's)
    plain = get_affine_transform(center, 1.2, 30, (256, 256))
    udp = get_affine_transform(center, 1.2, 30, (256, 256), udp=True)
    np.testing.assert_allclose(udp[:, :2], plain[:, :2] * 255 / 256, atol=1e-6)
    # a batch gives each box's matrix
    centers, scales, _ = synthetic_people(n=5)
    rots = np.linspace(-30, 30, 5)
    batch = get_affine_transform(centers, scales, rots, IMAGE, udp=True)
    for i in range(5):
        np.testing.assert_allclose(
            batch[i], get_affine_transform(centers[i], scales[i], rots[i], IMAGE, udp=True))


def test_round_trip_of_sub_pixel_joints():
    """UDP targets (Gaussians at the exact heatmap position) decoded by UDP: with
    DARK within 0.005 px of the joints (measured: mean 0.0004, max 0.0012 px, image
    pixels, boxes 120-320 px wide); the standard pipeline's targets (peaks rounded
    to whole heatmap pixels) decoded its way: mean 1.36, max 3.3 px."""
    udp_dark = round_trip_error(True, False, True)
    udp_quarter = round_trip_error(True, True, False)
    standard = round_trip_error(False, True, False)
    standard_dark = round_trip_error(False, False, True)
    print('round trip, image px (mean / max): UDP+DARK {:.5f} / {:.5f}, UDP+quarter {:.3f} / '
          '{:.3f}, standard+quarter {:.3f} / {:.3f}, standard+DARK {:.3f} / {:.3f}'.format(
              udp_dark.mean(), udp_dark.max(), udp_quarter.mean(), udp_quarter.max(),
              standard.mean(), standard.max(), standard_dark.mean(), standard_dark.max()))
    assert udp_dark.max() < 0.005
    assert 1.0 < standard.mean() < 1.7 and standard_dark.mean() > 1.0
    # with the same decoding as the standard pipeline, UDP's targets are still
    # about twice as precise (they carry the sub-pixel position)
    assert udp_quarter.mean() < 0.6 * standard.mean()


def test_encode_torch_equals_encode_with_udp():
    centers, scales, joints = synthetic_people(n=8)
    codec = HeatmapCodec(IMAGE, HEATMAP, 2, udp=True)
    crop = affine_transform_points(joints, get_affine_transform(centers, scales, 0, IMAGE,
                                                                udp=True))
    crop[0, :3] = [[-60.0, 10.0], [10.0, 300.0], [190.6, 254.7]]   # outside, near the edge
    vis = np.ones(joints.shape[:2])
    vis[1, 4] = 0
    target, weight = codec.encode(crop, vis)
    t_target, t_weight = codec.encode_torch(torch.from_numpy(crop), torch.from_numpy(vis))
    np.testing.assert_array_equal(t_weight.numpy(), weight)
    np.testing.assert_allclose(t_target.numpy(), target, rtol=1e-6, atol=1e-7)
    assert weight[0, 0, 0] == 0 and weight[0, 2, 0] == 1 and weight[1, 4, 0] == 0
    # peaks below 1: the Gaussian sits between pixels
    assert 0.5 < target[weight[..., 0] > 0].max(axis=(1, 2)).min() < 1.0


def test_flipped_targets_align_without_a_shift():
    """The targets of mirrored crops, flipped back, are the plain crops' targets
    with UDP; the standard pipeline's are off by 0.75 heatmap px (hence its shift)."""
    crop = np.random.default_rng(3).uniform([0, 0], [191, 255], (4, 17, 2))   # in the crop
    perm = np.arange(17)
    for a, b in PAIRS:
        perm[a], perm[b] = b, a
    for udp in (True, False):
        codec = HeatmapCodec(IMAGE, HEATMAP, 2, udp=udp)
        mirrored = crop[:, perm].copy()
        mirrored[..., 0] = IMAGE[0] - 1 - mirrored[..., 0]
        plain, _ = codec.encode(crop, np.ones(crop.shape[:2]))
        flipped, _ = codec.encode(mirrored, np.ones(crop.shape[:2]))
        back = codec.flip_back(flipped, PAIRS, shift=codec.flip_shift(True))
        if udp:
            np.testing.assert_allclose(back, plain, atol=1e-6)
        else:
            assert np.abs(codec.flip_back(flipped, PAIRS) - plain).max() > 0.1
    assert HeatmapCodec(IMAGE, HEATMAP, 2).flip_shift(True)
    assert not HeatmapCodec(IMAGE, HEATMAP, 2, udp=True).flip_shift(True)


def test_dataset_crops_and_targets_with_udp(sample):
    """Joints map through UDP's affine; the crop of a flipped sample is the mirror
    of the plain one (to OpenCV's rounding, 1 grey level) with UDP and not without."""
    mirror_error = {}
    for udp in ('true', 'false'):
        cfg = coco_config(sample, 'MODEL.UDP', udp, 'DATASET.SCALE_FACTOR', '0',
                          'DATASET.ROT_FACTOR', '0')
        train = build_dataset(cfg, cfg.DATASET.TRAIN_SET, True)
        val = build_dataset(cfg, cfg.DATASET.TEST_SET, False)
        assert train.codec.udp == val.udp == (udp == 'true')
        rec = val.db[0]
        got = val.load_sample(0)
        trans = get_affine_transform(rec['center'], rec['scale'], 0, IMAGE, udp=val.udp)
        np.testing.assert_allclose(got['joints'][:, :2],
                                   affine_transform_points(rec['joints_3d'][:, :2], trans))
        image = cv2.imread(rec['image'])
        np.testing.assert_array_equal(got['crop'], cv2.warpAffine(image, trans, IMAGE,
                                                                   flags=cv2.INTER_LINEAR))
        _, target, weight, _ = val[0]
        np.testing.assert_array_equal(target.numpy(),
                                      val.codec.encode(got['joints'], got['joints_vis'])[0])
        samples = {}
        for seed in range(20):   # one seed that flips and one that does not
            seed_sample(seed)
            item = train.load_sample(0)
            flip = item['center'][0] != train.db[0]['center'][0]
            samples.setdefault(flip, item)
        plain, flipped = samples[False], samples[True]
        diff = np.abs(flipped['crop'][:, ::-1].astype(int) - plain['crop'].astype(int))
        mirror_error[udp] = diff.max(), diff.mean()
        if udp == 'true':
            t_plain, _ = train.codec.encode(plain['joints'], plain['joints_vis'])
            t_flip, _ = train.codec.encode(flipped['joints'], flipped['joints_vis'])
            np.testing.assert_allclose(train.codec.flip_back(t_flip[None], PAIRS)[0], t_plain,
                                       atol=1e-6)
    print('flipped crop vs mirrored plain crop (max, mean grey levels):', mirror_error)
    assert mirror_error['true'][0] <= 1
    assert mirror_error['false'][1] > 5 * mirror_error['true'][1] + 1


def test_crop_input_with_udp():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    center, scale = np.array([200.0, 150.0]), np.array([0.9, 1.2])
    got, trans = crop_input(image, center, scale, IMAGE, udp=True)
    np.testing.assert_array_equal(trans, get_affine_transform(center, scale, 0, IMAGE, udp=True))
    np.testing.assert_array_equal(got, normalize_pixels(
        cv2.warpAffine(image, trans, IMAGE, flags=cv2.INTER_LINEAR)))


def test_udp_off_is_the_original_pipeline():
    """With MODEL.UDP off (the default, and the paper's yamls) the codec and the
    geometry are the protocol's, bit for bit: the original's three-point affine,
    targets peaking at int(joint / stride + 0.5) with value 1, the shifted flip test."""
    cfg = get_default_config()
    assert cfg.MODEL.UDP is False
    for name in os.listdir(os.path.join(ROOT, 'experiments', 'coco', 'hsrnet59')):
        text = open(os.path.join(ROOT, 'experiments', 'coco', 'hsrnet59', name)).read()
        assert 'UDP' not in text and 'HALF_BODY' not in text
    update_config_from_list(['MODEL.IMAGE_SIZE', '[192, 256]',
                             'MODEL.EXTRA.HEATMAP_SIZE', '[48, 64]'], cfg)
    codec = HeatmapCodec.from_config(cfg)
    assert not codec.udp and codec.flip_shift(True)
    np.testing.assert_array_equal(codec.stride, [4.0, 4.0])
    centers, scales, joints = synthetic_people(n=6)
    trans = get_affine_transform(centers[0], scales[0], 10, IMAGE)
    src = np.float32([centers[0], centers[0] + 100 * scales[0, 0] * np.array(
        [np.sin(np.pi / 18), -np.cos(np.pi / 18)]), [0, 0]])
    src[2] = src[1] + [src[1, 1] - src[0, 1], src[0, 0] - src[1, 0]]
    dst = np.float32([[96, 128], [96, 32], [0, 32]])
    np.testing.assert_array_equal(trans, cv2.getAffineTransform(src, dst))
    crop = np.random.default_rng(2).uniform([1, 1], [190, 254], (6, 17, 2))   # in the crop
    target, _ = codec.encode(crop, np.ones(crop.shape[:2]))
    mu = np.trunc(crop / 4 + 0.5)
    ys, xs = np.mgrid[0:64, 0:48].astype(np.float32)
    expected = np.exp(-(xs - mu[..., :1, None].astype(np.float32)) ** 2 / np.float32(8)) \
        * np.exp(-(ys - mu[..., 1:, None].astype(np.float32)) ** 2 / np.float32(8))
    window = (np.abs(xs - mu[..., :1, None]) <= 6) & (np.abs(ys - mu[..., 1:, None]) <= 6)
    np.testing.assert_allclose(target, np.where(window, expected, 0), rtol=1e-6, atol=1e-7)
    assert (target.max(axis=(2, 3)) == 1).all()
    np.testing.assert_array_equal(transform_preds(crop / 4, centers, scales, HEATMAP),
                                  transform_preds(crop / 4, centers, scales, HEATMAP, udp=False))


def test_check_config_udp_needs_two_heatmap_pixels():
    cfg = get_default_config()
    update_config_from_list(['MODEL.UDP', 'true', 'MODEL.IMAGE_SIZE', '[4, 4]',
                             'MODEL.EXTRA.HEATMAP_SIZE', '[1, 1]'], cfg)
    with pytest.raises(ConfigError, match='MODEL.UDP'):
        check_config(cfg)
    cfg.MODEL.UDP = False
    check_config(cfg)


def test_saved_heatmaps_remember_udp(tmp_path):
    """redecode refuses to decode a UDP run's heatmaps without UDP; files saved
    before the key existed count as UDP off."""
    redecode = load_tool('redecode')
    cfg = get_default_config()
    update_config_from_list(['MODEL.UDP', 'true', 'MODEL.NUM_JOINTS', '17',
                             'MODEL.IMAGE_SIZE', '[48, 64]', 'MODEL.EXTRA.HEATMAP_SIZE',
                             '[12, 16]'], cfg)
    predictions = PosePredictions(keypoints=np.zeros((2, 17, 3)), centers=np.ones((2, 2)),
                                  scales=np.ones((2, 2)), box_scores=np.ones(2),
                                  images=['a.jpg', 'b.jpg'])
    path = save_heatmaps(str(tmp_path / 'hm.npz'), np.zeros((2, 17, 16, 12), np.float32),
                         predictions, cfg)
    cache = load_heatmaps(path)
    assert cache.config['MODEL.UDP'] is True
    redecode.check_file_matches_config(cache, cfg)
    cfg.MODEL.UDP = False
    with pytest.raises(ConfigError, match='MODEL.UDP'):
        redecode.check_file_matches_config(cache, cfg)
    del cache.config['MODEL.UDP']
    redecode.check_file_matches_config(cache, cfg)


def test_oracle_ap_and_error_with_udp(sample, tmp_path):
    """The dataset's own targets decoded as if the network gave them (ground-truth
    boxes): AP 1 with UDP, and the joints come back closer than the standard
    pipeline's (both decoded with DARK)."""
    from torch.utils.data import DataLoader
    error = {}
    for udp in ('true', 'false'):
        cfg = coco_config(sample, 'MODEL.UDP', udp, 'TEST.DARK', 'true')
        ds = build_dataset(cfg, cfg.DATASET.TEST_SET, False)
        preds, boxes, paths, misses = [], [], [], []
        for _, target, _, meta in DataLoader(ds, batch_size=8):
            center, scale = meta['center'].numpy(), meta['scale'].numpy()
            coords, maxvals = ds.codec.decode(target.numpy(), center, scale)
            preds.append(np.concatenate([coords, maxvals], axis=2))
            boxes.append(np.concatenate([center, scale, np.prod(scale * 200, 1)[:, None],
                                         meta['score'].numpy()[:, None]], axis=1))
            paths.extend(meta['image'])
            for k, i in enumerate(meta['index'].tolist()):
                visible = ds.db[i]['joints_3d_vis'][:, 0] > 0
                misses.append(np.linalg.norm(coords[k] - ds.db[i]['joints_3d'][:, :2],
                                             axis=1)[visible])
        error[udp] = np.concatenate(misses).mean()
        name_values, _ = ds.evaluate(cfg, np.concatenate(preds), str(tmp_path / udp),
                                     np.concatenate(boxes), paths)
        assert name_values['AP'] == pytest.approx(1.0, abs=5e-4)
    print('oracle joint error, image px: UDP {:.4f}, standard {:.4f}'.format(
        error['true'], error['false']))
    assert error['true'] < 0.05 < error['false']
