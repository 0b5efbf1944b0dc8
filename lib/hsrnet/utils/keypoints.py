"""Keypoint sets: joint names, left/right flip pairs, OKS sigmas and skeleton.

COCO's 17 (OCHuman's too), MPII's 16 and CrowdPose's 14 joints are defined here
once; a COCO-format dataset with its own joints declares them in the yaml (DATASET.FLIP_PAIRS,
DATASET.OKS_SIGMAS, DATASET.SKELETON with MODEL.NUM_JOINTS) and
hsrnet.data.keypoint_layout builds and checks an experiment's layout.
"""
from dataclasses import dataclass

import numpy as np

from hsrnet.utils.errors import ConfigError


@dataclass(frozen=True)
class KeypointLayout:
    """names: one per joint ('' when unnamed); flip_pairs: ((left, right), ...);
    sigmas: the per-joint OKS constants (None: no OKS for this set); skeleton:
    ((a, b), ...) limbs for drawing; upper_body: the joints of the upper body
    (half-body augmentation; () where the set declares none). Joint ids are 0-based."""
    names: tuple
    flip_pairs: tuple
    sigmas: tuple = None
    skeleton: tuple = ()
    upper_body: tuple = ()

    @property
    def num_joints(self):
        return len(self.names)

    def sides(self):
        """Per joint +1 for the first joint of each flip pair, -1 for the second
        and 0 for unpaired joints (drawing gives each side its own colour)."""
        side = np.zeros(self.num_joints, dtype=np.int64)
        for a, b in self.flip_pairs:
            side[a], side[b] = 1, -1
        return side

    def check(self, source='keypoints'):
        """Raise ConfigError when pairs, sigmas or limbs do not fit num_joints."""
        j = self.num_joints
        seen = set()
        for pair in self.flip_pairs:
            if len(pair) != 2 or not all(isinstance(i, (int, np.integer)) for i in pair):
                raise ConfigError('{}: flip pair {} must be [left, right] joint ids'.format(
                    source, list(pair)))
            for i in pair:
                if not 0 <= i < j:
                    raise ConfigError('{}: flip pair {} names joint {}, but there are {} joints '
                                      '(0..{})'.format(source, list(pair), i, j, j - 1))
                if i in seen:
                    raise ConfigError('{}: joint {} appears in more than one flip pair'.format(
                        source, i))
                seen.add(i)
            if pair[0] == pair[1]:
                raise ConfigError('{}: flip pair {} pairs a joint with itself'.format(
                    source, list(pair)))
        if self.sigmas is not None:
            if len(self.sigmas) != j:
                raise ConfigError('{}: {} OKS sigmas for {} joints (one per joint needed)'
                                  .format(source, len(self.sigmas), j))
            if min(self.sigmas) <= 0:
                raise ConfigError('{}: OKS sigmas must be positive'.format(source))
        for limb in self.skeleton:
            if len(limb) != 2 or not all(0 <= i < j for i in limb):
                raise ConfigError('{}: limb {} must be two joint ids in 0..{}'.format(
                    source, list(limb), j - 1))
        return self


COCO_KEYPOINTS = KeypointLayout(
    names=('nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear',
           'left_shoulder', 'right_shoulder', 'left_elbow', 'right_elbow',
           'left_wrist', 'right_wrist', 'left_hip', 'right_hip',
           'left_knee', 'right_knee', 'left_ankle', 'right_ankle'),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    # COCO's per-keypoint OKS constants
    sigmas=tuple(np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62,
                           1.07, 1.07, .87, .87, .89, .89]) / 10.0),
    # head, arms, torso, legs
    skeleton=((0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10),
              (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14), (14, 16)),
    upper_body=tuple(range(11)))   # face, shoulders, arms

MPII_KEYPOINTS = KeypointLayout(
    names=('r_ankle', 'r_knee', 'r_hip', 'l_hip', 'l_knee', 'l_ankle', 'pelvis', 'thorax',
           'upper_neck', 'head_top', 'r_wrist', 'r_elbow', 'r_shoulder', 'l_shoulder',
           'l_elbow', 'l_wrist'),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    sigmas=None,
    skeleton=((0, 1), (1, 2), (2, 6), (3, 6), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
              (7, 12), (12, 11), (11, 10), (7, 13), (13, 14), (14, 15)),
    upper_body=(7, 8, 9, 10, 11, 12, 13, 14, 15))   # thorax, neck, head, arms

CROWDPOSE_KEYPOINTS = KeypointLayout(
    # the order of the released crowdpose_*.json files; 'head' is the top of the head
    names=('left_shoulder', 'right_shoulder', 'left_elbow', 'right_elbow',
           'left_wrist', 'right_wrist', 'left_hip', 'right_hip',
           'left_knee', 'right_knee', 'left_ankle', 'right_ankle', 'head', 'neck'),
    flip_pairs=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)),
    # CrowdPose's OKS constants (crowdposetools/cocoeval.py, computeOks): COCO's
    # for the limbs, the shoulders' .79 for the head and the neck
    sigmas=tuple(np.array([.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89,
                           .79, .79]) / 10.0),
    skeleton=((12, 13), (13, 0), (13, 1), (0, 2), (2, 4), (1, 3), (3, 5), (0, 6), (1, 7),
              (6, 7), (6, 8), (8, 10), (7, 9), (9, 11)),
    upper_body=(0, 1, 2, 3, 4, 5, 12, 13))   # shoulders, arms, head, neck
