"""Keypoint datasets.

The original's scripts build a dataset by name,
    eval('dataset.' + cfg.DATASET.DATASET)(cfg, root, image_set, is_train, transform)
so `dataset.coco` and `dataset.mpii` are bound to the classes here (as the
original did). The modules stay importable: `from dataset.coco import
COCODataset` resolves through the module registry. New code should call
`build_dataset(cfg, image_set, is_train)`.
"""
from utils.errors import ConfigError, DataError, ImageNotFoundError

from .JointsDataset import ImageGroupedSampler, JointsDataset
from .coco import COCODataset
from .mpii import MPIIDataset

DATASETS = {'coco': COCODataset, 'mpii': MPIIDataset}
coco = COCODataset
mpii = MPIIDataset


def build_dataset(cfg, image_set, is_train, transform=None):
    """The DATASET.DATASET dataset of `image_set` under DATASET.ROOT."""
    name = cfg.DATASET.DATASET
    if name not in DATASETS:
        raise ConfigError('unknown DATASET.DATASET {!r}; choose one of {}'.format(
            name, ', '.join(sorted(DATASETS))))
    return DATASETS[name](cfg, cfg.DATASET.ROOT, image_set, is_train, transform)


__all__ = ['COCODataset', 'MPIIDataset', 'JointsDataset', 'ImageGroupedSampler',
           'DataError', 'ImageNotFoundError',
           'DATASETS', 'build_dataset', 'coco', 'mpii']
