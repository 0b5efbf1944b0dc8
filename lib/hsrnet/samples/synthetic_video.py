"""A short synthetic video of moving "paper doll" people, for offline tests of
the video path and the tracker (tools/make_sample_data.py --video FILE.mp4).

The figures are the sample dataset's people (same body model, drawing and
colour code), each with a fixed build and colours, doing jumping jacks (arms
and legs swing in and out, each figure at its own pace) while walking to and
fro along its own lane, over a fixed textured background with a little noise
per frame. Ground truth per frame and figure (joints, box) is returned and,
next to the video, written as COCO results-style boxes (image_id = frame index,
track_id = figure), so the pose step can be run on known boxes. The same
arguments give the same frames (the mp4 encoder's bytes may differ between
OpenCV builds; the frames drawn do not).
"""
import json
import os
import secrets

import cv2
import numpy as np

from hsrnet.samples.figures import Body, PersonPainter, Placement, background

DEFAULT_SECONDS = 3.0
DEFAULT_FPS = 10
DEFAULT_SIZE = (384, 288)      # (width, height)
DEFAULT_FIGURES = 3
FOURCC = 'mp4v'


class JumpingBody(Body):
    """A Body whose arms and legs follow `phase` (radians) instead of random
    draws; everything else (build, head) comes from `shape_seed`, so the same
    figure is drawn in every frame."""

    def __init__(self, shape_seed, phase):
        self.phase = phase
        super().__init__(np.random.default_rng(shape_seed))

    def _open(self):
        return 0.5 - 0.5 * np.cos(self.phase)     # 0 closed .. 1 open

    def _arm(self, rng, side, sign):
        pts = self.points
        raise_ = 0.25 + 2.0 * self._open()
        bend = -0.3 * self._open()
        upper, fore = 0.165, 0.15
        shoulder = pts[side + '_shoulder']
        elbow = shoulder + upper * _unit(raise_) * [sign, 1]
        fore_dir = _unit(raise_ + bend) * [sign, 1]
        wrist = elbow + fore * fore_dir
        hand_r = 0.04
        pts[side + '_elbow'], pts[side + '_wrist'] = elbow, wrist
        pts[side + '_hand'] = wrist + 0.8 * hand_r * fore_dir
        self.sizes.update({side + '_upper_arm': (0.075, 0.063),
                           side + '_forearm': (0.063, 0.053), side + '_hand': hand_r})

    def _leg(self, rng, side, sign):
        pts = self.points
        spread = 0.05 + 0.35 * self._open()
        knee = pts[side + '_hip'] + 0.24 * _unit(spread) * [sign, 1]
        ankle = knee + 0.24 * _unit(spread - 0.05) * [sign, 1]
        pts[side + '_knee'], pts[side + '_ankle'] = knee, ankle
        pts[side + '_foot'] = ankle + np.array([sign * 0.035, 0.015])
        self.sizes.update({side + '_thigh': (0.11, 0.088), side + '_shin': (0.085, 0.066),
                           side + '_foot': (0.055, 0.028)})


def _unit(angle):
    return np.array([np.sin(angle), np.cos(angle)])


def _figures(rng, count, width, height):
    """Per figure: build seed, colour seed, height, lane centre, walk amplitude
    and period, jump period and phase."""
    lanes = (np.arange(count) + 0.5) * width / count
    figures = []
    for lane in lanes:
        figures.append({
            'shape_seed': int(rng.integers(2 ** 31)),
            'paint_seed': int(rng.integers(2 ** 31)),
            'height_px': float(height * rng.uniform(0.42, 0.52)),
            'lane': float(lane),
            'walk': float(width / count * rng.uniform(0.1, 0.18)),
            'walk_period': float(rng.uniform(2.0, 3.5)),
            'jump_period': float(rng.uniform(0.8, 1.4)),
            'phase': float(rng.uniform(0, 2 * np.pi)),
            'pelvis_y': float(height * rng.uniform(0.55, 0.62)),
        })
    return figures


