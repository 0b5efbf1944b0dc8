"""A small synthetic multi-person keypoint dataset in COCO's exact format.

It is what `make demo` trains and validates on: easy enough that a network
trained from scratch on a CPU for minutes scores well, while every part of the
COCO pipeline (layout, annotation fields, visibility flags, ignored persons,
detector boxes) is exercised.

Each image (320x240 to 480x360, a few portrait) shows one to four articulated
"paper doll" people over a textured, low-saturation background (smooth noise,
stripes, blobs, thin lines), sometimes with small unannotated people far
behind and grey boxes in front. A person is a torso, tapered limbs with hands
and feet, a neck and a head with eyes, ears and nose, all outlined, in a
random pose (joint angles, foreshortening, head tilt and turn, body rotation),
size and place; people may overlap.

Left and right: every person faces the camera, so their left side lies to the
image-right of their body axis (as for a COCO person seen from the front), and
sides are colour-coded in hue families: left limbs, eye and ear warm (red
upper arm, orange forearm, magenta thigh, yellow shin, red eye, orange ear),
right ones cool (blue, cyan, green, mint; blue eye, cyan ear). Colour is the
cue without flip augmentation; the facing side is the one that survives a
horizontal flip (which swaps the labels but not the colours).

Annotations follow COCO: integer keypoints in COCO's order, v = 2 visible,
v = 1 labelled but hidden (under another person, another part of the same
person or a box), v = 0 outside the image, stored as (0, 0, 0). A person with
fewer than 3 labelled joints, and every small distant person, keeps its box
but no keypoints (num_keypoints 0), as in COCO, where loaders and COCOeval
ignore such people. bbox is the tight box of the drawn figure, area its pixel
count (like COCO's mask area), segmentation its outline polygons. The val
split also gets a detector-style box file: jittered boxes with high scores,
low-scored duplicates, a few missed people and low-scored false positives.
"""
import json
import logging
import os
from dataclasses import dataclass

import cv2
import numpy as np

from utils.keypoints import COCO_KEYPOINTS

logger = logging.getLogger(__name__)

KEYPOINT_NAMES = list(COCO_KEYPOINTS.names)
# COCO's skeleton, 1-based keypoint numbers.
SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13],
            [6, 7], [6, 8], [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3],
            [2, 4], [3, 5], [4, 6], [5, 7]]
CATEGORY = {'supercategory': 'person', 'id': 1, 'name': 'person',
            'keypoints': KEYPOINT_NAMES, 'skeleton': SKELETON}
DETECTION_FILE = 'COCO_val2017_detections_AP_H_56_person.json'
SPLITS = ('train2017', 'val2017')
# Image ids and annotation ids: disjoint ranges per split.
IMAGE_ID_BASE = {'train2017': 100000, 'val2017': 900000}
ANNOTATION_ID_BASE = {'train2017': 1000000, 'val2017': 9000000}
DEFAULT_TRAIN_IMAGES = 230
DEFAULT_VAL_IMAGES = 60
MIN_LABELLED_JOINTS = 3

# (width, height) of the images, drawn at random.
IMAGE_SIZES = np.array([[320, 240], [384, 288], [432, 324], [480, 360], [270, 360]])
IMAGE_SIZE_P = np.array([0.25, 0.25, 0.2, 0.15, 0.15])

# Drawn parts. A joint counts as visible when the topmost drawn part at its
# pixel is one of its own parts of the same person.
PARTS = ['torso', 'neck', 'head', 'nose', 'l_eye', 'r_eye', 'l_ear', 'r_ear',
         'l_upper_arm', 'r_upper_arm', 'l_forearm', 'r_forearm', 'l_hand', 'r_hand',
         'l_thigh', 'r_thigh', 'l_shin', 'r_shin', 'l_foot', 'r_foot']
