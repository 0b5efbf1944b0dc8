import cv2
import numpy as np
import pytest
import torch

from hsrnet.utils.transforms import (affine_transform, affine_transform_points, flip_back,
                              fliplr_joints, get_affine_transform, transform_preds)

COCO_PAIRS = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]]


def three_point_affine(center, scale, rot, output_size, shift):
    """The convention spelled out: the box centre goes to the middle of the
    output, the point half a box width 'above' it (turned by rot) to the top
    middle, and a third point at a right angle keeps the map a similarity."""
    box_w = scale[0] * 200
    out_w, out_h = output_size
    t = np.deg2rad(rot)
    up = np.array([0.0, -box_w * 0.5])
    up_rot = np.array([up[0] * np.cos(t) - up[1] * np.sin(t),
                       up[0] * np.sin(t) + up[1] * np.cos(t)])
    src0 = np.asarray(center) + np.asarray(scale) * 200 * np.asarray(shift)
    dst0 = np.array([out_w * 0.5, out_h * 0.5])
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0], src[1] = src0, src0 + up_rot
    dst[0], dst[1] = dst0, dst0 + np.array([0.0, -out_w * 0.5])
    for pts in (src, dst):   # the third point from the float32 rows, as the original
        d = pts[0] - pts[1]
        pts[2] = pts[1] + np.array([-d[1], d[0]], np.float32)
    return cv2.getAffineTransform(src, dst)


def test_affine_matches_three_point_construction_and_inverse():
    rng = np.random.default_rng(0)
    for _ in range(20):
        center = rng.uniform(0, 600, 2)
        scale = rng.uniform(0.2, 3, 2)
        rot = rng.uniform(-80, 80)
        shift = rng.uniform(-0.2, 0.2, 2)
        size = (192, 256)
        trans = get_affine_transform(center, scale, rot, size, shift=shift)
        ref = three_point_affine(center, scale, rot, size, shift)
        # the original's construction bit for bit (what warpAffine's rounding needs)
        np.testing.assert_array_equal(trans, ref)
        inv = get_affine_transform(center, scale, rot, size, shift=shift, inv=1)
        # solved from the same float32 points, so it inverts to float32 precision
        np.testing.assert_allclose(inv, cv2.invertAffineTransform(trans), rtol=1e-5, atol=1e-4)


def test_box_fills_output_and_scalar_scale_is_square():
    center, scale = np.array([300.0, 200.0]), np.array([0.96, 1.28])  # 192 x 256 px box
    trans = get_affine_transform(center, scale, 0, (48, 64))
    corners = np.array([[300 - 96, 200 - 128], [300 + 96, 200 + 128]])
    np.testing.assert_allclose(affine_transform_points(corners, trans), [[0, 0], [48, 64]],
                               atol=1e-9)
    np.testing.assert_allclose(get_affine_transform(center, 1.5, 10, (256, 256)),
                               get_affine_transform(center, [1.5, 1.5], 10, (256, 256)))


def test_batched_transforms_match_single():
    rng = np.random.default_rng(1)
    centers, scales, rots = rng.uniform(0, 500, (5, 2)), rng.uniform(0.5, 2, (5, 2)), \
        rng.uniform(-30, 30, 5)
    batched = get_affine_transform(centers, scales, rots, (192, 256))
    points = rng.uniform(0, 200, (5, 17, 2))
    mapped = affine_transform_points(points, batched)
    for i in range(5):
        single = get_affine_transform(centers[i], scales[i], rots[i], (192, 256))
        np.testing.assert_allclose(batched[i], single)
        np.testing.assert_allclose(mapped[i, 3], affine_transform(points[i, 3], single))


def test_transform_preds_inverts_the_crop_map():
    rng = np.random.default_rng(2)
    centers, scales = rng.uniform(100, 500, (4, 2)), rng.uniform(0.5, 2, (4, 2))
    image_pts = rng.uniform(0, 600, (4, 17, 2))
    heatmap_pts = affine_transform_points(
        image_pts, get_affine_transform(centers, scales, 0, (48, 64)))
    coords = np.concatenate([heatmap_pts, rng.uniform(size=(4, 17, 1))], axis=2)
    back = transform_preds(coords, centers, scales, (48, 64))
    np.testing.assert_allclose(back[..., :2], image_pts, atol=1e-9)
    np.testing.assert_array_equal(back[..., 2], coords[..., 2])


