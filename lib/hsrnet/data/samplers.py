"""The orders in which the loaders visit a dataset's persons: image-grouped
shuffling (DATASET.GROUP_BY_IMAGE), a contiguous shard per rank for validation, and
the resumable order of an epoch with each sample's augmentation seed."""
import math

import numpy as np
import torch
from torch.utils.data import Sampler

from hsrnet.utils.seeding import derive_seed


class ImageGroupedSampler(Sampler):
    """The persons of one image one after another, the images and the persons of each
    shuffled: with the per-process image cache one decode serves them all
    (DATASET.GROUP_BY_IMAGE); a batch still mixes several images.

    The order is a function of (seed, epoch): `set_epoch` sets the epoch, and each
    pass moves on to the next one. With no seed, each pass draws one from torch's
    global generator (so torch.manual_seed makes it reproducible). With `dist_ctx`
    (torchrun), rank r of n takes the r-th contiguous n-th of the order (padded by
    repeating its start, as DistributedSampler does), so an image stays on one rank."""

    def __init__(self, dataset, seed=None, dist_ctx=None):
        self.groups = dataset.image_groups()
        self.num_items = sum(len(g) for g in self.groups)
        self.rank, self.world = (dist_ctx.rank, dist_ctx.world_size) if dist_ctx else (0, 1)
        self.seed = seed
        self.epoch = 0
        self.num_samples = math.ceil(self.num_items / self.world)

    def set_epoch(self, epoch):
        self.epoch = epoch

    def order(self):
        seed = self.seed if self.seed is not None else \
            int(torch.empty((), dtype=torch.int64).random_().item())
        rng = np.random.default_rng([seed, self.epoch])
        parts = [rng.permutation(self.groups[g]) for g in rng.permutation(len(self.groups))]
        order = np.concatenate(parts).tolist() if parts else []
        total = self.num_samples * self.world
        while order and len(order) < total:
            order += order[:total - len(order)]
        return order

    def __iter__(self):
        start = self.rank * self.num_samples
        order = self.order()[start:start + self.num_samples]
        self.epoch += 1
        return iter(order)

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


class ResumableSampler(Sampler):
    """The order of sampler `order` (DistributedSampler or ImageGroupedSampler,
    a function of seed and epoch) from position `start` on, each index paired
    with the seed of its augmentation."""

    def __init__(self, order, rank, seed):
        self.order = order
        self.seed = seed
        self.rank = rank
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch, start=0):
        self.order.set_epoch(epoch)
        self.epoch = epoch
        self.start = start

    def __iter__(self):
        indices = list(self.order)
        for position in range(self.start, len(indices)):
            yield indices[position], derive_seed(self.seed, self.epoch, self.rank, position)

    def __len__(self):
        return max(len(self.order) - self.start, 0)