P = {name: i for i, name in enumerate(PARTS)}
PARTS_PER_PERSON = 32  # label map value = person * 32 + part + 1; 0 = no person
JOINT_PARTS = [('nose',), ('l_eye',), ('r_eye',), ('l_ear',), ('r_ear',),
               ('l_upper_arm', 'torso'), ('r_upper_arm', 'torso'),
               ('l_upper_arm', 'l_forearm'), ('r_upper_arm', 'r_forearm'),
               ('l_forearm', 'l_hand'), ('r_forearm', 'r_hand'),
               ('l_thigh', 'torso'), ('r_thigh', 'torso'),
               ('l_thigh', 'l_shin'), ('r_thigh', 'r_shin'),
               ('l_shin', 'l_foot'), ('r_shin', 'r_foot')]
POINT_NAMES = [n.replace('left_', 'l_').replace('right_', 'r_') for n in KEYPOINT_NAMES]
JOINT_OWNS_PART = np.zeros((len(KEYPOINT_NAMES), PARTS_PER_PERSON), bool)
for _joint, _parts in enumerate(JOINT_PARTS):
    JOINT_OWNS_PART[_joint, [P[p] for p in _parts]] = True

# The side colour code (RGB): warm hues on the left, cool hues on the right.
SIDE_RGB = {
    'l_upper_arm': (225, 45, 45), 'l_forearm': (250, 150, 25),
    'l_thigh': (205, 40, 145), 'l_shin': (245, 210, 50),
    'l_eye': (235, 30, 30), 'l_ear': (250, 140, 20),
    'r_upper_arm': (45, 85, 230), 'r_forearm': (30, 195, 225),
    'r_thigh': (35, 150, 75), 'r_shin': (120, 225, 160),
    'r_eye': (30, 60, 235), 'r_ear': (20, 190, 230),
}
SKIN_RGB = np.array([(240, 205, 175), (225, 180, 140), (190, 140, 100),
                     (150, 100, 70), (115, 80, 55)], float)
NOSE_RGB = (70, 40, 35)
SUBPIXEL_BITS = 4  # cv2 drawing with fixed-point coordinates
SUBPIXEL = 1 << SUBPIXEL_BITS


@dataclass
class Person:
    """One drawn person: joints (17, 2) in image pixels, its mask (all of its
    pixels, hidden ones too), and whether it is a small, distant person whose
    keypoints are never annotated."""
    joints: np.ndarray
    mask: np.ndarray
    distant: bool


def _rot(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _unit(angle):
    """Direction at `angle` from straight down, turning toward +x."""
    return np.array([np.sin(angle), np.cos(angle)])


def _hsv_to_bgr(h, s, v):
    """HSV in [0, 1] to a BGR float triple."""
    hsv = np.array([[[h * 180.0, s * 255.0, v * 255.0]]], np.float32)
    hsv[..., 0] = np.clip(hsv[..., 0], 0, 179.99)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)[0, 0].astype(float)


def _jitter_rgb(rng, rgb):
    """A person's shade of a part colour: same hue family, varied brightness."""
    return np.clip(np.asarray(rgb, float)[::-1] * rng.uniform(0.8, 1.05)
                   + rng.normal(0, 8, 3), 0, 255)


