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

`generate(..., layout=...)` writes the same scenes in another dataset's files
(SampleLayout; CrowdPose's and OCHuman's in samples.crowd_layouts).
"""
import json
import logging
import os

import cv2
import numpy as np

from hsrnet.samples.figures import (JOINT_OWNS_PART, KEYPOINT_NAMES, PARTS_PER_PERSON,
                                    POINT_NAMES, SUBPIXEL_BITS, Body, Person, PersonPainter,
                                    Placement, background, fixed, hsv_to_bgr, rot)

logger = logging.getLogger(__name__)

# COCO's skeleton, 1-based keypoint numbers.
SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13],
            [6, 7], [6, 8], [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3],
            [2, 4], [3, 5], [4, 6], [5, 7]]
CATEGORY = {'supercategory': 'person', 'id': 1, 'name': 'person',
            'keypoints': KEYPOINT_NAMES, 'skeleton': SKELETON}
DETECTION_FILE = 'COCO_val2017_detections_AP_H_56_person.json'
SPLITS = ('train2017', 'val2017')
DEFAULT_TRAIN_IMAGES = 230
DEFAULT_VAL_IMAGES = 60
MIN_LABELLED_JOINTS = 3

# (width, height) of the images, drawn at random.
IMAGE_SIZES = np.array([[320, 240], [384, 288], [432, 324], [480, 360], [270, 360]])
IMAGE_SIZE_P = np.array([0.25, 0.25, 0.2, 0.15, 0.15])

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
        centre = person.joints[int(rng.integers(len(person.joints)))] \
            + rng.normal(0, 0.06 * height, 2)
        half = height * rng.uniform(0.06, 0.15, 2)
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
        box = centre + corners @ rot(rng.uniform(-0.5, 0.5)).T
        colour = hsv_to_bgr(rng.random(), rng.uniform(0, 0.2), rng.uniform(0.25, 0.8))
        cv2.fillConvexPoly(image, fixed(box), tuple(float(c) for c in colour), cv2.LINE_AA,
                           SUBPIXEL_BITS)
        cv2.fillConvexPoly(labels, fixed(box), 0, cv2.LINE_8, SUBPIXEL_BITS)


def render_scene(rng, width, height, point_names=POINT_NAMES):
    """One image (BGR uint8), its part label map and its people, front last (their
    joints: the body points `point_names`, COCO's 17 by default)."""
    image = background(rng, width, height)
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
        people.append(Person(place(body.joints(point_names)), mask, distant))
    annotated = [p for p in people if not p.distant]
    if annotated:
        _occluders(rng, image, labels, annotated)
    noisy = image.astype(np.float32) + 3 * rng.standard_normal(image.shape, dtype=np.float32)
    image = np.clip(cv2.GaussianBlur(noisy, (0, 0), 0.6), 0, 255).astype(np.uint8)
    return image, labels, people


def annotate_person(person, person_index, labels, image_id, annotation_id,
                    owns=JOINT_OWNS_PART):
    """The COCO annotation of one drawn person: keypoints [x, y, v] per joint
    (ints), num_keypoints, bbox, area and segmentation polygons; `owns` (J, parts)
    the parts on which each joint counts as visible."""
    height, width = labels.shape
    xy = np.rint(person.joints).astype(np.int64)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
    xs, ys = np.clip(xy[:, 0], 0, width - 1), np.clip(xy[:, 1], 0, height - 1)
    top = labels[ys, xs].astype(np.int64) - 1
    own_part = owns[np.arange(len(xy)), np.maximum(top, 0) % PARTS_PER_PERSON]
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


class SampleLayout:
    """How `generate` lays out its two splits: COCO's files (this class; the
    CrowdPose and OCHuman layouts of samples.crowd_layouts change some of it).
    Paths are relative to the output folder; the hooks `annotation` (None: leave it
    out) and `image_entry` may edit an image's records before they are written."""

    name = 'coco'
    splits = SPLITS
    point_names = POINT_NAMES          # the body points annotated, in order
    joint_owns_part = JOINT_OWNS_PART  # the parts on which each counts as visible
    category = CATEGORY
    detection_file = os.path.join('person_detection_results', DETECTION_FILE)  # or None
    image_id_base = (100000, 900000)             # per split: ids disjoint
    annotation_id_base = (1000000, 9000000)

    def image_dir(self, split):
        return os.path.join('images', split)

    def annotation_file(self, split):
        return os.path.join('annotations', 'person_keypoints_%s.json' % split)

    def file_name(self, split_index, i, image_id):
        return '{:012d}.jpg'.format(image_id)

    def annotation(self, ann):
        return ann

    def image_entry(self, image, annotations):
        return image

    def document(self, seed, images, annotations):
        return {'info': _info(seed),
                'licenses': [{'url': '', 'id': 1, 'name': 'Synthetic, free to use'}],
                'images': images, 'annotations': annotations, 'categories': [self.category]}


def _check_arguments(**arguments):
    for name, value in arguments.items():
        low, high = (1, 100) if name == 'jpeg_quality' else (0 if name == 'seed' else 1, None)
        if (not isinstance(value, (int, np.integer)) or isinstance(value, bool)
                or value < low or (high is not None and value > high)):
            raise ValueError('{} must be an integer in [{}, {}], got {!r}'.format(
                name, low, high or 'inf', value))


def generate(out_dir, seed=0, train_images=DEFAULT_TRAIN_IMAGES,
             val_images=DEFAULT_VAL_IMAGES, jpeg_quality=90, layout=None):
    """Write the dataset under `out_dir` in COCO's layout (or `layout`'s, a
    SampleLayout: its two splits get train_images and val_images images) and
    return counts {split: {'images', 'persons', 'ignored'}} (persons with
    keypoints, people without). Same arguments, same bytes."""
    _check_arguments(seed=seed, train_images=train_images, val_images=val_images,
                     jpeg_quality=jpeg_quality)
    layout = layout or SampleLayout()
    subs = [os.path.dirname(layout.annotation_file(s)) for s in layout.splits] + \
        [layout.image_dir(s) for s in layout.splits] + \
        ([os.path.dirname(layout.detection_file)] if layout.detection_file else [])
    for sub in subs:
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    summary = {}
    for split_index, (split, n_images) in enumerate(zip(layout.splits,
                                                        (train_images, val_images))):
        summary[split] = _write_split(out_dir, layout, split_index, n_images, seed,
                                      jpeg_quality)
        logger.info('%s: %d images, %d persons with keypoints, %d without', split,
                    summary[split]['images'], summary[split]['persons'],
                    summary[split]['ignored'])
    return summary


def _write_split(out_dir, layout, split_index, n_images, seed, jpeg_quality):
    split = layout.splits[split_index]
    last = split_index == len(layout.splits) - 1
    images, annotations, detections = [], [], []
    next_id = layout.annotation_id_base[split_index]
    for i in range(n_images):
        # One generator per image: a split's images do not depend on the other's size.
        rng = np.random.default_rng([seed, split_index, i])
        width, height = (int(v) for v in IMAGE_SIZES[rng.choice(len(IMAGE_SIZES),
                                                                p=IMAGE_SIZE_P)])
        image, labels, people = render_scene(rng, width, height, layout.point_names)
        image_id = layout.image_id_base[split_index] + i
        file_name = layout.file_name(split_index, i, image_id)
        ok, jpeg = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:
            raise RuntimeError('JPEG encoding failed for ' + file_name)
        with open(os.path.join(out_dir, layout.image_dir(split), file_name), 'wb') as f:
            f.write(jpeg.tobytes())
        image_anns = [annotate_person(person, index, labels, image_id, next_id + index,
                                      layout.joint_owns_part)
                      for index, person in enumerate(people)]
        next_id += len(people)
        images.append(layout.image_entry({'license': 1, 'file_name': file_name,
                                          'height': height, 'width': width, 'id': image_id},
                                         image_anns))
        annotations += [a for a in map(layout.annotation, image_anns) if a is not None]
        if last and layout.detection_file:
            detections += fake_detections(rng, image_id, width, height, image_anns)
    _write_json(os.path.join(out_dir, layout.annotation_file(split)),
                layout.document(seed, images, annotations))
    if last and layout.detection_file:
        _write_json(os.path.join(out_dir, layout.detection_file), detections)
    persons = sum(a['num_keypoints'] > 0 for a in annotations)
    return {'images': len(images), 'persons': persons, 'ignored': len(annotations) - persons}
