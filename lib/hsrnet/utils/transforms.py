"""Geometry of top-down crops: the box -> crop affine, point mapping and flips.

Boxes are given as a centre (x, y) in pixels and a scale (w, h) in units of
PIXEL_STD pixels, the original's convention. The crop affine is the similarity
that sends the box centre to the middle of the output and rotates by `rot`
degrees; its zoom is fixed by the box width alone (output_w / (scale_w * 200)),
exactly as in the original, where boxes already have the output's aspect ratio.
Crops are cut with OpenCV's bilinear warpAffine (`crop_image`).

With `udp` (MODEL.UDP) the functions use UDP's unbiased geometry instead (Huang
et al., "The Devil is in the Details", CVPR 2020): pixels are points at whole
coordinates and sizes are measured in pixel intervals, so an output of w x h
pixels spans (w - 1, h - 1). The box's width and height map onto those spans
(each axis its own zoom) and its centre onto ((w - 1) / 2, (h - 1) / 2); the
same rule with the heatmap's size maps heatmap coordinates back to the image.

All functions broadcast over leading dimensions, so a whole batch of boxes or
joints is handled without Python loops.
"""
from array import array

import cv2
import numpy as np

PIXEL_STD = 200.0
# ImageNet statistics in the order the original applied them: to the channels
# as read by OpenCV (BGR), unless DATASET.COLOR_RGB is set.
PIXEL_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
PIXEL_STD_DEV = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _pixel_tables():
    """For each channel, the normalised float32 value of each uint8 value (256, 1),
    computed with the same float32 operations, in the same order, as the
    original's ToTensor + Normalize: bit for bit what they give."""
    values = np.repeat(np.arange(256, dtype=np.float32)[None], 3, axis=0)
    values /= 255
    values -= PIXEL_MEAN[:, None]
    values /= PIXEL_STD_DEV[:, None]
    return [np.ascontiguousarray(channel[:, None]) for channel in values]   # (256, 1)


PIXEL_TABLES = _pixel_tables()


def _as_scale_wh(scale):
    """A scalar scale means a square box; otherwise the last axis is (w, h)."""
    scale = np.asarray(scale, dtype=np.float64)
    if scale.ndim == 0:
        scale = np.stack([scale, scale])
    return scale


def _third_point(a, b):
    """The point that makes a right angle at b with a (b + (a - b) turned by 90
    degrees), in float32 as the original computed it."""
    d = a - b
    return b + np.stack([-d[..., 1], d[..., 0]], axis=-1)


def _solve_affine(src, dst):
    """2x3 matrices mapping the three points src (..., 3, 2) onto dst (..., 3, 2).

    One pair: cv2.getAffineTransform itself, whose matrix warpAffine's
    fixed-point sampling needs bit for bit to round every pixel as the original
    (a solve that differs by 1e-15 changes ~3% of crops by one grey level).
    A batch: the same system solved at once in float64 (agrees to ~1e-15).
    """
    if src.ndim == 2:
        return cv2.getAffineTransform(src, dst)
    src = src.astype(np.float64)
    dst = dst.astype(np.float64)
    ones = np.ones(src.shape[:-1] + (1,))
    # [x y 1] rows @ M^T = dst rows
    return np.swapaxes(np.linalg.solve(np.concatenate([src, ones], -1), dst), -1, -2)


def get_affine_transform(center, scale, rot, output_size, shift=(0, 0), inv=0, udp=False):
    """The 2x3 matrix mapping the box (center, scale * 200, rot degrees) onto
    `output_size` = (width, height), or the inverse mapping when `inv` is true;
    with `udp` UDP's (`udp_affine`).

    Built as the original does, from three float32 point pairs (the centres,
    a point half a box width above them, turned by `rot`, and a third point at
    a right angle), so that crops round exactly as the original's.
    center (..., 2), scale scalar or (..., 2), rot scalar or (...,): the result has
    shape (..., 2, 3). `shift` moves the box centre by shift * box size.
    """
    if udp:
        return udp_affine(center, scale, rot, output_size, shift, inv)
    one = np.ndim(center) == 1 and np.ndim(rot) == 0 and np.ndim(shift) == 1 \
        and np.ndim(scale) <= 1
    src, dst = (_point_pairs_one if one else _point_pairs)(center, scale, rot, output_size,
                                                           shift)
    return _solve_affine(dst, src) if inv else _solve_affine(src, dst)


