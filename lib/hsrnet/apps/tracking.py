"""Person tracking across video frames: each frame's poses are matched to the
tracks of the frames before by OKS (pose similarity) or box IoU, with an
optimal one-to-one assignment (scipy's linear_sum_assignment).

A pose joins the track it is assigned to when their similarity reaches
`threshold`; otherwise it starts a new track. A track not matched for more than
`max_age` frames is forgotten. Track ids are 0, 1, 2, ... in order of creation.
"""
import numpy as np
from scipy.optimize import linear_sum_assignment

from hsrnet.nms.nms import oks_iou

METHODS = ('oks', 'iou')


def box_iou(a, b):
    """IoU matrix (len(a), len(b)) of [x, y, w, h] boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    union = np.prod(a[:, 2:], 1)[:, None] + np.prod(b[:, 2:], 1)[None] - inter
    return inter / np.maximum(union, 1e-12)


def oks_matrix(a_keypoints, a_areas, b_keypoints, b_areas, sigmas=None, vis_thre=None):
    """OKS matrix (len(a), len(b)) of poses (N, J, 3) with areas (N,)."""
    out = np.zeros((len(a_keypoints), len(b_keypoints)))
    if len(b_keypoints):
        for i, (kps, area) in enumerate(zip(a_keypoints, a_areas)):
            out[i] = oks_iou(kps, np.asarray(b_keypoints), area, b_areas, sigmas, vis_thre)
    return out


class PoseTracker:
    """update(keypoints (N, J, 3), boxes (N, 4) [x, y, w, h]) -> track ids (N,)."""

    def __init__(self, method='oks', threshold=0.3, max_age=5, sigmas=None, vis_thre=None):
        if method not in METHODS:
            raise ValueError('tracking method must be one of {}, got {!r}'.format(
                ', '.join(METHODS), method))
        self.method, self.threshold, self.max_age = method, float(threshold), int(max_age)
        self.sigmas, self.vis_thre = sigmas, vis_thre
        self.tracks = []          # dicts: id, keypoints, box, last_frame
        self.frame = -1
        self.next_id = 0

    def _similarity(self, keypoints, boxes):
        if not self.tracks or not len(boxes):
            return np.zeros((len(self.tracks), len(boxes)))
        old_boxes = np.array([t['box'] for t in self.tracks])
        if self.method == 'iou':
            return box_iou(old_boxes, boxes)
        old_kps = np.array([t['keypoints'] for t in self.tracks])
        return oks_matrix(old_kps, np.prod(old_boxes[:, 2:], 1), keypoints,
                          np.prod(np.asarray(boxes)[:, 2:], 1), self.sigmas, self.vis_thre)

    def update(self, keypoints, boxes):
        self.frame += 1
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        keypoints = np.asarray(keypoints, dtype=np.float64)
        if len(boxes):
            keypoints = keypoints.reshape(len(boxes), -1, 3)
        similarity = self._similarity(keypoints, boxes)
        ids = np.full(len(boxes), -1, dtype=np.int64)
        if similarity.size:
            rows, cols = linear_sum_assignment(similarity, maximize=True)
            for r, c in zip(rows, cols):
                if similarity[r, c] >= self.threshold:
                    ids[c] = self.tracks[r]['id']
                    self.tracks[r].update(keypoints=keypoints[c], box=boxes[c],
                                          last_frame=self.frame)
        for c in np.flatnonzero(ids < 0):
            ids[c] = self.next_id
            self.tracks.append({'id': self.next_id, 'keypoints': keypoints[c], 'box': boxes[c],
                                'last_frame': self.frame})
            self.next_id += 1
        self.tracks = [t for t in self.tracks if self.frame - t['last_frame'] <= self.max_age]
        return ids
