"""CrowdPose (Li et al., CVPR 2019): 14 joints, COCO-format files with a crowd index
per image; CrowdPose's evaluation (evaluation.crowdpose: AP, and AP easy / medium /
hard by crowd index).

Layout under DATASET.ROOT (sets: train, val, test, trainval):
    annotations/crowdpose_<set>.json   COCO format, 14 keypoints per person,
                                       "crowdIndex" in each image entry
    images/<file_name>                 e.g. images/100000.jpg
    TEST.COCO_BBOX_FILE: a COCO results list of person detections (optional)
"""
import logging

from hsrnet.evaluation.crowdpose import CrowdPoseMetric, crowdpose_areas
from hsrnet.utils.keypoints import CROWDPOSE_KEYPOINTS

from .coco import COCODataset, COCOFormatDataset

logger = logging.getLogger(__name__)


class CrowdPoseDataset(COCOFormatDataset):
    """CrowdPose: left/right shoulder, elbow, wrist, hip, knee, ankle, then head
    (its top) and neck. The annotations carry no 'area': each person's is set to
    CrowdPose's object scale, 0.53 x its box area, as its evaluation uses it."""

    native_keypoints = CROWDPOSE_KEYPOINTS
    num_joints = CROWDPOSE_KEYPOINTS.num_joints
    flip_pairs = [list(pair) for pair in CROWDPOSE_KEYPOINTS.flip_pairs]
    annotation_pattern = 'crowdpose_{}.json'
    title = 'CrowdPose'

    def __init__(self, cfg, root, image_set, is_train, transform=None, codec=None):
        super().__init__(cfg, root, image_set, is_train, transform, codec)
        if not is_train:
            self.get_metric()   # a set without crowd indices fails here, not after a run

    @staticmethod
    def _load_coco(path):
        return crowdpose_areas(COCODataset._load_coco(path))

    def get_metric(self):
        """CrowdPose's AP of this set (rescoring, OKS-NMS and the results json as
        COCO's; evaluation.crowdpose)."""
        return CrowdPoseMetric(self.coco, self._image_id_of_path, self.image_set,
                               self.oks_thre, self.in_vis_thre, sigmas=self.keypoints.sigmas,
                               annotation_file=self.annotation_file)