def udp_affine(center, scale, rot, output_size, shift=(0, 0), inv=False):
    """UDP's crop affine (float64, (..., 2, 3)): out = diag(z) R (p - c) + m with
    z = (output_size - 1) / box size per axis, m = (output_size - 1) / 2 and R the
    rotation of get_affine_transform; with `inv` its inverse p = R^T diag(1/z)
    (out - m) + c. Same arguments and broadcasting as get_affine_transform."""
    box_wh = _as_scale_wh(scale) * PIXEL_STD
    center = np.asarray(center, dtype=np.float64) + box_wh * np.asarray(shift, dtype=np.float64)
    span = np.array([output_size[0], output_size[1]], dtype=np.float64) - 1
    zoom = span / box_wh
    rot_rad = np.deg2rad(np.asarray(rot, dtype=np.float64))
    cos, sin = np.cos(rot_rad), np.sin(rot_rad)
    rotate = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)
    if inv:
        linear = np.swapaxes(rotate, -1, -2) / zoom[..., None, :]
        offset = center - (linear @ (span / 2)[:, None])[..., 0]
    else:
        linear = rotate * zoom[..., :, None]
        offset = span / 2 - (linear @ center[..., None])[..., 0]
    return np.concatenate([linear, offset[..., None]], axis=-1)


def _point_pairs(center, scale, rot, output_size, shift):
    """The three float32 point pairs (src, dst), each (..., 3, 2), of
    get_affine_transform."""
    center = np.asarray(center, dtype=np.float64)
    box_wh = _as_scale_wh(scale) * PIXEL_STD
    rot_rad = np.deg2rad(np.asarray(rot, dtype=np.float64))
    out_w, out_h = float(output_size[0]), float(output_size[1])
    batch_shape = np.broadcast_shapes(center.shape[:-1], box_wh.shape[:-1], rot_rad.shape)

    src_center = center + box_wh * np.asarray(shift, dtype=np.float64)
    half_w = -0.5 * box_wh[..., 0]
    # (0, -w/2) turned by rot
    src_dir = np.stack([-half_w * np.sin(rot_rad), half_w * np.cos(rot_rad)], axis=-1)
    src = np.empty(batch_shape + (3, 2), dtype=np.float32)
    src[..., 0, :] = src_center
    src[..., 1, :] = src_center + src_dir
    src[..., 2, :] = _third_point(src[..., 0, :], src[..., 1, :])
    dst = np.empty(batch_shape + (3, 2), dtype=np.float32)
    dst[..., 0, :] = [out_w * 0.5, out_h * 0.5]
    dst[..., 1, :] = [out_w * 0.5, out_h * 0.5 - out_w * 0.5]
    dst[..., 2, :] = _third_point(dst[..., 0, :], dst[..., 1, :])
    return src, dst


def _point_pairs_one(center, scale, rot, output_size, shift):
    """get_affine_transform's three float32 point pairs for one box, in python
    floats: the same numbers as the array code (float64 steps rounded to float32
    where it stores them; float32 sums of float32 values are float64 sums rounded
    once, which is exact), at a fifth of its cost per training sample."""
    scale = np.ravel(scale)
    box_w = float(scale[0]) * PIXEL_STD
    box_h = float(scale[-1]) * PIXEL_STD
    rot_rad = np.deg2rad(np.float64(rot))   # numpy's sin and cos, as the array code
    cx = float(center[0]) + box_w * float(shift[0])
    cy = float(center[1]) + box_h * float(shift[1])
    half_w = -0.5 * box_w
    out_w, out_h = float(output_size[0]), float(output_size[1])
    a0, a1, b0, b1, p0, p1, q0, q1 = array('f', [
        cx, cy, cx + -half_w * float(np.sin(rot_rad)), cy + half_w * float(np.cos(rot_rad)),
        out_w * 0.5, out_h * 0.5, out_w * 0.5, out_h * 0.5 - out_w * 0.5])
    d0, d1, e0, e1 = array('f', [a0 - b0, a1 - b1, p0 - q0, p1 - q1])
    third = array('f', [b0 - d1, b1 + d0, q0 - e1, q1 + e0])
    src = np.array([[a0, a1], [b0, b1], third[:2]], dtype=np.float32)
    dst = np.array([[p0, p1], [q0, q1], third[2:]], dtype=np.float32)
    return src, dst


def affine_transform_points(points, trans):
    """Apply 2x3 matrices `trans` (..., 2, 3) to points (..., K, 2); batch dims broadcast."""
    points = np.asarray(points, dtype=np.float64)
    trans = np.asarray(trans, dtype=np.float64)
    return np.einsum('...kj,...ij->...ki', points, trans[..., :2]) + trans[..., None, :, 2]


def affine_transform(pt, t):
    """Apply the 2x3 matrix `t` to one point (x, y); returns a length-2 array."""
    return affine_transform_points(np.asarray(pt, dtype=np.float64)[None, :2], t)[0]


