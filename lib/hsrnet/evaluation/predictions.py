"""One prediction per person box, as named arrays."""
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from hsrnet.utils.errors import NonFinitePredictionError
from hsrnet.utils.transforms import PIXEL_STD


@dataclass
class PosePredictions:
    """keypoints (N, J, 3) [x, y, maxval] in image pixels; the boxes they were
    cut from as centers (N, 2) and scales (N, 2) (size / 200); box_scores (N,)
    (detector score, 1 for ground-truth boxes); images: the N image paths.
    areas (N,) defaults to the box area (scale * 200) w x h, what OKS uses.
    indices (N,), optional: each person's position in the dataset, given when
    some persons have no prediction (images skipped under DATASET.SKIP_BAD_IMAGES);
    metrics that score every person of the set (PCKh) count those as misses."""
    keypoints: np.ndarray
    centers: np.ndarray
    scales: np.ndarray
    box_scores: np.ndarray
    images: List[str] = field(default_factory=list)
    areas: Optional[np.ndarray] = None
    indices: Optional[np.ndarray] = None

    def __post_init__(self):
        self.keypoints = np.asarray(self.keypoints, dtype=np.float64)
        self.centers = np.asarray(self.centers, dtype=np.float64).reshape(-1, 2)
        self.scales = np.asarray(self.scales, dtype=np.float64).reshape(-1, 2)
        self.box_scores = np.asarray(self.box_scores, dtype=np.float64).reshape(-1)
        self.images = list(self.images)
        if self.areas is None:
            self.areas = np.prod(self.scales * PIXEL_STD, axis=1)
        self.areas = np.asarray(self.areas, dtype=np.float64).reshape(-1)
        if self.indices is not None:
            self.indices = np.asarray(self.indices, dtype=np.int64).reshape(-1)
            if len(self.indices) != len(self.keypoints):
                raise ValueError('PosePredictions: {} indices for {} persons'.format(
                    len(self.indices), len(self.keypoints)))
        sizes = {len(self.keypoints), len(self.centers), len(self.scales),
                 len(self.box_scores), len(self.images), len(self.areas)}
        if len(sizes) != 1:
            raise ValueError('PosePredictions: keypoints, centers, scales, box_scores, images '
                             'and areas must have one entry per person; got {}, {}, {}, {}, '
                             '{} and {}'.format(len(self.keypoints), len(self.centers),
                                                len(self.scales), len(self.box_scores),
                                                len(self.images), len(self.areas)))

    def __len__(self):
        return len(self.keypoints)

    def check_finite(self):
        """Raise NonFinitePredictionError naming the first image whose keypoints,
        maxvals, box or score hold NaN or infinity (before anything is written or
        scored)."""
        n = len(self)
        finite = np.ones(n, dtype=bool)
        for values in (self.keypoints, self.centers, self.scales, self.box_scores, self.areas):
            finite &= np.isfinite(values.reshape(n, -1)).all(axis=1)
        if not finite.all():
            first = int(np.flatnonzero(~finite)[0])
            raise NonFinitePredictionError(
                '{} of {} predicted poses are not finite (NaN or infinity), the first of image '
                '{}; nothing was written or evaluated'.format(
                    int((~finite).sum()), n, self.images[first] if self.images else first))

    def in_dataset_order(self, num_persons):
        """keypoints (num_persons, J, 3) with one row per person of the set: the
        persons without a prediction (not in `indices`) are NaN."""
        if self.indices is None:
            return self.keypoints
        full = np.full((num_persons,) + self.keypoints.shape[1:], np.nan)
        full[self.indices] = self.keypoints
        return full

    @classmethod
    def from_columns(cls, preds, all_boxes, img_path):
        """From the original's arrays: preds (N, J, 3) and all_boxes (N, 6)
        [cx, cy, sw, sh, area, score]."""
        all_boxes = np.asarray(all_boxes, dtype=np.float64).reshape(-1, 6)
        return cls(keypoints=preds, centers=all_boxes[:, 0:2], scales=all_boxes[:, 2:4],
                   box_scores=all_boxes[:, 5], images=img_path, areas=all_boxes[:, 4])


def format_name_values(name_values):
    """A markdown table of metric names and values (the original's printout)."""
    names = list(name_values)
    values = ['{:.3f}'.format(float(v)) for v in name_values.values()]
    return '\n'.join(['| ' + ' | '.join(names) + ' |',
                      '|' + '---|' * len(names),
                      '| ' + ' | '.join(values) + ' |'])
