"""The heatmap codec (head.codec) and the original's numerics it must keep:
targets, decoding (argmax, quarter offset, DARK), flip-back, crops, NMS ties."""
import os

import cv2
import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, coco_config
from hsrnet.head.codec import HeatmapCodec, argmax_coords, dark_offset
from hsrnet.nms import nms as nms_module
from hsrnet.utils.transforms import crop_image

COCO_PAIRS = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]]


def reference_target(joints, vis, image_size, heatmap_size, sigma):
    """PROTOCOL.md's targets, one joint at a time."""
    width, height = heatmap_size
    stride = np.asarray(image_size) / np.asarray(heatmap_size)
    radius = sigma * 3
    target = np.zeros((len(joints), height, width), np.float32)
    weight = np.asarray(vis, np.float32).copy()
    for j, (x, y) in enumerate(joints):
        mu_x, mu_y = int(x / stride[0] + 0.5), int(y / stride[1] + 0.5)
        if (mu_x - radius >= width or mu_y - radius >= height
                or mu_x + radius + 1 < 0 or mu_y + radius + 1 < 0):
            weight[j] = 0
            continue
        if weight[j] <= 0.5:
            continue
        for v in range(height):
            for u in range(width):
                if abs(u - mu_x) <= radius and abs(v - mu_y) <= radius:
                    target[j, v, u] = np.exp(-((u - mu_x) ** 2 + (v - mu_y) ** 2)
                                             / (2 * sigma ** 2))
    return target, weight[:, None]


def test_encode_equals_the_per_joint_protocol_near_and_beyond_the_border():
    rng = np.random.default_rng(0)
    codec = HeatmapCodec((192, 256), (48, 64), 2)
    joints = rng.uniform(-40, 240, (3, 17, 2))      # many near or past the border
    joints[0, :4] = [[0, 0], [191, 255], [-8.1, 30], [215.9, 300]]
    vis = rng.integers(0, 2, (3, 17)).astype(np.float64)
    target, weight = codec.encode(joints, vis)       # a batch at once
    assert target.shape == (3, 17, 64, 48) and weight.shape == (3, 17, 1)
    for n in range(3):
        ref_t, ref_w = reference_target(joints[n], vis[n], (192, 256), (48, 64), 2)
        np.testing.assert_allclose(target[n], ref_t, atol=1e-6)
        np.testing.assert_array_equal(weight[n], ref_w)
    assert 0 < weight.sum() < vis.sum()   # some visible joints fell outside


def gaussian_heatmaps(centres, size, sigma):
    """Heatmaps (1, J, h, w) of Gaussians at non-integer `centres` (J, 2)."""
    width, height = size
    xs, ys = np.arange(width), np.arange(height)
    maps = [np.exp(-((xs[None] - cx) ** 2 + (ys[:, None] - cy) ** 2) / (2 * sigma ** 2))
            for cx, cy in centres]
    return np.asarray(maps, np.float32)[None]


def test_dark_locates_subpixel_peaks_better_than_the_quarter_offset():
    rng = np.random.default_rng(1)
    centres = rng.uniform(5, 40, (200, 2))
    heatmaps = gaussian_heatmaps(centres, (48, 64), 2.0)
    quarter = HeatmapCodec((192, 256), (48, 64), 2, post_process=True)
    dark = HeatmapCodec((192, 256), (48, 64), 2, dark=True)
    err_quarter = np.linalg.norm(quarter.decode_heatmap_coords(heatmaps)[0][0] - centres, axis=1)
    err_dark = np.linalg.norm(dark.decode_heatmap_coords(heatmaps)[0][0] - centres, axis=1)
    assert err_dark.mean() < 0.05 < 0.15 < err_quarter.mean()
    assert err_dark.max() < 0.15
    # on the border DARK leaves the argmax alone, and flat maps get no offset
    coords, _ = argmax_coords(np.zeros((1, 2, 16, 12), np.float32))
    assert not dark_offset(np.zeros((1, 2, 16, 12)), coords, 2.0).any()


