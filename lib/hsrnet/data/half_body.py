"""Half-body augmentation (DATASET.HALF_BODY), as HRNet defines it (Sun et al.,
CVPR 2019): in training, with probability DATASET.PROB_HALF_BODY, a person with
more than DATASET.NUM_JOINTS_HALF_BODY visible joints is cropped around the
visible joints of its upper or its lower body instead of its box.

The rule (`half_body_box`): the upper body when a standard normal draw is below
0.5 and more than two of its joints are visible; else the lower body (the other
joints) when more than two of its joints are visible; else the upper body.
Centre: the mean of the chosen joints; box: their extent (max - min), its short
side grown to the input's aspect ratio, times 1.5. Fewer than two chosen joints,
or a box of no size, leaves the person's own box. The joints themselves are
untouched: those that fall outside the new crop lose their target weight as
any joint outside a crop does.

The draws use numpy's global generator, which the loaders seed per sample (as
the rest of the augmentation, JointsDataset._augmentation), and come after the
scale, rotation and flip draws: those are the same with the feature on or off.
"""
import numpy as np

from hsrnet.utils.errors import ConfigError
from hsrnet.utils.transforms import PIXEL_STD

ENLARGE = 1.5   # the half-body box around the chosen joints' extent (HRNet's)


def upper_body_ids(cfg, keypoints):
    """The upper body's joint ids: DATASET.UPPER_BODY_IDS when given (checked
    against the keypoints' joint count), else the keypoint layout's own."""
    ids = list(cfg.DATASET.UPPER_BODY_IDS)
    num_joints = keypoints.num_joints
    for i in ids:
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < num_joints:
            raise ConfigError('DATASET.UPPER_BODY_IDS: {!r} is not a joint id (0..{} for {} '
                              'joints)'.format(i, num_joints - 1, num_joints))
    if len(set(ids)) != len(ids):
        raise ConfigError('DATASET.UPPER_BODY_IDS: a joint id appears twice in {}'.format(ids))
    ids = ids or list(keypoints.upper_body)
    if not ids and cfg.DATASET.HALF_BODY:
        raise ConfigError('DATASET.HALF_BODY: the {} keypoints declare no upper body; list its '
                          'joint ids in DATASET.UPPER_BODY_IDS'.format(cfg.DATASET.DATASET))
    return ids


def half_body_box(joints, joints_vis, upper, choose_upper, aspect_ratio):
    """The half-body box of one person (module docstring): joints (J, >=2),
    joints_vis (J,) or (J, k) (the first column counts), `upper` a (J,) bool mask
    of the upper body, `choose_upper` whether the normal draw was below 0.5,
    aspect_ratio = input width / height. Returns (center (2,), scale (2,) in units
    of 200 px) or None (the person keeps its box)."""
    vis = np.asarray(joints_vis)
    visible = (vis[:, 0] if vis.ndim == 2 else vis) > 0
    upper_vis, lower_vis = visible & upper, visible & ~upper
    if choose_upper and upper_vis.sum() > 2:
        chosen = upper_vis
    else:
        chosen = lower_vis if lower_vis.sum() > 2 else upper_vis
    if chosen.sum() < 2:
        return None
    points = np.asarray(joints, dtype=np.float64)[chosen, :2]
    center = points.mean(axis=0)
    w, h = points.max(axis=0) - points.min(axis=0)
    w, h = max(w, h * aspect_ratio), max(h, w / aspect_ratio)
    if w <= 0:
        return None
    return center, np.array([w, h]) / PIXEL_STD * ENLARGE


class HalfBody:
    """The augmentation of one dataset: `__call__(joints, joints_vis)` draws and
    returns (center, scale) or None (keep the box)."""

    def __init__(self, cfg, keypoints, image_size):
        self.prob = float(cfg.DATASET.PROB_HALF_BODY)
        self.min_joints = int(cfg.DATASET.NUM_JOINTS_HALF_BODY)
        self.upper = np.zeros(keypoints.num_joints, dtype=bool)
        self.upper[upper_body_ids(cfg, keypoints)] = True
        self.aspect_ratio = float(image_size[0]) / float(image_size[1])

    def __call__(self, joints, joints_vis):
        """Draws nothing for a person with too few visible joints; else a uniform
        draw (below prob: half body) and then a standard normal (which half)."""
        if (joints_vis[:, 0] > 0).sum() <= self.min_joints or np.random.rand() >= self.prob:
            return None
        choose_upper = np.random.randn() < 0.5
        return half_body_box(joints, joints_vis, self.upper, choose_upper, self.aspect_ratio)

    def narrowest(self, joints, joints_vis):
        """The smallest box width (scale units) the augmentation can give this
        person (either half), inf when it gives none: what DATASET.REDUCED_DECODE
        must allow for."""
        if (joints_vis[:, 0] > 0).sum() <= self.min_joints:
            return np.inf
        boxes = [half_body_box(joints, joints_vis, self.upper, choose, self.aspect_ratio)
                 for choose in (True, False)]
        return min([float(box[1][0]) for box in boxes if box is not None], default=np.inf)
