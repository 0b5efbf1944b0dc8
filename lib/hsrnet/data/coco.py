"""COCO person keypoints: ground-truth or detector boxes; COCO evaluation (evaluation.coco).
COCOFormatDataset: the base of the datasets released as COCO-format files
(data.crowdpose, data.ochuman).

Layout under DATASET.ROOT:
    annotations/person_keypoints_<set>.json   (test sets: image_info_<set>.json)
    images/<set>/<image_id:012d>.jpg          (test sets: images/test2017/)
    TEST.COCO_BBOX_FILE: a COCO results list of person detections
"""
import json
import logging
import math
import numbers
import os

import numpy as np
from pycocotools.coco import COCO

from hsrnet.evaluation.coco import PERSON_CATEGORY, COCOKeypointMetric, stdout_to_log
from hsrnet.utils.errors import ConfigError, DataError
from hsrnet.utils.keypoints import COCO_KEYPOINTS

from .joints_dataset import JointsDataset, box_to_center_scale

logger = logging.getLogger(__name__)

DETECTION_FORMAT = ('a list of {"image_id": int, "category_id": int, '
                    '"bbox": [x, y, w, h], "score": float}')


def _positive_box(bbox):
    """Whether bbox is [x, y, w, h] of finite numbers with w > 0 and h > 0."""
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError):
        return False
    return len(values) == 4 and all(map(math.isfinite, values)) \
        and values[2] > 0 and values[3] > 0


def _check_detection(i, entry, path):
    def is_number(v):
        return isinstance(v, numbers.Real) and not isinstance(v, bool)

    problem = None
    if not isinstance(entry, dict):
        problem = 'not an object'
    else:
        missing = [k for k in ('image_id', 'category_id', 'bbox', 'score') if k not in entry]
        bbox = entry.get('bbox')
        if missing:
            problem = 'missing ' + ', '.join(missing)
        elif not isinstance(entry['image_id'], int) or not isinstance(entry['category_id'], int):
            problem = 'image_id and category_id must be integers'
        elif not isinstance(bbox, list) or len(bbox) != 4 or not all(map(is_number, bbox)):
            problem = 'bbox must be 4 numbers [x, y, w, h]'
        elif not is_number(entry['score']):
            problem = 'score must be a number'
    if problem:
        raise ValueError('{}: detection entry {} is malformed ({}): {:.200}; expected {}'.format(
            path, i, problem, repr(entry), DETECTION_FORMAT))