class Body:
    """A person in a random pose, in body units (height ~1, pelvis at the
    origin, y down, the person's left toward +x: facing the camera)."""

    def __init__(self, rng):
        self.points = {}
        self.sizes = {}
        self._torso_and_head(rng)
        for side, sign in (('l', 1.0), ('r', -1.0)):
            self._arm(rng, side, sign)
            self._leg(rng, side, sign)

    def _torso_and_head(self, rng):
        pts, sz = self.points, self.sizes
        shoulder_y = -0.31 * rng.uniform(0.95, 1.05)
        shoulder_half = 0.105 * rng.uniform(0.9, 1.15)
        hip_half = 0.07 * rng.uniform(0.9, 1.2)
        waist_half = 0.5 * (shoulder_half + hip_half) + 0.01
        pts['l_shoulder'] = np.array([shoulder_half, shoulder_y])
        pts['r_shoulder'] = np.array([-shoulder_half, shoulder_y])
        pts['l_hip'] = np.array([hip_half, 0.0])
        pts['r_hip'] = np.array([-hip_half, 0.0])
        pts['torso'] = np.array([
            [shoulder_half + 0.035, shoulder_y - 0.025], [waist_half + 0.02, -0.13],
            [hip_half + 0.06, 0.09], [-hip_half - 0.06, 0.09],
            [-waist_half - 0.02, -0.13], [-shoulder_half - 0.035, shoulder_y - 0.025]])
        head_r = 0.085 * rng.uniform(0.9, 1.1)
        neck_top = np.array([0.0, shoulder_y - 0.03])
        tilt = np.clip(rng.normal(0, np.radians(8)), -np.radians(20), np.radians(20))
        to_image = _rot(tilt)
        head_c = neck_top + to_image @ np.array([0.0, -head_r])
        turn = rng.uniform(-0.25, 0.25)  # face turned sideways, in head radii

        def on_head(x, y):
            return head_c + head_r * (to_image @ np.array([x, y]))

        pts['neck'] = np.array([[0.0, shoulder_y + 0.02], head_c])
        pts['head'] = head_c
        pts['nose'] = on_head(1.3 * turn, 0.28)
        for side, sign in (('l', 1.0), ('r', -1.0)):
            pts[side + '_eye'] = on_head(sign * 0.36 + turn, -0.1)
            pts[side + '_ear'] = on_head(sign * 0.98 + 0.2 * turn, 0.08)
        sz.update(head=head_r, neck=0.055, eye=0.2 * head_r, nose=0.15 * head_r,
                  ear=(0.22 * head_r, 0.32 * head_r), tilt=tilt)

    def _arm(self, rng, side, sign):
        pts = self.points
        raise_ = rng.uniform(-0.35, 1.3) if rng.random() < 0.75 else rng.uniform(1.3, 2.95)
        bend = rng.uniform(-2.5, 0.6)
        upper = 0.165 * rng.uniform(0.92, 1.08) * self._foreshortening(rng)
        fore = 0.15 * rng.uniform(0.92, 1.08) * self._foreshortening(rng)
        shoulder = pts[side + '_shoulder']
        elbow = shoulder + upper * _unit(raise_) * [sign, 1]
        fore_dir = _unit(raise_ + bend) * [sign, 1]
        wrist = elbow + fore * fore_dir
        hand_r = 0.04 * rng.uniform(0.9, 1.15)
        pts[side + '_elbow'], pts[side + '_wrist'] = elbow, wrist
        pts[side + '_hand'] = wrist + 0.8 * hand_r * fore_dir
        self.sizes.update({side + '_upper_arm': (0.075, 0.063), side + '_forearm': (0.063, 0.053),
                           side + '_hand': hand_r})

    def _leg(self, rng, side, sign):
        pts = self.points
        spread = rng.uniform(-0.12, 0.5) if rng.random() < 0.85 else rng.uniform(0.5, 1.4)
        shin_angle = max(spread + rng.uniform(-0.45, 0.35), -0.25)
        thigh = 0.24 * rng.uniform(0.92, 1.08) * self._foreshortening(rng)
        shin = 0.24 * rng.uniform(0.92, 1.08) * self._foreshortening(rng)
        knee = pts[side + '_hip'] + thigh * _unit(spread) * [sign, 1]
        ankle = knee + shin * _unit(shin_angle) * [sign, 1]
        pts[side + '_knee'], pts[side + '_ankle'] = knee, ankle
        pts[side + '_foot'] = ankle + np.array([sign * 0.035, 0.015])
        self.sizes.update({side + '_thigh': (0.11, 0.088), side + '_shin': (0.085, 0.066),
                           side + '_foot': (0.055, 0.028)})

    @staticmethod
    def _foreshortening(rng):
        """Limbs pointing toward the camera look shorter, now and then."""
        return rng.uniform(0.6, 1.0) if rng.random() < 0.25 else 1.0

    def joints(self):
        return np.stack([self.points[name] for name in POINT_NAMES])

    def extent_points(self):
        """Points whose bounding box roughly covers the drawn figure."""
        head, r = self.points['head'], self.sizes['head']
        extras = [head + [-r, -r], head + [r, r], head + [-r, r], head + [r, -r]]
        for side in 'lr':
            extras += [self.points[side + '_hand'], self.points[side + '_foot']]
        return np.concatenate([self.joints(), self.points['torso'], np.stack(extras)])


