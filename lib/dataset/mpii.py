"""MPII Human Pose: person boxes from annot/<set>.json, PCKh evaluation.

Layout under DATASET.ROOT:
    annot/<set>.json     list of {image, center, scale, joints (16 x 2), joints_vis},
                         1-based pixel coordinates, scale = person height / 200
    annot/gt_<set>.mat   dataset_joints, jnt_missing, pos_gt_src, headboxes_src
    images/<image>
"""
import json
import logging
import os
from collections import OrderedDict

import numpy as np
from scipy.io import loadmat, savemat

from utils.fileio import write_atomically

from .JointsDataset import JointsDataset, format_name_values

logger = logging.getLogger(__name__)

ANNOTATION_FORMAT = ('a list of {"image": file name, "center": [x, y], "scale": s, '
                     '"joints": 16 x [x, y], "joints_vis": 16 x v}')
GT_FIELDS = ('dataset_joints', 'jnt_missing', 'pos_gt_src', 'headboxes_src')
# PCKh normalises by 0.6 x the head box diagonal.
SC_BIAS = 0.6
PCKH_THRESHOLD = 0.5
# Reported joint groups, by the joint names stored in gt_<set>.mat.
JOINT_GROUPS = OrderedDict([
    ('Head', ['head']), ('Shoulder', ['lsho', 'rsho']), ('Elbow', ['lelb', 'relb']),
    ('Wrist', ['lwri', 'rwri']), ('Hip', ['lhip', 'rhip']), ('Knee', ['lkne', 'rkne']),
    ('Ankle', ['lank', 'rank']),
])
# Left out of the means, as in the original.
UNSCORED_JOINTS = ('pelv', 'thor')


def _mat_strings(cells):
    """A MATLAB cell array of strings, as loadmat returns it, -> list of str."""
    names = []
    for cell in np.asarray(cells, dtype=object).ravel():
        while isinstance(cell, np.ndarray):
            cell = cell.ravel()[0] if cell.size else ''
        names.append(str(cell))
    return names


def pckh(preds, gt):
    """PCKh from 1-based preds (N, J, 2) and the fields of gt_<set>.mat. Returns
    (at, count): at(threshold) is the per-joint PCKh in % (J,), count the number
    of visible ground-truth joints (J,)."""
    pos_pred = np.transpose(preds, [1, 2, 0])  # (J, 2, N) like pos_gt_src
    visible = 1 - gt['jnt_missing']
    uv_err = np.linalg.norm(pos_pred - gt['pos_gt_src'], axis=1)
    head_sizes = np.linalg.norm(gt['headboxes_src'][1] - gt['headboxes_src'][0], axis=0) * SC_BIAS
    scaled_err = uv_err / head_sizes
    count = visible.sum(axis=1)

    def at(threshold):
        hits = ((scaled_err <= threshold) * visible).sum(axis=1)
        return np.where(count > 0, 100.0 * hits / np.maximum(count, 1), 0.0)
    return at, count


class MPIIDataset(JointsDataset):
    """MPII, 16 joints (r ankle, r knee, r hip, l hip, l knee, l ankle, pelvis,
    thorax, neck, head top, r wrist, r elbow, r shoulder, l shoulder, l elbow, l wrist)."""

    num_joints = 16
    flip_pairs = [[0, 5], [1, 4], [2, 3], [10, 15], [11, 14], [12, 13]]
    image_layout = '<ROOT>/images/<image>'

    def __init__(self, cfg, root, image_set, is_train, transform=None):
        super().__init__(cfg, root, image_set, is_train, transform)
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
        elif np.shape(entry['center']) != (2,) or np.ndim(entry['scale']) != 0:
            problem = 'center must be [x, y] and scale a number'
        elif has_joints and (np.shape(entry['joints']) != (self.num_joints, 2)
                             or np.shape(entry['joints_vis']) != (self.num_joints,)):
            problem = 'joints must be {0} x [x, y] and joints_vis {0} values'.format(
                self.num_joints)
        if problem:
            raise ValueError('{}: entry {} is malformed ({}): {:.200}; expected {}'.format(
                path, i, problem, repr(entry), ANNOTATION_FORMAT))

    def _load_gt(self):
        path = os.path.join(self.root, 'annot', 'gt_{}.mat'.format(self.image_set))
        if not os.path.isfile(path):
            raise FileNotFoundError(
                'MPII ground truth not found: {} (expected layout <ROOT>/annot/gt_<set>.mat '
                'with fields {})'.format(path, ', '.join(GT_FIELDS)))
        gt = loadmat(path)
        missing = [k for k in GT_FIELDS if k not in gt]
        if missing:
            raise ValueError('{}: missing field(s) {} (expected {})'.format(
                path, ', '.join(missing), ', '.join(GT_FIELDS)))
        return path, gt

    def evaluate(self, cfg, preds, output_dir, *args, **kwargs):
        """PCKh@0.5 per joint group against annot/gt_<set>.mat. preds (N, 16, >=2) in
        0-based image pixels, in the dataset's order. Also saves output_dir/pred.mat."""
        preds = np.asarray(preds, dtype=np.float64)[:, :, :2] + 1.0  # 1-based like the .mat
        if output_dir:
            os.makedirs(output_dir, exist_ok=True)
            write_atomically(os.path.join(output_dir, 'pred.mat'),
                             lambda f: savemat(f, mdict={'preds': preds}))
        if 'test' in self.image_set:
            return {'Null': 0.0}, 0.0

        path, gt = self._load_gt()
        if gt['pos_gt_src'].shape[2] != len(preds):
            raise ValueError('{} holds {} persons but {} predictions were given'.format(
                path, gt['pos_gt_src'].shape[2], len(preds)))
        names = _mat_strings(gt['dataset_joints'])
        pck_at, count = pckh(preds, gt)
        pck = pck_at(PCKH_THRESHOLD)
        scored = ~np.isin(names, UNSCORED_JOINTS)
        ratio = np.where(scored, count, 0) / np.sum(np.where(scored, count, 0))
        name_values = OrderedDict(
            (group, float(np.mean([pck[names.index(j)] for j in joints])))
            for group, joints in JOINT_GROUPS.items())
        name_values['Mean'] = float(np.sum(pck * ratio))
        # The original read this off a threshold grid one step too far (0.11).
        name_values['Mean@0.1'] = float(np.sum(pck_at(0.1) * ratio))
        logger.info('MPII PCKh, %s:\n%s', self.image_set, format_name_values(name_values))
        return name_values, name_values['Mean']
