"""CrowdPose's keypoint AP, computed with pycocotools' COCOeval.

The official tool (crowdposetools/cocoeval.py of Jeff-sjtu/CrowdPose, a modified
copy of pycocotools) differs from pycocotools' keypoint evaluation in three ways,
each reproduced here without a copy of it:

- the OKS constants: CrowdPose's 14 (utils.keypoints.CROWDPOSE_KEYPOINTS), set
  as `params.kpt_oks_sigmas`;
- the object scale in the OKS (and in the area ranges): 0.53 x the area of the
  ground-truth box, where pycocotools reads the annotation's 'area' (which the
  CrowdPose files do not have). `crowdpose_areas` writes that value into each
  annotation's 'area', so pycocotools computes CrowdPose's OKS;
- AP easy / medium / hard: the same evaluation on the images of one crowd-index
  bucket (`params.imgIds`), each image's `crowdIndex` below 0.2, in [0.2, 0.8) or
  0.8 and above: the tool's boundaries (it calls get_type_result(first=0.2,
  second=0.8); the paper's text gives 0.1 for the first one). A bucket without an
  annotated person scores -1, as in both tools.

As the tool: at most 20 detections per image (pycocotools' keypoint default too)
and the area range 'all' only; AP, AP .5, AP .75, AR, AR .5 and AR .75 over all
images. The tool rounds the bucket APs to 4 decimals; they are not rounded here.
"""
import logging
from collections import OrderedDict

from hsrnet.utils.errors import DataError

from .coco import COCOKeypointMetric, keypoint_cocoeval

logger = logging.getLogger(__name__)

CROWD_INDEX_BOUNDS = (0.2, 0.8)   # easy < 0.2 <= medium < 0.8 <= hard
AREA_OF_BOX = 0.53                # CrowdPose's object scale: 0.53 x box width x height
BUCKETS = ('easy', 'medium', 'hard')
STATS_NAMES = ['AP', 'AP .5', 'AP .75', 'AR', 'AR .5', 'AR .75',
               'AP easy', 'AP medium', 'AP hard']
# where CrowdPose's numbers sit in pycocotools' keypoint `stats` (area 'all')
COCO_STATS = {'AP': 0, 'AP .5': 1, 'AP .75': 2, 'AR': 5, 'AR .5': 6, 'AR .75': 7}


def crowdpose_areas(coco):
    """Set each annotation's 'area' of the pycocotools COCO object `coco` to CrowdPose's
    object scale, 0.53 x its box's width x height (in place; the same every time)."""
    for ann in coco.dataset.get('annotations', []):
        width, height = ann['bbox'][2], ann['bbox'][3]
        ann['area'] = AREA_OF_BOX * width * height
    return coco


def crowd_buckets(images, bounds=CROWD_INDEX_BOUNDS, source='annotations'):
    """{'easy': ids, 'medium': ids, 'hard': ids}: the image ids of `images` (image
    entries with 'id' and 'crowdIndex') by crowd index: below bounds[0], below
    bounds[1], the rest. DataError naming `source` when an image has no crowdIndex."""
    first, second = bounds
    buckets = OrderedDict((name, []) for name in BUCKETS)
    for image in images:
        index = image.get('crowdIndex')
        if index is None:
            raise DataError('{}: image {} has no "crowdIndex" (CrowdPose\'s evaluation needs '
                            'one per image)'.format(source, image.get('id', '?')))
        name = 'easy' if index < first else 'medium' if index < second else 'hard'
        buckets[name].append(image['id'])
    return buckets


class CrowdPoseMetric(COCOKeypointMetric):
    """CrowdPose's evaluation of one image set (the module docstring): the arguments of
    COCOKeypointMetric (sigmas: CrowdPose's), and `bounds` the crowd-index boundaries
    of the easy / medium / hard images. Sets the annotations' areas of `coco`
    (crowdpose_areas)."""

    stats_names = STATS_NAMES
    title = 'CrowdPose keypoints'

    def __init__(self, coco, image_ids, image_set, oks_thre, in_vis_thre, sigmas,
                 annotation_file='', bounds=CROWD_INDEX_BOUNDS):
        super().__init__(coco, image_ids, image_set, oks_thre, in_vis_thre, sigmas=sigmas,
                         annotation_file=annotation_file)
        crowdpose_areas(coco)
        self.buckets = crowd_buckets(coco.dataset['images'], bounds,
                                     annotation_file or 'annotations')

    def summarize(self, detections):
        # pycocotools' printout (in the debug log) also has area ranges CrowdPose does not use
        coco_eval = keypoint_cocoeval(self.coco, detections, self.sigmas)
        values = OrderedDict((name, float(coco_eval.stats[i])) for name, i in COCO_STATS.items())
        for name, ids in self.buckets.items():
            values['AP ' + name] = self.bucket_ap(detections, ids)
        logger.info('CrowdPose buckets: %s', ', '.join(
            '{} {} images'.format(len(ids), name) for name, ids in self.buckets.items()))
        return values

    def bucket_ap(self, detections, image_ids):
        """AP (OKS .50:.95, area 'all', 20 detections per image) on `image_ids`
        only; -1 when they hold no annotated person."""
        if not image_ids:   # pycocotools reads an empty imgIds as every image
            return -1.0
        coco_eval = keypoint_cocoeval(self.coco, detections, self.sigmas, image_ids)
        return float(coco_eval.stats[0])
