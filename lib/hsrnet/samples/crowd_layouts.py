"""The generated sample in CrowdPose's and OCHuman's file layouts (`generate(...,
layout=CrowdPoseLayout())`, tools/make_sample_data.py --layout): the same scenes
as the COCO sample, written as those datasets' released files so that
data.crowdpose and data.ochuman read them as they read the real ones.

CrowdPose (splits trainval and test, the sets experiments/crowdpose trains and
evaluates on): annotations/crowdpose_<split>.json with 14 joints (shoulders ...
ankles in COCO's order, then the top of the head and the neck, drawn points of every
figure), no 'area' or 'segmentation' in the annotations and a `crowdIndex` per image
entry; images/<id>.jpg.

OCHuman (splits val and test, as experiments/ochuman uses them):
annotations/ochuman_coco_format_<split>_range_0.00_1.00.json, COCO's 17 joints,
image and annotation ids from 1 in each file, 'area' the box's area, only the persons
with keypoints (as the OCHuman API writes them; its segmentations are RLE, polygons
here); images/<number>.jpg, distinct across the two files.
"""
import os

import numpy as np

from hsrnet.samples.figures import EXTRA_POINT_PARTS, JOINT_PARTS, POINT_NAMES, joint_owns_part
from hsrnet.samples.synthetic import CATEGORY, SampleLayout
from hsrnet.utils.keypoints import CROWDPOSE_KEYPOINTS

# CrowdPose's joints among the drawn points: COCO's from the shoulders on, then two more
CROWDPOSE_POINTS = POINT_NAMES[5:] + list(EXTRA_POINT_PARTS)
CROWDPOSE_PARTS = JOINT_PARTS[5:] + list(EXTRA_POINT_PARTS.values())


def crowd_index(annotations):
    """CrowdPose's crowd index of one image (Li et al. 2019): over its persons with
    keypoints, the mean of N_b / N_a, N_a the person's labelled joints, N_b the
    labelled joints of the other persons inside its box; 0 without persons."""
    joints = [np.asarray(a['keypoints'], dtype=np.float64).reshape(-1, 3) for a in annotations]
    ratios = []
    for i, ann in enumerate(annotations):
        if ann['num_keypoints'] == 0:
            continue
        x, y, w, h = ann['bbox']
        inside = sum(int(((k[:, 2] > 0) & (k[:, 0] >= x) & (k[:, 0] < x + w)
                          & (k[:, 1] >= y) & (k[:, 1] < y + h)).sum())
                     for j, k in enumerate(joints) if j != i)
        ratios.append(inside / ann['num_keypoints'])
    return round(float(np.mean(ratios)), 4) if ratios else 0.0


class CrowdPoseLayout(SampleLayout):
    """crowdpose_<split>.json and images/<id>.jpg (module docstring)."""

    name = 'crowdpose'
    splits = ('trainval', 'test')
    point_names = CROWDPOSE_POINTS
    joint_owns_part = joint_owns_part(CROWDPOSE_PARTS)
    category = {'supercategory': 'person', 'id': 1, 'name': 'person',
                'keypoints': list(CROWDPOSE_KEYPOINTS.names),
                'skeleton': [[a + 1, b + 1] for a, b in CROWDPOSE_KEYPOINTS.skeleton]}
    detection_file = None
    image_id_base = (100000, 200000)

    def image_dir(self, split):
        return 'images'

    def annotation_file(self, split):
        return os.path.join('annotations', 'crowdpose_{}.json'.format(split))

    def file_name(self, split_index, i, image_id):
        return '{}.jpg'.format(image_id)

    def annotation(self, ann):
        return {k: v for k, v in ann.items() if k not in ('area', 'segmentation')}

    def image_entry(self, image, annotations):
        entry = {k: v for k, v in image.items() if k != 'license'}
        entry['crowdIndex'] = crowd_index(annotations)
        return entry

    def document(self, seed, images, annotations):
        return {'images': images, 'annotations': annotations, 'categories': [self.category]}


class OCHumanLayout(SampleLayout):
    """ochuman_coco_format_<split>_range_0.00_1.00.json and images/ (module docstring)."""

    name = 'ochuman'
    splits = ('val', 'test')
    detection_file = None
    image_id_base = (1, 1)
    annotation_id_base = (1, 1)

    def image_dir(self, split):
        return 'images'

    def annotation_file(self, split):
        return os.path.join('annotations',
                            'ochuman_coco_format_{}_range_0.00_1.00.json'.format(split))

    def file_name(self, split_index, i, image_id):
        return '{:06d}.jpg'.format(100000 * split_index + i + 1)

    def annotation(self, ann):
        if ann['num_keypoints'] == 0:
            return None
        return dict(ann, area=float(ann['bbox'][2] * ann['bbox'][3]))

    def image_entry(self, image, annotations):
        return {k: v for k, v in image.items() if k != 'license'}

    def document(self, seed, images, annotations):
        return {'annotations': annotations, 'categories': [CATEGORY], 'images': images}


SAMPLE_LAYOUTS = {'coco': SampleLayout, 'crowdpose': CrowdPoseLayout, 'ochuman': OCHumanLayout}