class COCODataset(JointsDataset):
    """COCO keypoints, 17 joints; GT boxes when training or TEST.USE_GT_BBOX,
    otherwise the person boxes of TEST.COCO_BBOX_FILE."""

    native_keypoints = COCO_KEYPOINTS
    custom_keypoints = True     # any joint count, declared in the yaml
    num_joints = COCO_KEYPOINTS.num_joints
    flip_pairs = [list(pair) for pair in COCO_KEYPOINTS.flip_pairs]
    image_layout = '<ROOT>/images/<set>/<image_id:012d>.jpg'
    annotation_layout = '<ROOT>/annotations/person_keypoints_<set>.json'
    title = 'COCO'

    def __init__(self, cfg, root, image_set, is_train, transform=None, codec=None):
        super().__init__(cfg, root, image_set, is_train, transform, codec)
        self.use_gt_bbox = cfg.TEST.USE_GT_BBOX
        self.bbox_file = cfg.TEST.COCO_BBOX_FILE
        self.image_thre = cfg.TEST.IMAGE_THRE
        self.oks_thre = cfg.TEST.OKS_THRE
        self.in_vis_thre = cfg.TEST.IN_VIS_THRE
        self.aspect_ratio = self.image_size[0] / self.image_size[1]

        self.annotation_file = self._find_annotation_file()
        self.coco = self._load_coco(self.annotation_file)
        self.image_set_index = self.coco.getImgIds()
        self.num_images = len(self.image_set_index)
        self._image_id_of_path = {self.image_path_from_index(i): i
                                  for i in self.image_set_index}

        db = self._load_gt_db() if is_train or self.use_gt_bbox else self._load_detection_db()
        if is_train and cfg.DATASET.SELECT_DATA:
            db = self.select_data(db)
        if not db:
            raise ValueError('{}: no person annotations with keypoints in set {!r}'.format(
                self.annotation_file, image_set))
        self.db = db
        logger.info('=> %s: %d images, %d person boxes', image_set, self.num_images, len(db))

    # -- loading ---------------------------------------------------------------

    def annotation_names(self):
        """The files under <ROOT>/annotations that may hold the set's annotations,
        the first found is read."""
        names = ['person_keypoints_{}.json'.format(self.image_set)]
        if 'test' in self.image_set:  # test-dev / test: image info only
            names.append('image_info_{}.json'.format(self.image_set))
        return names

    def _find_annotation_file(self):
        paths = [os.path.join(self.root, 'annotations', n) for n in self.annotation_names()]
        for path in paths:
            if os.path.isfile(path):
                return path
        raise FileNotFoundError(
            '{} annotation file not found: {} (expected layout {} with DATASET.ROOT={!r}, '
            'set {!r})'.format(self.title, ' or '.join(paths), self.annotation_layout,
                               self.root, self.image_set))

    @staticmethod
    def _load_coco(path):
        try:
            with stdout_to_log(logging.DEBUG):
                coco = COCO(path)
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError('{}: not a COCO annotation file ({}: {})'.format(
                path, type(e).__name__, e)) from None
        if 'images' not in coco.dataset:
            raise ValueError('{}: not a COCO annotation file (no "images" list)'.format(path))
        return coco

    def image_path_from_index(self, index):
        folder = 'test2017' if 'test' in self.image_set else self.image_set
        return os.path.join(self.root, 'images', folder, '{:012d}.jpg'.format(index))

    def _load_gt_db(self):
        self._bad_boxes = []
        db = []
        for index in self.image_set_index:
            db.extend(self._gt_records(index))
        if self._bad_boxes:
            ann = self._bad_boxes[0]
            logger.warning('%s: skipped %d person annotations whose box has a width or height '
                           '<= 0 or is not finite (the first: annotation id %s of image %s, '
                           'bbox %s)', self.annotation_file, len(self._bad_boxes), ann.get('id'),
                           ann.get('image_id'), ann.get('bbox'))
        return db

    def _image_size(self, index):
        """(width, height) the annotation file gives for an image, or None."""
        info = self.coco.imgs[index]
        if isinstance(info.get('width'), int) and isinstance(info.get('height'), int):
            return info['width'], info['height']
        return None

    def _gt_records(self, index):
        """The clipped, non-crowd person boxes of one image that have keypoints.
        Boxes with a width or height <= 0 are left out (counted in _bad_boxes)."""
        info = self.coco.imgs[index]
        width, height = info['width'], info['height']
        anns = [a for a in self.coco.imgToAnns.get(index, [])
                if a['category_id'] == PERSON_CATEGORY and not a.get('iscrowd', 0)]
        self._check_keypoint_lengths(anns)
        bad = [a for a in anns if not _positive_box(a.get('bbox'))]
        if bad:
            getattr(self, '_bad_boxes', []).extend(bad)
            anns = [a for a in anns if _positive_box(a.get('bbox'))]
        if not anns:
            return []
        x, y, w, h = np.array([a['bbox'] for a in anns], dtype=np.float64).T
        area = np.array([a['area'] for a in anns], dtype=np.float64)
        kpts = np.array([a['keypoints'] for a in anns], dtype=np.float64)
        kpts = kpts.reshape(len(anns), self.num_joints, 3)

        x1, y1 = np.maximum(0, x), np.maximum(0, y)
        x2 = np.minimum(width - 1, x1 + np.maximum(0, w - 1))
        y2 = np.minimum(height - 1, y1 + np.maximum(0, h - 1))
        # a box clipped to a single pixel has no size to crop either
        keep = (area > 0) & (x2 >= x1) & (y2 >= y1) & ((x2 > x1) | (y2 > y1)) \
            & (kpts.max(axis=(1, 2)) > 0)
        boxes = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)[keep]
        centers, scales = box_to_center_scale(boxes, self.aspect_ratio)

        kpts = kpts[keep]
        joints = np.zeros_like(kpts)
        joints[..., :2] = kpts[..., :2]
        vis = np.zeros_like(kpts)
        vis[..., :2] = np.minimum(kpts[..., 2:], 1)
        path = self.image_path_from_index(index)
        return [{'image': path, 'center': c, 'scale': s, 'joints_3d': j, 'joints_3d_vis': v,
                 'filename': '', 'imgnum': 0, 'image_size': (width, height)}
                for c, s, j, v in zip(centers, scales, joints, vis)]

    def _check_keypoint_lengths(self, anns):
        """DataError naming the file, the annotation and its image when its keypoints
        are not a list of 3 x NUM_JOINTS numbers."""
        want = 3 * self.num_joints
        for a in anns:
            kpts = a.get('keypoints')
            got = len(kpts) if isinstance(kpts, list) else 0
            if got != want or not all(isinstance(v, numbers.Real) for v in kpts):
                raise DataError('{}: annotation {} has {} keypoint values, expected {} (3 per '
                                'joint, MODEL.NUM_JOINTS {}; image {})'.format(
                                    self.annotation_file, a.get('id', '?'), got, want,
                                    self.num_joints, a.get('image_id', '?')))

    def _load_detection_db(self):
        path = self.bbox_file
        if not path:
            raise ConfigError('TEST.COCO_BBOX_FILE is empty: validation with detector boxes '
                              'needs a detection file (or set TEST.USE_GT_BBOX true)')
        if not os.path.isfile(path):
            raise FileNotFoundError('detection file not found: {} (TEST.COCO_BBOX_FILE: {})'
                                    .format(path, DETECTION_FORMAT))
        with open(path) as f:
            try:
                detections = json.load(f)
            except ValueError as e:
                raise ValueError('{}: not valid json ({})'.format(path, e)) from None
        if not isinstance(detections, list):
            raise ValueError('{}: expected {}, got a {}'.format(
                path, DETECTION_FORMAT, type(detections).__name__))
        for i, entry in enumerate(detections):
            _check_detection(i, entry, path)

        bad = [(i, d) for i, d in enumerate(detections) if not _positive_box(d['bbox'])
               or not math.isfinite(d['score'])]
        if bad:
            i, first = bad[0]
            logger.warning('%s: skipped %d detection entries with a non-finite or non-positive '
                           'box or score (the first: entry %d, image_id %s, bbox %s, score %s)',
                           path, len(bad), i, first['image_id'], first['bbox'], first['score'])
            skip = {id(d) for _, d in bad}
            detections = [d for d in detections if id(d) not in skip]
        persons = [d for d in detections if d['category_id'] == PERSON_CATEGORY]
        known = [d for d in persons if d['image_id'] in self.coco.imgs]
        if len(known) < len(persons):
            logger.warning('%s: skipped %d person boxes of images not in %s', path,
                           len(persons) - len(known), self.annotation_file)
        kept = [d for d in known if d['score'] >= self.image_thre]
        if not kept:
            raise ValueError(
                '{}: no person boxes (category_id 1) with score >= TEST.IMAGE_THRE={} on the '
                'images of {} ({} entries in the file); nothing to evaluate'.format(
                    path, self.image_thre, self.annotation_file, len(detections)))
        # Boxes of one image adjacent, images in the annotation file's order.
        rank = {index: r for r, index in enumerate(self.image_set_index)}
        kept.sort(key=lambda d: rank[d['image_id']])
        centers, scales = box_to_center_scale([d['bbox'] for d in kept], self.aspect_ratio)
        joints = np.zeros((self.num_joints, 3))
        vis = np.ones((self.num_joints, 3))
        logger.info('=> %d person boxes with score >= %s from %s', len(kept), self.image_thre,
                    path)
        return [{'image': self.image_path_from_index(d['image_id']), 'center': c, 'scale': s,
                 'score': d['score'], 'joints_3d': joints, 'joints_3d_vis': vis,
                 'filename': '', 'imgnum': 0, 'image_size': self._image_size(d['image_id'])}
                for d, c, s in zip(kept, centers, scales)]

    # -- evaluation ------------------------------------------------------------

    def get_metric(self):
        """COCO keypoint AP of this set (rescoring at TEST.IN_VIS_THRE, OKS-NMS at
        TEST.OKS_THRE, results json, COCOeval)."""
        return COCOKeypointMetric(self.coco, self._image_id_of_path, self.image_set,
                                  self.oks_thre, self.in_vis_thre, sigmas=self.keypoints.sigmas,
                                  annotation_file=self.annotation_file)


class COCOFormatDataset(COCODataset):
    """A dataset released as COCO-format keypoint files (CrowdPose, OCHuman):
    <ROOT>/annotations/<annotation_pattern with the set>, the images at
    <ROOT>/images/<file_name of the image entry>, the dataset's own keypoints
    (`native_keypoints`, no yaml-declared joints). Ground-truth or detector boxes
    and the metric as COCODataset."""

    custom_keypoints = False
    annotation_pattern = '{}.json'   # the file name of a set, '{}' the set's name
    image_layout = '<ROOT>/images/<file_name>'

    @property
    def annotation_layout(self):
        return '<ROOT>/annotations/' + self.annotation_pattern.format('<set>')

    def annotation_names(self):
        return [self.annotation_pattern.format(self.image_set)]

    def image_path_from_index(self, index):
        name = self.coco.imgs[index].get('file_name')
        if not isinstance(name, str) or not name:
            raise DataError('{}: image {} has no "file_name" (images are read from {})'.format(
                self.annotation_file, index, self.image_layout))
        return os.path.join(self.root, 'images', name)
