"""One prediction per person box, as named arrays."""
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from utils.transforms import PIXEL_STD


@dataclass
class PosePredictions:
    """keypoints (N, J, 3) [x, y, maxval] in image pixels; the boxes they were
    cut from as centers (N, 2) and scales (N, 2) (size / 200); box_scores (N,)
    (detector score, 1 for ground-truth boxes); images: the N image paths.
    areas (N,) defaults to the box area (scale * 200) w x h, what OKS uses."""
    keypoints: np.ndarray
    centers: np.ndarray
    scales: np.ndarray
    box_scores: np.ndarray
    images: List[str] = field(default_factory=list)
    areas: Optional[np.ndarray] = None

    def __post_init__(self):
        self.keypoints = np.asarray(self.keypoints, dtype=np.float64)
        self.centers = np.asarray(self.centers, dtype=np.float64).reshape(-1, 2)
        self.scales = np.asarray(self.scales, dtype=np.float64).reshape(-1, 2)
        self.box_scores = np.asarray(self.box_scores, dtype=np.float64).reshape(-1)
        self.images = list(self.images)
        if self.areas is None:
            self.areas = np.prod(self.scales * PIXEL_STD, axis=1)
        self.areas = np.asarray(self.areas, dtype=np.float64).reshape(-1)
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
