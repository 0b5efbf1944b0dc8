"""Metrics, apart from the datasets: COCO keypoint AP (rescoring, OKS-NMS,
results json, COCOeval; OCHuman's too), CrowdPose's AP with its crowd-index
buckets (on COCOeval) and MPII PCKh. They take `PosePredictions`, named arrays of
one prediction per person box; a dataset builds its metric with
`dataset.get_metric()`."""
from .predictions import PosePredictions, format_name_values
from .coco import COCOKeypointMetric, STATS_NAMES, keypoint_cocoeval, rescore
from .crowdpose import CrowdPoseMetric, crowd_buckets, crowdpose_areas
from .mpii import PCKhMetric, pckh

__all__ = ['PosePredictions', 'format_name_values', 'COCOKeypointMetric', 'STATS_NAMES',
           'keypoint_cocoeval', 'rescore', 'CrowdPoseMetric', 'crowd_buckets',
           'crowdpose_areas', 'PCKhMetric', 'pckh']
