"""Debug pictures (DEBUG.*): batches with joints drawn, heatmap grids, skeletons.

Everything is written with OpenCV, so images are BGR uint8 here.
"""
import logging
import math
import os

import cv2
import numpy as np
import torch

from hsrnet.utils.keypoints import COCO_KEYPOINTS

logger = logging.getLogger(__name__)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

COCO_SKELETON = COCO_KEYPOINTS.skeleton
MIN_TILE_HEIGHT = 48
GT_COLOR = (0, 255, 0)
LEFT_COLOR = (0, 230, 255)
RIGHT_COLOR = (255, 230, 0)
MIDDLE_COLOR = (255, 255, 255)
PRED_COLOR = (0, 0, 255)


def _numpy(x):
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def to_display_images(batch, color_rgb=False):
    """Undo the ImageNet normalisation: (N, 3, H, W) network input -> (N, H, W, 3)
    BGR uint8. The mean/std were applied in the input's own channel order."""
    images = _numpy(batch).transpose(0, 2, 3, 1) * IMAGENET_STD + IMAGENET_MEAN
    images = np.clip(images * 255.0, 0, 255).astype(np.uint8)
    return images[..., ::-1].copy() if color_rgb else np.ascontiguousarray(images)


def image_grid(images, ncols=8, padding=2):
    """Tile (N, H, W, 3) images into one picture, `ncols` per row."""
    num, height, width = images.shape[:3]
    ncols = min(ncols, num)
    nrows = math.ceil(num / ncols)
    cell_h, cell_w = height + padding, width + padding
    grid = np.zeros((nrows * cell_h + padding, ncols * cell_w + padding, 3), dtype=np.uint8)
    for k in range(num):
        top, left = padding + (k // ncols) * cell_h, padding + (k % ncols) * cell_w
        grid[top:top + height, left:left + width] = images[k]
    return grid


def draw_joints(image, joints, visible, color, radius=2):
    """Draw the (J, 2) `joints` whose `visible` flag is set, in place."""
    for x, y in np.asarray(joints)[np.asarray(visible) > 0]:
        cv2.circle(image, (int(round(x)), int(round(y))), radius, color, -1)
    return image


def _limb_color(a, b):
    """COCO joints 1, 3, 5, ... are the person's left, 2, 4, 6, ... the right."""
    if a and b and a % 2 == b % 2:
        return LEFT_COLOR if a % 2 else RIGHT_COLOR
    return MIDDLE_COLOR


def draw_skeleton(image, keypoints, threshold=0.2, skeleton=COCO_SKELETON):
    """Draw one person's (J, 3) [x, y, score] keypoints and limbs, in place:
    left limbs yellow, right limbs cyan, others white, all outlined in black so
    that they show on any background."""
    keypoints = np.asarray(keypoints)
    shown = keypoints[:, 2] > threshold
    limbs = [(a, b) for a, b in skeleton
             if a < len(keypoints) and b < len(keypoints) and shown[a] and shown[b]]
    for width, outline in ((5, True), (2, False)):
        for a, b in limbs:
            color = (0, 0, 0) if outline else _limb_color(a, b)
            cv2.line(image, tuple(int(v) for v in keypoints[a, :2]),
                     tuple(int(v) for v in keypoints[b, :2]), color, width, cv2.LINE_AA)
    draw_joints(image, keypoints[:, :2], shown, (0, 0, 0), radius=4)
    return draw_joints(image, keypoints[:, :2], shown, MIDDLE_COLOR, radius=2)


def track_color(track_id):
    """A bright BGR colour per track id (golden-angle hues), stable across frames."""
    hue = int((track_id * 137.508) % 180)
    hsv = np.uint8([[[hue, 200, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def draw_poses(image, keypoints, boxes=None, threshold=0.2, track_ids=None, labels=None,
               skeleton=COCO_SKELETON):
    """Draw several persons in place: per person its (J, 3) keypoints as a skeleton
    (joints with score <= `threshold` and their limbs left out), then, when `boxes`
    is given, its [x, y, w, h] box (coloured by track id when `track_ids` is given,
    else grey) and a text label above it (`labels`, else the track id)."""
    for person in keypoints:
        draw_skeleton(image, person, threshold, skeleton)
    for index in range(len(keypoints) if boxes is not None else 0):
        x, y, w, h = (int(round(v)) for v in boxes[index][:4])
        color = track_color(track_ids[index]) if track_ids is not None else (160, 160, 160)
        cv2.rectangle(image, (x, y), (x + w, y + h), color, 2)
        text = labels[index] if labels is not None else (
            'id {}'.format(track_ids[index]) if track_ids is not None else None)
        if text:
            origin = (x + 2, max(y - 4, 12))
            for thickness, ink in ((3, (0, 0, 0)), (1, color)):
                cv2.putText(image, str(text), origin, cv2.FONT_HERSHEY_SIMPLEX, 0.45, ink,
                            thickness, cv2.LINE_AA)
    return image


def save_batch_image_with_joints(batch_image, batch_joints, batch_joints_vis, file_name,
                                 color, color_rgb=False):
    """Write the batch as a grid with joints (input pixels) drawn on each crop."""
    images = to_display_images(batch_image, color_rgb)
    joints = _numpy(batch_joints)[..., :2]
    visible = _numpy(batch_joints_vis)[..., 0]
    for image, image_joints, image_visible in zip(images, joints, visible):
        draw_joints(image, image_joints, image_visible, color)
    write_image(file_name, image_grid(images))


def save_batch_heatmaps(batch_image, batch_heatmaps, file_name, color_rgb=False,
                        max_rows=8):
    """One row per sample: the crop, then each joint's heatmap over it (JET colours),
    each scaled to its own maximum."""
    heatmaps = _numpy(batch_heatmaps)[:max_rows]
    num, num_joints, hm_h, hm_w = heatmaps.shape
    crops = to_display_images(batch_image[:num], color_rgb)
    crops = np.stack([cv2.resize(c, (hm_w, hm_h)) for c in crops])
    peak = heatmaps.reshape(num, num_joints, -1).max(axis=2)[..., None, None]
    scaled = np.clip(heatmaps / np.maximum(peak, 1e-6), 0, 1)
    colored = cv2.applyColorMap((scaled * 255).astype(np.uint8).reshape(-1, hm_w),
                                cv2.COLORMAP_JET).reshape(num, num_joints, hm_h, hm_w, 3)
    overlay = (0.7 * colored + 0.3 * crops[:, None]).astype(np.uint8)
    tiles = np.concatenate([crops[:, None], overlay], axis=1)   # (N, 1 + J, h, w, 3)
    zoom = max(1, -(-MIN_TILE_HEIGHT // hm_h))    # small heatmaps: whole-pixel upscaling
    tiles = tiles.repeat(zoom, axis=2).repeat(zoom, axis=3)
    write_image(file_name, image_grid(tiles.reshape(-1, hm_h * zoom, hm_w * zoom, 3),
                                      ncols=num_joints + 1, padding=1))


def write_image(path, image):
    """cv2.imwrite, with an OSError naming the file when it writes nothing
    (OpenCV only returns False, or raises cv2.error)."""
    try:
        written = cv2.imwrite(path, image)
    except cv2.error as e:
        raise OSError('cannot write image {}: {}'.format(path, str(e).strip().splitlines()[-1]))
    if not written:
        raise OSError('cannot write image {} (full disk, no permission, or an unknown '
                      'extension?)'.format(path))


def save_debug_images(config, input, meta, target, joints_pred, output, prefix):
    """The DEBUG.SAVE_* pictures of one batch, as '<prefix>_gt.jpg' etc.

    `joints_pred` are predicted joints in input pixels, (N, J, 2).
    """
    debug = config.DEBUG
    if not debug.DEBUG:
        return
    try:
        _save_debug_images(debug, config.DATASET.COLOR_RGB, input, meta, target,
                           joints_pred, output, prefix)
    except OSError as e:   # a debug picture never stops a run: one warning per folder
        folder = os.path.dirname(prefix) or '.'
        if folder not in _WARNED:
            _WARNED.add(folder)
            logger.warning('debug pictures are not saved: %s', e)


_WARNED = set()


def _save_debug_images(debug, rgb, input, meta, target, joints_pred, output, prefix):
    os.makedirs(os.path.dirname(prefix) or '.', exist_ok=True)
    if debug.SAVE_BATCH_IMAGES_GT:
        save_batch_image_with_joints(input, meta['joints'], meta['joints_vis'],
                                     prefix + '_gt.jpg', GT_COLOR, rgb)
    if debug.SAVE_BATCH_IMAGES_PRED:
        save_batch_image_with_joints(input, joints_pred, meta['joints_vis'],
                                     prefix + '_pred.jpg', PRED_COLOR, rgb)
    if debug.SAVE_HEATMAPS_GT:
        save_batch_heatmaps(input, target, prefix + '_hm_gt.jpg', rgb)
    if debug.SAVE_HEATMAPS_PRED:
        save_batch_heatmaps(input, output, prefix + '_hm_pred.jpg', rgb)