def transform_preds(coords, center, scale, output_size, udp=False):
    """Map heatmap coordinates (..., J, >=2) of crops with the given centres and
    scales back to image coordinates (rotation 0); extra columns are kept. With
    `udp` through UDP's inverse affine (heatmap spans output_size - 1)."""
    coords = np.asarray(coords, dtype=np.float64)
    inverse = get_affine_transform(center, scale, 0, output_size, inv=1, udp=udp)
    target_coords = coords.copy()
    target_coords[..., :2] = affine_transform_points(coords[..., :2], inverse)
    return target_coords


def flip_permutation(num_joints, matched_parts):
    """Joint order after a horizontal flip: each (left, right) pair swapped."""
    perm = np.arange(num_joints)
    pairs = np.asarray(matched_parts, dtype=np.int64).reshape(-1, 2)
    perm[pairs[:, 0]], perm[pairs[:, 1]] = pairs[:, 1], pairs[:, 0]
    return perm


def flip_back(output_flipped, matched_parts):
    """Heatmaps (N, J, H, W) of a flipped crop -> heatmaps of the plain crop:
    mirror the columns and swap left/right joints. numpy in, numpy out;
    torch in, torch out (same device)."""
    if output_flipped.ndim != 4:
        raise ValueError('flip_back expects heatmaps of shape (batch, joints, height, width), '
                         'got shape {}'.format(tuple(output_flipped.shape)))
    perm = flip_permutation(output_flipped.shape[1], matched_parts)
    if isinstance(output_flipped, np.ndarray):
        return output_flipped[:, perm, :, ::-1].copy()
    import torch
    index = torch.as_tensor(perm, device=output_flipped.device)
    return output_flipped.index_select(1, index).flip(-1)


def fliplr_joints(joints, joints_vis, width, matched_parts):
    """Mirror joints (J, >=2) of an image `width` pixels wide (x -> width - x - 1),
    swap left/right joints; invisible joints are zeroed as in the original."""
    perm = flip_permutation(len(joints), matched_parts)
    joints = np.array(joints, dtype=np.float64)[perm]
    joints_vis = np.array(joints_vis)[perm]
    joints[:, 0] = width - joints[:, 0] - 1
    return joints * joints_vis, joints_vis


def crop_image(image, center, scale, rotation, image_size, flip=False, udp=False):
    """Cut the box (center, scale, rotation) of `image` (H, W, C) into a crop of
    `image_size` = (width, height) with bilinear sampling. With `flip` the image
    is mirrored first (x -> W - 1 - x, the centre given in mirrored coordinates):
    the mirror is folded into the warp instead of copying the image; `udp`: UDP's
    affine. Returns (crop, trans), trans the 2x3 affine from (mirrored) image to crop."""
    trans = get_affine_transform(center, scale, rotation, image_size, udp=udp)
    warp = trans
    if flip:
        mirror = np.array([[-1.0, 0.0, image.shape[1] - 1], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        warp = trans @ mirror
    crop = cv2.warpAffine(image, warp, (int(image_size[0]), int(image_size[1])),
                          flags=cv2.INTER_LINEAR)
    return crop, trans


def box_to_center_scale(box, aspect_ratio, enlarge=1.25):
    """Boxes (..., 4) [x, y, w, h] -> centres (..., 2) and scales (..., 2) in units
    of 200 px, with the short side grown to `aspect_ratio` = w / h and x1.25."""
    box = np.asarray(box, dtype=np.float64)
    x, y, w, h = np.moveaxis(box, -1, 0)
    center = np.stack([x + w * 0.5, y + h * 0.5], axis=-1)
    w, h = np.maximum(w, h * aspect_ratio), np.maximum(h, w / aspect_ratio)
    scale = np.stack([w, h], axis=-1) / PIXEL_STD * enlarge
    return center, scale


def normalize_pixels(crop):
    """uint8 crop (H, W, 3) -> float32 array (3, H, W): /255, then ImageNet
    mean/std per channel (what the original did with ToTensor + Normalize)."""
    # A table lookup per channel plane, written in place (no torch thread pool to
    # contend with the DataLoader's workers): 7x faster than the arithmetic on a
    # 256x192 crop.
    pixels = np.empty((3,) + crop.shape[:2], np.float32)
    for plane, table, out in zip(cv2.split(crop), PIXEL_TABLES, pixels):
        cv2.LUT(plane, table, dst=out)
    return pixels


def crop_input(image, center, scale, image_size, color_rgb=False, rotation=0.0, flip=False,
               udp=False):
    """The network input of one person box: the crop (`crop_image`, UDP's with
    `udp`), in RGB order when `color_rgb` (DATASET.COLOR_RGB), normalised as
    float32 (3, H, W). Returns (input, trans). What the datasets feed train.py and
    valid.py, and what the inference API (apps.estimator) feeds the network: one
    function for both."""
    crop, trans = crop_image(image, center, scale, rotation, image_size, flip, udp)
    if color_rgb:
        crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
    return normalize_pixels(crop), trans
