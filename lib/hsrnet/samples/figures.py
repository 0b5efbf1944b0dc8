"""The paper-doll figures of the generated sample data (hsrnet.samples.synthetic
describes them): body parts and their colours, a random articulated pose, its
placement in an image, and the drawing of a figure with a label map that says
which person's part is on top at each pixel (what a joint's visibility comes from).
Also the low-saturation textured backgrounds the figures stand on."""
from dataclasses import dataclass

import cv2
import numpy as np

from hsrnet.utils.keypoints import COCO_KEYPOINTS

KEYPOINT_NAMES = list(COCO_KEYPOINTS.names)

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
# Two more points of every body (CrowdPose's head and neck) and their own parts.
EXTRA_POINT_PARTS = {'head_top': ('head',), 'neck_base': ('neck', 'torso')}


def joint_owns_part(joint_parts):
    """(J, PARTS_PER_PERSON) bool: for each joint (a tuple of part names) its own parts."""
    owns = np.zeros((len(joint_parts), PARTS_PER_PERSON), bool)
    for joint, parts in enumerate(joint_parts):
        owns[joint, [P[p] for p in parts]] = True
    return owns


JOINT_OWNS_PART = joint_owns_part(JOINT_PARTS)

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
    """One drawn person: joints (J, 2) in image pixels (COCO's 17 unless a sample
    layout names others), its mask (all of its
    pixels, hidden ones too), and whether it is a small, distant person whose
    keypoints are never annotated."""
    joints: np.ndarray
    mask: np.ndarray
    distant: bool


def rot(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _unit(angle):
    """Direction at `angle` from straight down, turning toward +x."""
    return np.array([np.sin(angle), np.cos(angle)])


def hsv_to_bgr(h, s, v):
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
        to_image = rot(tilt)
        head_c = neck_top + to_image @ np.array([0.0, -head_r])
        turn = rng.uniform(-0.25, 0.25)  # face turned sideways, in head radii

        def on_head(x, y):
            return head_c + head_r * (to_image @ np.array([x, y]))

        pts['neck'] = np.array([[0.0, shoulder_y + 0.02], head_c])
        pts['head'] = head_c
        pts['head_top'] = on_head(0.0, -0.85)       # inside the head, near its top
        pts['neck_base'] = np.array([0.0, shoulder_y])
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

    def joints(self, names=POINT_NAMES):
        """The named points (COCO's 17 joints by default), (J, 2)."""
        return np.stack([self.points[name] for name in names])

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
        self.matrix = height_px * rot(angle)
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
        clothes = hsv_to_bgr(rng.random(), rng.uniform(0.0, 0.35), rng.uniform(0.35, 0.95))
        shoes = hsv_to_bgr(rng.random(), rng.uniform(0.0, 0.4), rng.uniform(0.1, 0.3))
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
            t, [fixed(_grow(place(pts['torso']), g))], c, cv2.LINE_8, SUBPIXEL_BITS))
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


def fixed(points):
    """Float pixel coordinates to cv2's fixed-point integers (a polygon)."""
    return np.round(np.asarray(points) * SUBPIXEL).astype(np.int32)


def _pt(values):
    """A float point or size to a fixed-point (int, int) for cv2."""
    return tuple(int(v) for v in fixed(values))


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
    cv2.fillConvexPoly(target, fixed(quad), colour, cv2.LINE_8, SUBPIXEL_BITS)
    for centre, radius in ((a, ra), (b, rb)):
        cv2.circle(target, _pt(centre), int(round(radius * SUBPIXEL)), colour, -1,
                   cv2.LINE_8, SUBPIXEL_BITS)


def background(rng, width, height):
    """Smooth noise, optional stripes, blobs and thin lines, all of low
    saturation so that the people stand out."""
    base = hsv_to_bgr(rng.random(), rng.uniform(0.0, 0.25), rng.uniform(0.3, 0.85))
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
        colour = tuple(float(c) for c in hsv_to_bgr(rng.random(), rng.uniform(0, 0.3),
                                                     rng.uniform(0.2, 0.9)))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(8, width // 4)), int(rng.integers(8, height // 4)))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1,
                    cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 4))):
        colour = tuple(float(c) for c in hsv_to_bgr(rng.random(), rng.uniform(0, 0.3),
                                                     rng.uniform(0.1, 0.9)))
        ends = rng.uniform(0, 1, (2, 2)) * [width, height]
        cv2.line(image, _pt(ends[0]), _pt(ends[1]), colour, int(rng.integers(1, 4)),
                 cv2.LINE_AA, SUBPIXEL_BITS)
    return cv2.GaussianBlur(image, (0, 0), 1.0)
