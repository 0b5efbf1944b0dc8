"""Shim package: the original's `dataset` (spec/API.md). Its scripts build a dataset
by `eval('dataset.' + cfg.DATASET.DATASET)(cfg, root, image_set, is_train, transform)`,
so `dataset.coco` and `dataset.mpii` are the classes, as there (and
`dataset.crowdpose`, `dataset.ochuman`); the modules stay
importable by name (`from dataset.coco import COCODataset`). hsrnet.data holds them."""
from hsrnet.data import *  # noqa: F401,F403
from hsrnet.data import COCODataset, CrowdPoseDataset, MPIIDataset, OCHumanDataset

from . import coco as _coco_module, mpii as _mpii_module  # noqa: F401  (registers the names)

coco = COCODataset
mpii = MPIIDataset
crowdpose = CrowdPoseDataset
ochuman = OCHumanDataset
