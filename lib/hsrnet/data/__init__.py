"""Keypoint datasets and what feeds them to a model: the COCO, MPII, CrowdPose and
OCHuman datasets (one registry, DATASETS, that the config checks and the estimator read too),
loaders and samplers, and the batching on the device. Build one with
`build_dataset(cfg, image_set, is_train)`."""
from hsrnet.utils.errors import ConfigError, DataError, ImageNotFoundError

from .joints_dataset import JointsDataset
from .layouts import keypoint_layout
from .samplers import ImageGroupedSampler
from .coco import COCODataset, COCOFormatDataset
from .crowdpose import CrowdPoseDataset
from .mpii import MPIIDataset
from .ochuman import OCHumanDataset

DATASETS = {'coco': COCODataset, 'mpii': MPIIDataset, 'crowdpose': CrowdPoseDataset,
            'ochuman': OCHumanDataset}


def build_dataset(cfg, image_set, is_train, transform=None, codec=None):
    """The DATASET.DATASET dataset of `image_set` under DATASET.ROOT; `codec` the
    run's HeatmapCodec (default: the config's)."""
    name = cfg.DATASET.DATASET
    if name not in DATASETS:
        raise ConfigError('unknown DATASET.DATASET {!r}; choose one of {}'.format(
            name, ', '.join(sorted(DATASETS))))
    return DATASETS[name](cfg, cfg.DATASET.ROOT, image_set, is_train, transform, codec=codec)


def experiment_keypoints(cfg):
    """The keypoints of the experiment's dataset (DATASET.DATASET), as its dataset
    builds them (see layouts.keypoint_layout); what the estimator and tools use."""
    dataset = DATASETS[cfg.DATASET.DATASET]
    return keypoint_layout(cfg, dataset.native_keypoints, dataset.custom_keypoints)


__all__ = ['experiment_keypoints', 'keypoint_layout', 'COCODataset', 'MPIIDataset',
           'COCOFormatDataset', 'CrowdPoseDataset', 'OCHumanDataset', 'JointsDataset',
           'ImageGroupedSampler',
           'DataError', 'ImageNotFoundError',
           'DATASETS', 'build_dataset']
