"""MPII Human Pose: person boxes from annot/<set>.json; PCKh evaluation (evaluation.mpii).

Layout under DATASET.ROOT:
    annot/<set>.json     list of {image, center, scale, joints (16 x 2), joints_vis},
                         1-based pixel coordinates, scale = person height / 200
    annot/gt_<set>.mat   dataset_joints, jnt_missing, pos_gt_src, headboxes_src
    images/<image>
"""
import json
import logging
import os

import numpy as np

from hsrnet.evaluation.mpii import PCKhMetric
from hsrnet.utils.fileio import inside_folder
from hsrnet.utils.keypoints import MPII_KEYPOINTS

from .joints_dataset import JointsDataset

logger = logging.getLogger(__name__)

ANNOTATION_FORMAT = ('a list of {"image": file name, "center": [x, y], "scale": s, '
                     '"joints": 16 x [x, y], "joints_vis": 16 x v}')


class MPIIDataset(JointsDataset):
    """MPII, 16 joints (r ankle, r knee, r hip, l hip, l knee, l ankle, pelvis,
    thorax, neck, head top, r wrist, r elbow, r shoulder, l shoulder, l elbow, l wrist)."""

    native_keypoints = MPII_KEYPOINTS
    num_joints = MPII_KEYPOINTS.num_joints
    flip_pairs = [list(pair) for pair in MPII_KEYPOINTS.flip_pairs]
    image_layout = '<ROOT>/images/<image>'

    def __init__(self, cfg, root, image_set, is_train, transform=None, codec=None):
        super().__init__(cfg, root, image_set, is_train, transform, codec)
        self.db = self._load_db()
        if is_train and cfg.DATASET.SELECT_DATA:
            self.db = self.select_data(self.db)
        logger.info('=> %s: %d person boxes', image_set, len(self.db))

    def _load_db(self):
        path = os.path.join(self.root, 'annot', '{}.json'.format(self.image_set))
        if not os.path.isfile(path):
            raise FileNotFoundError(
                'MPII annotation file not found: {} (expected layout <ROOT>/annot/<set>.json '
                'with DATASET.ROOT={!r}: {})'.format(path, self.root, ANNOTATION_FORMAT))
        with open(path) as f:
            try:
                anns = json.load(f)
            except ValueError as e:
                raise ValueError('{}: not valid json ({})'.format(path, e)) from None
        if not isinstance(anns, list) or not anns:
            raise ValueError('{}: expected a non-empty list ({})'.format(path, ANNOTATION_FORMAT))
        has_joints = 'test' not in self.image_set
        for i, a in enumerate(anns):
            self._check_entry(i, a, has_joints, path)

        center = np.array([a['center'] for a in anns], dtype=np.float64)
        scale = np.array([a['scale'] for a in anns], dtype=np.float64)
        # The annotated centre sits high on the body; boxes without a centre have -1.
        has_center = center[:, 0] != -1
        center[:, 1] += np.where(has_center, 15 * scale, 0)
        scale = np.where(has_center, scale * 1.25, scale)
        center -= 1  # 1-based -> 0-based
        joints = np.zeros((len(anns), self.num_joints, 3))
        vis = np.zeros((len(anns), self.num_joints, 3))
        if has_joints:
            joints[..., :2] = np.array([a['joints'] for a in anns], dtype=np.float64) - 1
            vis[..., :2] = np.array([a['joints_vis'] for a in anns], dtype=np.float64)[..., None]
        image_dir = os.path.join(self.root, 'images')
        return [{'image': os.path.join(image_dir, a['image']), 'center': c,
                 'scale': np.array([s, s]), 'joints_3d': j, 'joints_3d_vis': v,
                 'filename': '', 'imgnum': 0}
                for a, c, s, j, v in zip(anns, center, scale, joints, vis)]

    def _check_entry(self, i, entry, has_joints, path):
        keys = ['image', 'center', 'scale'] + (['joints', 'joints_vis'] if has_joints else [])
        problem = None
        if not isinstance(entry, dict):
            problem = 'not an object'
        elif any(k not in entry for k in keys):
            problem = 'missing ' + ', '.join(k for k in keys if k not in entry)
        elif not isinstance(entry['image'], str) or not inside_folder(entry['image']):
            problem = 'image must be a file name inside the images folder {}'.format(
                os.path.join(self.root, 'images'))
        elif np.shape(entry['center']) != (2,) or np.ndim(entry['scale']) != 0:
            problem = 'center must be [x, y] and scale a number'
        elif has_joints and (np.shape(entry['joints']) != (self.num_joints, 2)
                             or np.shape(entry['joints_vis']) != (self.num_joints,)):
            problem = 'joints must be {0} x [x, y] and joints_vis {0} values'.format(
                self.num_joints)
        if problem:
            raise ValueError('{}: entry {} is malformed ({}): {:.200}; expected {}'.format(
                path, i, problem, repr(entry), ANNOTATION_FORMAT))

    def get_metric(self):
        """PCKh against annot/gt_<set>.mat."""
        return PCKhMetric(os.path.join(self.root, 'annot', 'gt_{}.mat'.format(self.image_set)),
                          self.image_set, num_persons=len(self.db))
