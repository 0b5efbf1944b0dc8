"""Data loaders whose results do not depend on how a run was split up.

Training: the order of epoch e and all augmentation randomness are functions of
(data seed, e, rank) only, so a run resumed at epoch k replays epoch k exactly as
an uninterrupted run would (same WORKERS assumed: each worker has its own stream).
Validation: each rank takes a contiguous slice of the items, without the padding
that DistributedSampler adds, so gathered results equal those of one process.
"""
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from utils.seeding import derive_seed, seed_everything


class EpochSeededLoader:
    """A training DataLoader to be told the epoch before each pass.

    The sampler shuffles with (seed, epoch) (DistributedSampler does that, also
    for a world of one). The loader's generator, re-seeded each epoch, draws the
    base seed from which PyTorch seeds python, numpy and torch in every worker;
    the main process is re-seeded too, for WORKERS 0.
    """

    def __init__(self, dataset, batch_size, workers, shuffle, seed, dist_ctx, pin_memory):
        self.seed = seed
        self.rank = dist_ctx.rank
        self.sampler = DistributedSampler(dataset, num_replicas=dist_ctx.world_size,
                                          rank=dist_ctx.rank, shuffle=shuffle, seed=seed)
        self.generator = torch.Generator()
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=self.sampler,
                                 num_workers=workers, pin_memory=pin_memory,
                                 generator=self.generator)
        self.dataset = dataset

    def set_epoch(self, epoch):
        self.sampler.set_epoch(epoch)
        epoch_seed = derive_seed(self.seed, epoch, self.rank)
        self.generator.manual_seed(epoch_seed)
        seed_everything(epoch_seed)

    def __iter__(self):
        return iter(self.loader)

    def __len__(self):
        return len(self.loader)

    @property
    def batch_size(self):
        return self.loader.batch_size


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


def build_val_loader(dataset, batch_size, workers, dist_ctx, pin_memory):
    sampler = ShardSampler(len(dataset), dist_ctx)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                      num_workers=workers, pin_memory=pin_memory)
