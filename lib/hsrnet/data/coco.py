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
import numbers
import os

import numpy as np
from pycocotools.coco import COCO

from hsrnet.evaluation.coco import PERSON_CATEGORY, COCOKeypointMetric, stdout_to_log
from hsrnet.utils.errors import ConfigError, DataError
from hsrnet.utils.fileio import inside_folder
from hsrnet.utils.keypoints import COCO_KEYPOINTS

from .detections import is_positive_box, read_person_detections
from .joints_dataset import JointsDataset, box_to_center_scale

logger = logging.getLogger(__name__)

# A detector box with less of its area than this inside its image is reported.
MIN_SHARE_INSIDE = 0.01


def share_inside(boxes, sizes):
    """The share of each box [x, y, w, h] (N, 4) that lies inside its image
    [width, height] (N, 2; inf where unknown)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    low = np.clip(boxes[:, :2], 0, sizes)
    high = np.clip(boxes[:, :2] + boxes[:, 2:], 0, sizes)
    inside = np.prod(high - low, axis=1)
    return inside / np.prod(boxes[:, 2:], axis=1)


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
        if not is_train:
            self._check_person_category()
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
        """The pycocotools COCO object of `path`; ValueError naming the file when it
        is not json, or not an object with an "images" list."""
        try:
            with open(path, 'rb') as f:
                data = json.loads(f.read().decode('utf-8'))
        except ValueError as e:   # also a file that is not UTF-8 text
            raise ValueError('{}: not a COCO annotation file (not valid json: {})'.format(
                path, e)) from None
        if not isinstance(data, dict) or not isinstance(data.get('images'), list):
            raise ValueError('{}: not a COCO annotation file: expected {{"images": [...], '
                             '"annotations": [...], "categories": [...]}}, got {}'.format(
                                 path, 'no "images" list' if isinstance(data, dict)
                                 else 'a json ' + type(data).__name__))
        coco = COCO()
        coco.dataset = data
        try:
            with stdout_to_log(logging.DEBUG):
                coco.createIndex()
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError('{}: not a COCO annotation file ({}: {})'.format(
                path, type(e).__name__, e)) from None
        return coco

    def _check_person_category(self):
        """COCOeval scores only the categories the file lists: without the person
        category every metric would be -1."""
        if 'annotations' in self.coco.dataset and PERSON_CATEGORY not in self.coco.cats:
            raise ValueError('{}: "categories" has no person category (id {}; found ids {}): '
                             'COCO evaluation scores only the categories listed there'.format(
                                 self.annotation_file, PERSON_CATEGORY,
                                 sorted(self.coco.cats) or 'none'))

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
        bad = [a for a in anns if not is_positive_box(a.get('bbox'))]
        if bad:
            getattr(self, '_bad_boxes', []).extend(bad)
            anns = [a for a in anns if is_positive_box(a.get('bbox'))]
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
        detections = read_person_detections(path, 'TEST.COCO_BBOX_FILE')
        persons = detections.persons
        known = [d for d in persons if d['image_id'] in self.coco.imgs]
        if len(known) < len(persons):
            logger.warning('%s: skipped %d person boxes of images not in %s', path,
                           len(persons) - len(known), self.annotation_file)
        kept = [d for d in known if d['score'] >= self.image_thre]
        self._warn_boxes_outside(kept, path)
        if not kept:
            raise ValueError(
                '{}: no person boxes (category_id 1) with score >= TEST.IMAGE_THRE={} on the '
                'images of {} ({} entries in the file); nothing to evaluate'.format(
                    path, self.image_thre, self.annotation_file, detections.entries))
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

    def _warn_boxes_outside(self, detections, path):
        """One warning for the boxes that lie (almost) entirely outside their image
        (they are kept, as the original keeps them: their poses are guesses)."""
        if not detections:
            return
        known = [self._image_size(d['image_id']) for d in detections]
        sizes = [size or (np.inf, np.inf) for size in known]
        outside = np.flatnonzero(share_inside([d['bbox'] for d in detections], sizes)
                                 < MIN_SHARE_INSIDE)
        if len(outside):
            first = detections[outside[0]]
            logger.warning('%s: %d of %d person boxes lie (almost) entirely outside their image '
                           '(less than %d%% of the box inside; the first: image_id %s, bbox %s, '
                           'image %s); their poses are guesses that count as false positives',
                           path, len(outside), len(detections), 100 * MIN_SHARE_INSIDE,
                           first['image_id'], first['bbox'],
                           '{}x{}'.format(*known[outside[0]]) if known[outside[0]] else
                           'of unknown size')

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
        if not isinstance(name, str) or not inside_folder(name):
            raise DataError('{}: image {} needs a "file_name" inside the images folder '
                            '(images are read from {}), got {!r}'.format(
                                self.annotation_file, index, self.image_layout, name))
        return os.path.join(self.root, 'images', name)
