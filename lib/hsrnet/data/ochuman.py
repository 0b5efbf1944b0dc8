"""OCHuman (Zhang et al., CVPR 2019, "Pose2Seg"): heavily occluded people, COCO's 17
joints, val and test sets only (it is a benchmark: the usual protocol evaluates a
model trained on COCO); COCO's evaluation (COCOeval with COCO's OKS sigmas).

Layout under DATASET.ROOT (sets: val, test), the COCO-format files of the OCHuman
API (ochumanApi toCocoFormart, every person: maxIouRange 0.00-1.00):
    annotations/ochuman_coco_format_<set>_range_0.00_1.00.json
    images/<file_name>                 e.g. images/000001.jpg
    TEST.COCO_BBOX_FILE: a COCO results list of person detections (optional)
The val and test files both number their images from 1; each set is read alone.
"""
from hsrnet.utils.keypoints import COCO_KEYPOINTS

from .coco import COCOFormatDataset


class OCHumanDataset(COCOFormatDataset):
    """OCHuman in COCO's format: COCO's keypoints, the annotation's 'area' its box
    area (as the OCHuman API writes it)."""

    native_keypoints = COCO_KEYPOINTS
    num_joints = COCO_KEYPOINTS.num_joints
    flip_pairs = [list(pair) for pair in COCO_KEYPOINTS.flip_pairs]
    annotation_pattern = 'ochuman_coco_format_{}_range_0.00_1.00.json'
    title = 'OCHuman'