def render_frame(background, figures, t, rng):
    """One frame at time `t` (s): the figures drawn over `background`, plus a
    little noise from `rng`. Returns (image, joints (F, 17, 2), boxes (F, 4) xywh)."""
    image = background.copy()
    labels = np.zeros(image.shape[:2], np.uint16)
    joints, boxes = [], []
    for index, fig in enumerate(figures):
        body = JumpingBody(fig['shape_seed'], 2 * np.pi * t / fig['jump_period'] + fig['phase'])
        x = fig['lane'] + fig['walk'] * np.sin(2 * np.pi * t / fig['walk_period'] + fig['phase'])
        place = Placement(fig['height_px'], 0.0, (x, fig['pelvis_y']))
        mask = PersonPainter(image, labels, index,
                             np.random.default_rng(fig['paint_seed'])).draw(body, place)
        rows, cols = np.nonzero(mask)
        joints.append(place(body.joints()))
        boxes.append([cols.min(), rows.min(), cols.max() - cols.min() + 1,
                      rows.max() - rows.min() + 1])
    noisy = image.astype(np.float32) + 2.0 * rng.standard_normal(image.shape, dtype=np.float32)
    image = np.clip(noisy, 0, 255).astype(np.uint8)
    return image, np.array(joints), np.array(boxes, float)


def make_frames(seed=0, seconds=DEFAULT_SECONDS, fps=DEFAULT_FPS, size=DEFAULT_SIZE,
                figures=DEFAULT_FIGURES):
    """Yield (frame index, image BGR uint8, joints (F, 17, 2), boxes (F, 4) xywh)."""
    for name, value in (('seed', seed), ('fps', fps), ('figures', figures)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < (
                0 if name == 'seed' else 1):
            raise ValueError('{} must be a {} integer, got {!r}'.format(
                name, 'non-negative' if name == 'seed' else 'positive', value))
    if not seconds > 0:
        raise ValueError('seconds must be positive, got {!r}'.format(seconds))
    width, height = size
    rng = np.random.default_rng([seed, 7])
    backdrop = background(rng, width, height)
    people = _figures(rng, figures, width, height)
    for frame in range(max(1, int(round(seconds * fps)))):
        image, joints, boxes = render_frame(backdrop, people, frame / fps,
                                            np.random.default_rng([seed, 7, frame]))
        yield frame, image, joints, boxes


def write_video(path, seed=0, seconds=DEFAULT_SECONDS, fps=DEFAULT_FPS, size=DEFAULT_SIZE,
                figures=DEFAULT_FIGURES):
    """Write the video to `path` (mp4) and, beside it, `<path stem>_boxes.json`: the
    figures' boxes per frame in COCO results format (image_id = frame index,
    category_id 1, bbox, score 1, track_id = figure, keypoints of the ground truth).
    Both are written to temporary names first, then renamed. Returns
    {'frames', 'figures', 'joints' (T, F, 17, 2), 'boxes' (T, F, 4), 'boxes_file'}."""
    path = os.fspath(path)
    stem = os.path.splitext(path)[0]
    boxes_file = stem + '_boxes.json'
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    token = secrets.token_hex(4)
    tmp_video = os.path.join(directory, '.{}.{}.tmp.mp4'.format(os.path.basename(stem), token))
    tmp_boxes = os.path.join(directory, '.{}.{}.tmp.json'.format(os.path.basename(stem), token))
    writer = cv2.VideoWriter(tmp_video, cv2.VideoWriter_fourcc(*FOURCC), float(fps),
                             tuple(size))
    all_joints, all_boxes, records = [], [], []
    try:
        if not writer.isOpened():
            raise OSError('{}: OpenCV cannot write an mp4 video there'.format(path))
        for frame, image, joints, boxes in make_frames(seed, seconds, fps, size, figures):
            writer.write(image)
            all_joints.append(joints)
            all_boxes.append(boxes)
            for figure, (box, kps) in enumerate(zip(boxes, joints)):
                keypoints = np.concatenate([kps, np.full((len(kps), 1), 2.0)], 1)
                records.append({'image_id': frame, 'category_id': 1,
                                'bbox': [round(float(v), 2) for v in box], 'score': 1.0,
                                'track_id': figure,
                                'keypoints': [round(float(v), 2) for v in keypoints.ravel()]})
        writer.release()
        with open(tmp_boxes, 'w') as f:
            json.dump(records, f)
        os.replace(tmp_video, path)
        os.replace(tmp_boxes, boxes_file)
    finally:
        writer.release()
        for tmp in (tmp_video, tmp_boxes):
            if os.path.exists(tmp):
                os.remove(tmp)
    return {'frames': len(all_joints), 'figures': figures, 'joints': np.array(all_joints),
            'boxes': np.array(all_boxes), 'boxes_file': boxes_file}