class Placement:
    """Similarity transform from body units to image pixels."""

    def __init__(self, height_px, angle, offset):
        self.scale = height_px
        self.matrix = height_px * _rot(angle)
        self.angle = angle
        self.offset = np.asarray(offset, float)

    def __call__(self, points):
        return np.asarray(points) @ self.matrix.T + self.offset


class PersonPainter:
    """Draws one person's parts, each with a dark outline, into the image, the
    part label map and the person's own mask (so the topmost part of any
    person wins in the label map)."""

    def __init__(self, image, labels, person_index, rng):
        self.image, self.labels = image, labels
        self.mask = np.zeros(labels.shape, np.uint8)
        self.label_base = person_index * PARTS_PER_PERSON + 1
        self.rng = rng

    def draw(self, body, place):
        rng, pts, sz, s = self.rng, body.points, body.sizes, place.scale
        outline = max(1.0, 0.012 * s)
        skin = _jitter_rgb(rng, SKIN_RGB[rng.integers(len(SKIN_RGB))])
        clothes = _hsv_to_bgr(rng.random(), rng.uniform(0.0, 0.35), rng.uniform(0.35, 0.95))
        shoes = _hsv_to_bgr(rng.random(), rng.uniform(0.0, 0.4), rng.uniform(0.1, 0.3))
        legs = ['l', 'r'] if rng.random() < 0.5 else ['r', 'l']
        arms = ['l', 'r'] if rng.random() < 0.5 else ['r', 'l']
        # Feet under the shins and hands under the forearms, thighs over the torso:
        # ankles, wrists and hips show their limb's side colour.
        for side in legs:
            self._ellipse(side + '_foot', place(pts[side + '_foot']),
                          np.array(sz[side + '_foot']) * s, place.angle, shoes, outline)
            self._limb(place(pts[side + '_knee']), place(pts[side + '_ankle']),
                       sz[side + '_shin'], s, side + '_shin', outline)
        self._shape('torso', clothes, outline, lambda t, c, g: cv2.fillPoly(
            t, [_fixed(_grow(place(pts['torso']), g))], c, cv2.LINE_8, SUBPIXEL_BITS))
        for side in legs:
            self._limb(place(pts[side + '_hip']), place(pts[side + '_knee']),
                       sz[side + '_thigh'], s, side + '_thigh', outline)
        neck, neck_r = place(pts['neck']), sz['neck'] * s / 2
        self._shape('neck', skin, outline, lambda t, c, g: _capsule(
            t, neck[0], neck[1], neck_r + g, neck_r + g, c))
        self._disc('head', place(pts['head']), sz['head'] * s, skin, outline)
        for side in 'lr':
            self._ellipse(side + '_ear', place(pts[side + '_ear']), np.array(sz['ear']) * s,
                          place.angle + sz['tilt'], _jitter_rgb(rng, SIDE_RGB[side + '_ear']),
                          outline)
            self._disc(side + '_eye', place(pts[side + '_eye']), max(1.5, sz['eye'] * s),
                       _jitter_rgb(rng, SIDE_RGB[side + '_eye']), 0)
        self._disc('nose', place(pts['nose']), max(1.2, sz['nose'] * s),
                   np.asarray(NOSE_RGB, float)[::-1], 0)
        for side in arms:
            self._limb(place(pts[side + '_shoulder']), place(pts[side + '_elbow']),
                       sz[side + '_upper_arm'], s, side + '_upper_arm', outline)
            self._disc(side + '_hand', place(pts[side + '_hand']), sz[side + '_hand'] * s,
                       skin, outline)
            self._limb(place(pts[side + '_elbow']), place(pts[side + '_wrist']),
                       sz[side + '_forearm'], s, side + '_forearm', outline)
        return self.mask

    def _limb(self, a, b, widths, scale, part, outline):
        colour = _jitter_rgb(self.rng, SIDE_RGB[part])
        ra, rb = widths[0] * scale / 2, widths[1] * scale / 2
        self._shape(part, colour, outline,
                    lambda t, c, g: _capsule(t, a, b, ra + g, rb + g, c))

    def _ellipse(self, part, centre, half_axes, angle, colour, outline):
        self._shape(part, colour, outline, lambda t, c, g: cv2.ellipse(
            t, _pt(centre), _pt(half_axes + g), np.degrees(angle), 0, 360, c, -1,
            cv2.LINE_8, SUBPIXEL_BITS))

    def _disc(self, part, centre, radius, colour, outline):
        self._shape(part, colour, outline, lambda t, c, g: cv2.circle(
            t, _pt(centre), int(round((radius + g) * SUBPIXEL)), c, -1, cv2.LINE_8,
            SUBPIXEL_BITS))

    def _shape(self, part, colour, outline, draw):
        """`draw(target, colour, grow)` paints the shape, grown by `grow` px."""
        if outline > 0:
            draw(self.image, tuple(float(c) for c in 0.3 * colour), outline)
        draw(self.image, tuple(float(c) for c in colour), 0.0)
        draw(self.labels, self.label_base + P[part], outline)
        draw(self.mask, 255, outline)


