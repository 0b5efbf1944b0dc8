"""Data loaders whose results do not depend on how a run was split up.

Training: the order of epoch e and all augmentation randomness are functions of
(data seed, e, rank) only, so a run resumed at epoch k replays epoch k exactly as
an uninterrupted run would (same WORKERS assumed: each worker has its own stream).
Validation: each rank takes a contiguous slice of the items, without the padding
that DistributedSampler adds, so gathered results equal those of one process.

With a `batcher` (dataset.batching.DeviceBatcher) the workers return uint8 crops
(dataset.load_sample) and the batcher finishes each batch on the device: the
loaders then yield the public item's (input, target, target_weight, meta), built
on the device. LOADER.* sets pinned memory, persistent workers and prefetching.
"""
import math

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, default_collate

from utils.seeding import derive_seed, seed_everything


class SampleView(Dataset):
    """`dataset.load_sample(i)` as the items (what the workers return)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, idx):
        return self.dataset.load_sample(idx)


def collate_samples(samples):
    """load_sample dicts -> (crops uint8 tensor (N, H, W, 3), meta collated as the
    DataLoader collates the public item's meta). With LOADER.GPU_DECODE the samples
    hold JPEG bytes instead of crops: (list of uint8 arrays, meta with 'warp')."""
    if 'crop' in samples[0]:
        crops = torch.from_numpy(np.stack([s['crop'] for s in samples]))
        skip = 'crop'
    else:
        crops = [s['jpeg'] for s in samples]
        skip = 'jpeg'
    meta = default_collate([{k: v for k, v in s.items() if k != skip} for s in samples])
    return crops, meta


class EpochSeededLoader:
    """A training DataLoader to be told the epoch before each pass.

    The sampler shuffles with (seed, epoch) (DistributedSampler does that, also
    for a world of one). The loader's generator, re-seeded each epoch, draws the
    base seed from which PyTorch seeds python, numpy and torch in every worker;
    the main process is re-seeded too, for WORKERS 0.
    """

    def __init__(self, dataset, batch_size, workers, shuffle, seed, dist_ctx, pin_memory,
                 batcher=None, group_by_image=False, persistent_workers=False,
                 prefetch_factor=0):
        self.seed = seed
        self.rank = dist_ctx.rank
        if group_by_image and shuffle:
            self.sampler = GroupedDistributedSampler(dataset, dist_ctx, seed)
        else:
            self.sampler = DistributedSampler(dataset, num_replicas=dist_ctx.world_size,
                                              rank=dist_ctx.rank, shuffle=shuffle, seed=seed)
        self.generator = torch.Generator()
        self.batcher = batcher
        source, collate = _source(dataset, batcher)
        self.loader = DataLoader(source, collate_fn=collate, batch_size=batch_size,
                                 sampler=self.sampler, num_workers=workers,
                                 pin_memory=pin_memory, generator=self.generator,
                                 **_worker_options(workers, persistent_workers,
                                                   prefetch_factor))
        self.dataset = dataset

    def set_epoch(self, epoch):
        self.sampler.set_epoch(epoch)
        epoch_seed = derive_seed(self.seed, epoch, self.rank)
        self.generator.manual_seed(epoch_seed)
        seed_everything(epoch_seed)

    def __iter__(self):
        return _batches(self.loader, self.batcher)

    def __len__(self):
        return len(self.loader)

    @property
    def batch_size(self):
        return self.loader.batch_size


def _source(dataset, batcher):
    """(dataset, collate_fn) for the DataLoader: crops for a batcher, else items."""
    if batcher is None:
        return dataset, None
    return SampleView(dataset), collate_samples


def _worker_options(workers, persistent_workers, prefetch_factor):
    if workers <= 0:
        return {}
    options = {'persistent_workers': bool(persistent_workers)}
    if prefetch_factor > 0:
        options['prefetch_factor'] = int(prefetch_factor)
    return options


def _batches(loader, batcher):
    if batcher is None:
        yield from loader
        return
    for batch in loader:
        yield batcher(batch)


def loader_options(cfg, device):
    """Keyword arguments of the loaders from LOADER.* (memory is pinned on CUDA only)."""
    return {'pin_memory': bool(cfg.LOADER.PIN_MEMORY) and device.type == 'cuda',
            'persistent_workers': bool(cfg.LOADER.PERSISTENT_WORKERS),
            'prefetch_factor': int(cfg.LOADER.PREFETCH_FACTOR)}


class GroupedDistributedSampler(Sampler):
    """DATASET.GROUP_BY_IMAGE: the images are shuffled, the persons of each image
    follow one another (in shuffled order), so that one decode serves them all;
    a batch still mixes several images. The order is a function of (seed, epoch)
    only; rank r of a world of n takes the r-th contiguous n-th of it (padded by
    repeating its start, as DistributedSampler does), so images stay on one rank."""

    def __init__(self, dataset, dist_ctx, seed):
        self.groups = dataset.image_groups()
        self.num_items = sum(len(g) for g in self.groups)
        self.rank, self.world = dist_ctx.rank, dist_ctx.world_size
        self.seed = int(seed or 0)
        self.epoch = 0
        self.num_samples = math.ceil(self.num_items / self.world)

    def set_epoch(self, epoch):
        self.epoch = epoch

    def order(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        parts = [rng.permutation(self.groups[g]) for g in rng.permutation(len(self.groups))]
        order = np.concatenate(parts).tolist() if parts else []
        total = self.num_samples * self.world
        while order and len(order) < total:
            order += order[:total - len(order)]
        return order

    def __iter__(self):
        start = self.rank * self.num_samples
        return iter(self.order()[start:start + self.num_samples])

    def __len__(self):
        return self.num_samples


class ShardSampler(Sampler):
    """A contiguous slice of the items for each rank: every item exactly once
    overall, and the persons of one image (adjacent in the dataset) stay on one
    rank, so each image is decoded by one rank only."""

    def __init__(self, num_items, dist_ctx):
        start = num_items * dist_ctx.rank // dist_ctx.world_size
        stop = num_items * (dist_ctx.rank + 1) // dist_ctx.world_size
        self.indices = list(range(start, stop))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


class DeviceBatches:
    """A DataLoader of crops whose batches a batcher finishes on the device; it
    answers what validation asks of a loader (sampler, len, batch_size)."""

    def __init__(self, loader, batcher):
        self.loader, self.batcher = loader, batcher
        self.sampler, self.dataset = loader.sampler, loader.dataset

    def __iter__(self):
        return _batches(self.loader, self.batcher)

    def __len__(self):
        return len(self.loader)

    @property
    def batch_size(self):
        return self.loader.batch_size


def build_val_loader(dataset, batch_size, workers, dist_ctx, pin_memory, batcher=None,
                     persistent_workers=False, prefetch_factor=0):
    sampler = ShardSampler(len(dataset), dist_ctx)
    source, collate = _source(dataset, batcher)
    loader = DataLoader(source, batch_size=batch_size, sampler=sampler,
                        num_workers=workers, pin_memory=pin_memory, collate_fn=collate,
                        **_worker_options(workers, persistent_workers, prefetch_factor))
    return loader if batcher is None else DeviceBatches(loader, batcher)
