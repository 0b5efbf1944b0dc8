"""MPII PCKh against annot/gt_<set>.mat."""
import logging
import os
from collections import OrderedDict

import numpy as np

from hsrnet.utils.fileio import write_atomically

from .predictions import format_name_values

logger = logging.getLogger(__name__)

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


def load_gt(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(
            'MPII ground truth not found: {} (expected layout <ROOT>/annot/gt_<set>.mat '
            'with fields {})'.format(path, ', '.join(GT_FIELDS)))
    from scipy.io import loadmat   # imported here: 0.15 s that COCO runs do without
    gt = loadmat(path)
    missing = [k for k in GT_FIELDS if k not in gt]
    if missing:
        raise ValueError('{}: missing field(s) {} (expected {})'.format(
            path, ', '.join(missing), ', '.join(GT_FIELDS)))
    return gt


class PCKhMetric:
    """PCKh@0.5 per joint group of an MPII set; predictions in the set's order.
    A test set (no ground truth) only gets its predictions saved."""

    def __init__(self, gt_file, image_set, num_persons=None):
        self.gt_file = gt_file
        self.image_set = image_set
        # persons in the set: the rows of pred.mat when some have no prediction
        # (a test set has no ground truth to count them)
        self.num_persons = num_persons

    def evaluate(self, predictions, output_dir):
        """Saves <output_dir>/pred.mat (1-based, as the original); returns
        (name_values, Mean)."""
        predictions.check_finite()
        gt = None if 'test' in self.image_set else load_gt(self.gt_file)
        keypoints = predictions.keypoints
        if predictions.indices is not None:
            # persons of skipped images (DATASET.SKIP_BAD_IMAGES): NaN, scored as misses
            total = gt['pos_gt_src'].shape[2] if gt is not None else self.num_persons
            if total is None:
                raise ValueError('PCKh: predictions of a subset of {} need num_persons '
                                 '(the size of the set)'.format(self.image_set))
            if len(predictions.indices) and predictions.indices.max() >= total:
                raise ValueError('{}: prediction for person {} but the set holds {}'.format(
                    self.gt_file, int(predictions.indices.max()), total))
            missing = total - len(predictions.indices)
            if missing:
                logger.warning('PCKh: %d of %d persons have no prediction (skipped images) '
                               'and count as misses; their rows of pred.mat are NaN',
                               missing, total)
            keypoints = predictions.in_dataset_order(total)
        preds = keypoints[:, :, :2] + 1.0  # 1-based like the .mat
        if output_dir:
            from scipy.io import savemat
            os.makedirs(output_dir, exist_ok=True)
            write_atomically(os.path.join(output_dir, 'pred.mat'),
                             lambda f: savemat(f, mdict={'preds': preds}))
        if gt is None:
            return {'Null': 0.0}, 0.0
        if gt['pos_gt_src'].shape[2] != len(preds):
            raise ValueError('{} holds {} persons but {} predictions were given'.format(
                self.gt_file, gt['pos_gt_src'].shape[2], len(preds)))
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