def _fixed(points):
    """Float pixel coordinates to cv2's fixed-point integers (a polygon)."""
    return np.round(np.asarray(points) * SUBPIXEL).astype(np.int32)


def _pt(values):
    """A float point or size to a fixed-point (int, int) for cv2."""
    return tuple(int(v) for v in _fixed(values))


def _grow(polygon, amount):
    """Push polygon vertices away from its centroid by `amount` px."""
    centre = polygon.mean(0)
    away = polygon - centre
    return polygon + amount * away / np.maximum(np.linalg.norm(away, axis=1, keepdims=True), 1e-6)


def _capsule(target, a, b, ra, rb, colour):
    """A tapered limb from a (radius ra) to b (radius rb) with round ends."""
    along = b - a
    normal = np.array([-along[1], along[0]]) / max(np.linalg.norm(along), 1e-6)
    quad = np.stack([a + ra * normal, b + rb * normal, b - rb * normal, a - ra * normal])
    cv2.fillConvexPoly(target, _fixed(quad), colour, cv2.LINE_8, SUBPIXEL_BITS)
    for centre, radius in ((a, ra), (b, rb)):
        cv2.circle(target, _pt(centre), int(round(radius * SUBPIXEL)), colour, -1,
                   cv2.LINE_8, SUBPIXEL_BITS)


def _background(rng, width, height):
    """Smooth noise, optional stripes, blobs and thin lines, all of low
    saturation so that the people stand out."""
    base = _hsv_to_bgr(rng.random(), rng.uniform(0.0, 0.25), rng.uniform(0.3, 0.85))
    coarse = rng.standard_normal((int(rng.integers(3, 9)), int(rng.integers(3, 9))),
                                 dtype=np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    shade = rng.uniform(10, 30) * smooth
    if rng.random() < 0.5:
        angle, period = rng.uniform(0, np.pi), rng.uniform(8, 40)
        phase = (np.arange(width, dtype=np.float32)[None] * np.cos(angle)
                 + np.arange(height, dtype=np.float32)[:, None] * np.sin(angle))
        shade += rng.uniform(6, 20) * np.sin(2 * np.pi / period * phase)
    image = shade[..., None] + (base + rng.normal(0, 4, 3)).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(2, 9))):
        colour = tuple(float(c) for c in _hsv_to_bgr(rng.random(), rng.uniform(0, 0.3),
                                                     rng.uniform(0.2, 0.9)))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(8, width // 4)), int(rng.integers(8, height // 4)))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1,
                    cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 4))):
        colour = tuple(float(c) for c in _hsv_to_bgr(rng.random(), rng.uniform(0, 0.3),
                                                     rng.uniform(0.1, 0.9)))
        ends = rng.uniform(0, 1, (2, 2)) * [width, height]
        cv2.line(image, _pt(ends[0]), _pt(ends[1]), colour, int(rng.integers(1, 4)),
                 cv2.LINE_AA, SUBPIXEL_BITS)
    return cv2.GaussianBlur(image, (0, 0), 1.0)