def test_flip_back_mirrors_and_swaps_numpy_and_torch():
    rng = np.random.default_rng(3)
    heatmaps = rng.normal(size=(2, 17, 8, 6)).astype(np.float32)
    flipped = flip_back(heatmaps, COCO_PAIRS)
    # left eye (1) of the result comes from the right eye (2), mirrored
    np.testing.assert_array_equal(flipped[:, 1, :, 0], heatmaps[:, 2, :, 5])
    np.testing.assert_array_equal(flipped[:, 0, :, 2], heatmaps[:, 0, :, 3])
    np.testing.assert_array_equal(flip_back(flipped, COCO_PAIRS), heatmaps)
    torch_flipped = flip_back(torch.from_numpy(heatmaps), COCO_PAIRS)
    assert isinstance(torch_flipped, torch.Tensor)
    np.testing.assert_array_equal(torch_flipped.numpy(), flipped)
    with pytest.raises(ValueError, match='batch, joints, height, width'):
        flip_back(heatmaps[0], COCO_PAIRS)


def test_fliplr_joints():
    joints = np.zeros((17, 3))
    joints[:, 0] = np.arange(17) * 10
    joints[:, 1] = 5
    vis = np.ones((17, 3))
    vis[4] = 0
    out, out_vis = fliplr_joints(joints, vis, 640, COCO_PAIRS)
    assert out[0, 0] == 640 - 0 - 1
    assert out[1, 0] == 640 - 20 - 1 and out[2, 0] == 640 - 10 - 1  # swapped pair
    assert out_vis[3, 0] == 0 and np.all(out[3] == 0)  # invisible right ear, now left
    assert out_vis[4, 0] == 1 and out[4, 0] == 640 - 30 - 1
    assert joints[1, 0] == 10  # input untouched


def test_one_box_points_are_the_array_codes_bit_for_bit():
    """get_affine_transform's python-float path for one box (each training sample)
    gives the float32 points of the array path exactly: warpAffine's rounding of
    every crop depends on the last bit of the matrix."""
    from hsrnet.utils.transforms import _point_pairs, _point_pairs_one
    rng = np.random.default_rng(0)
    for i in range(3000):
        center = rng.uniform(-50, 700, 2)
        scale = rng.uniform(0.05, 4, 2) if i % 2 else float(rng.uniform(0.05, 4))
        if i % 5 == 0:
            center, scale = center.astype(np.float32), np.float32(scale)
        rot = 0.0 if i % 4 == 0 else float(np.clip(rng.normal() * 40, -80, 80))
        size = [(192, 256), (288, 384), (48, 64), (100, 37)][i % 4]
        shift = (0, 0) if i % 7 else tuple(rng.uniform(-0.2, 0.2, 2))
        one = _point_pairs_one(center, scale, rot, size, shift)
        array = _point_pairs(center, scale, rot, size, shift)
        for a, b in zip(one, array):
            assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b), (i, a, b)


def test_normalize_pixels_is_the_originals_arithmetic_bit_for_bit():
    """The table lookup gives, for every uint8 value of every channel, what
    ToTensor (/255) + Normalize (- mean, / std) give in float32; a mirrored
    (non-contiguous) crop too."""
    from hsrnet.utils.transforms import PIXEL_MEAN, PIXEL_STD_DEV, normalize_pixels
    values = np.arange(256, dtype=np.uint8)
    crop = np.stack([values, np.roll(values, 85), np.roll(values, 170)], -1).reshape(16, 16, 3)
    for image in (crop, crop[:, ::-1]):
        expected = image.transpose(2, 0, 1).astype(np.float32)
        expected /= 255
        expected -= PIXEL_MEAN[:, None, None]
        expected /= PIXEL_STD_DEV[:, None, None]
        got = normalize_pixels(image)
        assert got.dtype == np.float32 and got.shape == (3, 16, 16) and got.flags.c_contiguous
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))
