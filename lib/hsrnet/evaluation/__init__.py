"""Metrics, apart from the datasets: COCO keypoint AP (rescoring, OKS-NMS,
results json, COCOeval) and MPII PCKh. Both take `PosePredictions`, named
arrays of one prediction per person box; a dataset builds its metric with
`dataset.get_metric()`."""
from .predictions import PosePredictions, format_name_values
from .coco import COCOKeypointMetric, STATS_NAMES, rescore
from .mpii import PCKhMetric, pckh

__all__ = ['PosePredictions', 'format_name_values', 'COCOKeypointMetric', 'STATS_NAMES',
           'rescore', 'PCKhMetric', 'pckh']