def _iou(a, b):
    """IoU of two [x1, y1, x2, y2] boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _place(rng, body, width, height, height_px, taken, max_iou):
    """A placement whose figure box overlaps placed ones by at most `max_iou`
    and lies mostly in the image, or None."""
    for _ in range(30):
        angle = (np.clip(rng.normal(0, 0.17), -0.45, 0.45) if rng.random() < 0.85
                 else rng.uniform(-1.2, 1.2))
        place = Placement(height_px, angle, (0, 0))
        extent = place(body.extent_points())
        lo, hi = extent.min(0), extent.max(0)
        size = hi - lo
        slack = 0.12 * size  # allows a little truncation at the border
        low, high = -lo - slack, np.array([width, height]) - hi + slack
        if np.any(high <= low):
            continue
        offset = rng.uniform(low, high)
        box = np.concatenate([lo + offset, hi + offset])
        if all(_iou(box, other) <= max_iou for other in taken):
            taken.append(box)
            return Placement(height_px, angle, offset)
    return None


def _occluders(rng, image, labels, people):
    """Grey textured boxes in front of random joints of annotated people."""
    for _ in range(int(rng.integers(1, 3)) if rng.random() < 0.3 else 0):
        person = people[int(rng.integers(len(people)))]
        height = np.ptp(person.joints[:, 1]) + 1.0
        centre = person.joints[int(rng.integers(17))] + rng.normal(0, 0.06 * height, 2)
        half = height * rng.uniform(0.06, 0.15, 2)
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
        box = centre + corners @ _rot(rng.uniform(-0.5, 0.5)).T
        colour = _hsv_to_bgr(rng.random(), rng.uniform(0, 0.2), rng.uniform(0.25, 0.8))
        cv2.fillConvexPoly(image, _fixed(box), tuple(float(c) for c in colour), cv2.LINE_AA,
                           SUBPIXEL_BITS)
        cv2.fillConvexPoly(labels, _fixed(box), 0, cv2.LINE_8, SUBPIXEL_BITS)


def render_scene(rng, width, height):
    """One image (BGR uint8), its part label map and its people, front last."""
    image = _background(rng, width, height)
    labels = np.zeros((height, width), np.uint16)
    taken, people = [], []
    n_distant = int(rng.random() < 0.25) + int(rng.random() < 0.1)
    n_main = int(rng.choice([1, 2, 3, 4], p=[0.25, 0.4, 0.25, 0.1]))
    # Distant people first: behind everyone else.
    for index in range(n_distant + n_main):
        distant = index < n_distant
        body = Body(rng)
        height_px = (rng.uniform(22, 45) if distant
                     else max(100.0, height * rng.uniform(0.45, 0.85)))
        place = _place(rng, body, width, height, height_px, taken, 0.05 if distant else 0.15)
        if place is None:
            continue
        mask = PersonPainter(image, labels, len(people), rng).draw(body, place)
        people.append(Person(place(body.joints()), mask, distant))
    annotated = [p for p in people if not p.distant]
    if annotated:
        _occluders(rng, image, labels, annotated)
    noisy = image.astype(np.float32) + 3 * rng.standard_normal(image.shape, dtype=np.float32)
    image = np.clip(cv2.GaussianBlur(noisy, (0, 0), 0.6), 0, 255).astype(np.uint8)
    return image, labels, people


def annotate_person(person, person_index, labels, image_id, annotation_id):
    """The COCO annotation of one drawn person: keypoints [x, y, v] * 17
    (ints), num_keypoints, bbox, area and segmentation polygons."""
    height, width = labels.shape
    xy = np.rint(person.joints).astype(np.int64)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
    xs, ys = np.clip(xy[:, 0], 0, width - 1), np.clip(xy[:, 1], 0, height - 1)
    top = labels[ys, xs].astype(np.int64) - 1
    own_part = JOINT_OWNS_PART[np.arange(len(xy)), np.maximum(top, 0) % PARTS_PER_PERSON]
    visible = (top >= 0) & (top // PARTS_PER_PERSON == person_index) & own_part
    flags = np.where(inside, np.where(visible, 2, 1), 0)
    if person.distant or np.count_nonzero(flags) < MIN_LABELLED_JOINTS:
        flags[:] = 0
    keypoints = np.concatenate([xy * (flags[:, None] > 0), flags[:, None]], 1)
    rows, cols = np.nonzero(person.mask)
    x0, y0 = int(cols.min()), int(rows.min())
    bbox = [float(x0), float(y0), float(cols.max() - x0 + 1), float(rows.max() - y0 + 1)]
    contours, _ = cv2.findContours(person.mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = [cv2.approxPolyDP(c, 0.7, True).reshape(-1).astype(float).tolist()
                for c in contours]
    return {'segmentation': [p for p in polygons if len(p) >= 6],
            'num_keypoints': int(np.count_nonzero(flags)),
            'area': float(rows.size),
            'iscrowd': 0,
            'keypoints': keypoints.reshape(-1).tolist(),
            'image_id': image_id,
            'bbox': bbox,
            'category_id': 1,
            'id': annotation_id}


def fake_detections(rng, image_id, width, height, annotations):
    """Detector-style boxes for one image, best first: per person a jittered
    box with a high score (a few people missed) and up to two looser,
    low-scored duplicates; and a few low-scored false positives."""
    gt = np.array([a['bbox'] for a in annotations], float).reshape(-1, 4)
    ignored = np.array([a['num_keypoints'] == 0 for a in annotations], bool)
    copies = rng.integers(1, 4, len(gt))
    owner = np.repeat(np.arange(len(gt)), copies)
    first = np.arange(len(owner)) == np.repeat(np.cumsum(copies) - copies, copies)
    jitter = np.where(first, 0.03, 0.12)[:, None] * gt[owner, 2:]
    centre = gt[owner, :2] + gt[owner, 2:] / 2 + rng.normal(0, 1, (len(owner), 2)) * jitter
    size = np.clip(gt[owner, 2:] + 1.5 * rng.normal(0, 1, (len(owner), 2)) * jitter,
                   0.5 * gt[owner, 2:], 1.6 * gt[owner, 2:])
    main_score = np.where(ignored, rng.uniform(0.4, 0.9, len(gt)), rng.uniform(0.88, 1.0, len(gt)))
    score = np.where(first, main_score[owner], rng.uniform(0.03, 0.5, len(owner)))
    found = (rng.random(len(gt)) >= np.where(ignored, 0.3, 0.04))[owner]
    n_false = int(rng.poisson(0.8))
    false_size = rng.uniform(30, 160, (n_false, 2)) * [0.6, 1.0]
    false_corner = rng.uniform(0, 1, (n_false, 2)) * ([width, height] - false_size)
    boxes = np.concatenate([np.concatenate([centre - size / 2, size], 1)[found],
                            np.concatenate([false_corner, false_size], 1)])
    score = np.concatenate([score[found], rng.uniform(0.01, 0.3, n_false)])
    x1y1 = np.clip(boxes[:, :2], 0, [width - 1, height - 1])
    x2y2 = np.clip(boxes[:, :2] + boxes[:, 2:], x1y1 + 1, [width, height])
    boxes = np.round(np.concatenate([x1y1, x2y2 - x1y1], 1), 2)
    order = np.argsort(-score, kind='stable')
    return [{'bbox': boxes[i].tolist(), 'category_id': 1, 'image_id': image_id,
             'score': round(float(score[i]), 4)} for i in order]


def _info(seed):
    return {'description': 'Synthetic person keypoints for the HSRNet demo '
                           '(tools/make_sample_data.py)',
            'version': '1.0', 'year': 2024, 'contributor': 'generated', 'seed': seed}


def _write_json(path, obj):
    with open(path, 'w') as f:
        json.dump(obj, f, separators=(',', ':'))


def generate(out_dir, seed=0, train_images=DEFAULT_TRAIN_IMAGES,
             val_images=DEFAULT_VAL_IMAGES, jpeg_quality=90):
    """Write the dataset under `out_dir` in COCO's layout and return counts
    {split: {'images', 'persons', 'ignored'}} (persons with keypoints, people
    without). Same arguments, same bytes."""
    for name, value, low, high in (('seed', seed, 0, None),
                                   ('train_images', train_images, 1, None),
                                   ('val_images', val_images, 1, None),
                                   ('jpeg_quality', jpeg_quality, 1, 100)):
        if (not isinstance(value, (int, np.integer)) or isinstance(value, bool)
                or value < low or (high is not None and value > high)):
            raise ValueError('{} must be an integer in [{}, {}], got {!r}'.format(
                name, low, high or 'inf', value))
    for sub in ['annotations', 'person_detection_results'] + ['images/' + s for s in SPLITS]:
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    summary = {}
    for split_index, (split, n_images) in enumerate(zip(SPLITS, (train_images, val_images))):
        summary[split] = _write_split(out_dir, split, split_index, n_images, seed, jpeg_quality)
        logger.info('%s: %d images, %d persons with keypoints, %d without', split,
                    summary[split]['images'], summary[split]['persons'],
                    summary[split]['ignored'])
    return summary


def _write_split(out_dir, split, split_index, n_images, seed, jpeg_quality):
    images, annotations, detections = [], [], []
    for i in range(n_images):
        # One generator per image: a split's images do not depend on the other's size.
        rng = np.random.default_rng([seed, split_index, i])
        width, height = (int(v) for v in IMAGE_SIZES[rng.choice(len(IMAGE_SIZES),
                                                                p=IMAGE_SIZE_P)])
        image, labels, people = render_scene(rng, width, height)
        image_id = IMAGE_ID_BASE[split] + i
        file_name = '{:012d}.jpg'.format(image_id)
        ok, jpeg = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:
            raise RuntimeError('JPEG encoding failed for ' + file_name)
        with open(os.path.join(out_dir, 'images', split, file_name), 'wb') as f:
            f.write(jpeg.tobytes())
        images.append({'license': 1, 'file_name': file_name, 'height': height,
                       'width': width, 'id': image_id})
        image_anns = [annotate_person(person, index, labels, image_id,
                                      ANNOTATION_ID_BASE[split] + len(annotations) + index)
                      for index, person in enumerate(people)]
        annotations += image_anns
        if split == 'val2017':
            detections += fake_detections(rng, image_id, width, height, image_anns)
    _write_json(os.path.join(out_dir, 'annotations', 'person_keypoints_%s.json' % split),
                {'info': _info(seed),
                 'licenses': [{'url': '', 'id': 1, 'name': 'Synthetic, free to use'}],
                 'images': images, 'annotations': annotations, 'categories': [CATEGORY]})
    if split == 'val2017':
        _write_json(os.path.join(out_dir, 'person_detection_results', DETECTION_FILE),
                    detections)
    persons = sum(a['num_keypoints'] > 0 for a in annotations)
    return {'images': len(images), 'persons': persons, 'ignored': len(annotations) - persons}