def test_decode_maps_back_to_the_image_and_quarter_offset_follows_the_protocol():
    heatmaps = np.zeros((1, 2, 64, 48), np.float32)
    heatmaps[0, 0, 10, 20] = 1.0
    heatmaps[0, 0, 10, 21] = 0.5      # right neighbour higher: +0.25 in x
    heatmaps[0, 0, 11, 20] = 0.2      # lower neighbour higher: +0.25 in y
    heatmaps[0, 1, 0, 5] = 1.0        # on the border: no offset
    codec = HeatmapCodec((192, 256), (48, 64), 2)
    center, scale = np.array([[100.0, 200.0]]), np.array([[0.96, 1.28]])   # 192x256 px box
    preds, maxvals = codec.decode(heatmaps, center, scale)
    # heatmap pixel (x, y) -> image: (x * 4 + 100 - 96, y * 4 + 200 - 128)
    np.testing.assert_allclose(preds[0, 0], [20.25 * 4 + 4, 10.25 * 4 + 72], atol=1e-4)
    np.testing.assert_allclose(preds[0, 1], [5 * 4 + 4, 0 + 72], atol=1e-4)
    np.testing.assert_array_equal(maxvals[0, :, 0], [1.0, 1.0])
    plain = HeatmapCodec((192, 256), (48, 64), 2, post_process=False)
    np.testing.assert_allclose(plain.decode(heatmaps, center, scale)[0][0, 0], [84, 112],
                               atol=1e-4)


def test_flip_back_with_shift_numpy_and_torch_agree():
    rng = np.random.default_rng(2)
    heatmaps = rng.normal(size=(2, 17, 8, 6)).astype(np.float32)
    out = HeatmapCodec.flip_back(heatmaps, COCO_PAIRS, shift=True)
    # joint 1 comes from joint 2 mirrored, then everything moves one pixel right
    np.testing.assert_array_equal(out[:, 1, :, 1:], heatmaps[:, 2, :, ::-1][:, :, :-1])
    np.testing.assert_array_equal(out[:, 1, :, 0], heatmaps[:, 2, :, 5])
    torch_out = HeatmapCodec.flip_back(torch.from_numpy(heatmaps), COCO_PAIRS, shift=True)
    np.testing.assert_array_equal(torch_out.numpy(), out)


def original_crop(image, center, scale, rot, size):
    """The original's crop: three float32 points through cv2.getAffineTransform."""
    src_w = scale[0] * 200
    rad = np.pi * rot / 180
    src_dir = [0.5 * src_w * np.sin(rad), -0.5 * src_w * np.cos(rad)]
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0], src[1] = center, np.asarray(center) + src_dir
    dst[0], dst[1] = [size[0] * 0.5, size[1] * 0.5], [size[0] * 0.5, size[1] * 0.5 - size[0] * 0.5]
    for pts in (src, dst):
        d = pts[0] - pts[1]
        pts[2] = pts[1] + np.array([-d[1], d[0]], np.float32)
    trans = cv2.getAffineTransform(src, dst)
    return cv2.warpAffine(image, trans, (int(size[0]), int(size[1])), flags=cv2.INTER_LINEAR)


def test_crops_equal_the_originals_on_real_coco_images():
    root = os.path.join(SHARED_DATA, 'coco_sample')
    if not os.path.isdir(root):
        pytest.skip('shared sample data not found: ' + root)
    from hsrnet import data as dataset
    cfg = coco_config(root)
    ds = dataset.build_dataset(cfg, 'val2017', False)
    rng = np.random.default_rng(3)
    compared = 0
    for rec in ds.db:
        image = cv2.imread(rec['image'], cv2.IMREAD_COLOR)
        for rot in (0.0, float(rng.uniform(-60, 60))):
            scale = rec['scale'] * rng.uniform(0.75, 1.25)
            crop, _ = crop_image(image, rec['center'], scale, rot, (192, 256))
            np.testing.assert_array_equal(
                crop, original_crop(image, rec['center'], scale, rot, (192, 256)))
            compared += 1
    assert compared == 2 * len(ds.db) > 20


@pytest.mark.parametrize('backend', ['numpy', 'cython'])
def test_oks_nms_orders_ties_as_the_original(backend):
    if backend == 'cython' and nms_module.compiled_kernels is None:
        pytest.skip('the Cython NMS is not built')
    base = np.tile([[100.0, 100.0, 1.0]], (17, 1))
    db = [{'keypoints': base + [[0.5 * k, 0, 0]], 'score': 0.9, 'area': 1e4} for k in range(3)]
    # argsort()[::-1]: of three tied near-duplicates, the last one is kept
    assert nms_module.oks_nms(db, 0.9, backend=backend) == [2]
    db[0]['score'] = 0.95
    assert nms_module.oks_nms(db, 0.9, backend=backend) == [0]
    np.testing.assert_array_equal(nms_module._descending([0.5, 0.9, 0.5, 0.9]), [3, 1, 2, 0])
