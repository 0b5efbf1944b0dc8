"""Keypoint datasets and what feeds them to a model: the COCO and MPII datasets
(one registry, DATASETS, that the config checks and the estimator read too),
loaders and samplers, and the batching on the device. Build one with
`build_dataset(cfg, image_set, is_train)`."""
from hsrnet.utils.errors import ConfigError, DataError, ImageNotFoundError

from .joints_dataset import JointsDataset
from .samplers import ImageGroupedSampler
from .coco import COCODataset
from .mpii import MPIIDataset

DATASETS = {'coco': COCODataset, 'mpii': MPIIDataset}


def build_dataset(cfg, image_set, is_train, transform=None, codec=None):
    """The DATASET.DATASET dataset of `image_set` under DATASET.ROOT; `codec` the
    run's HeatmapCodec (default: the config's)."""
    name = cfg.DATASET.DATASET
    if name not in DATASETS:
        raise ConfigError('unknown DATASET.DATASET {!r}; choose one of {}'.format(
            name, ', '.join(sorted(DATASETS))))
    return DATASETS[name](cfg, cfg.DATASET.ROOT, image_set, is_train, transform, codec=codec)


__all__ = ['COCODataset', 'MPIIDataset', 'JointsDataset', 'ImageGroupedSampler',
           'DataError', 'ImageNotFoundError',
           'DATASETS', 'build_dataset']
