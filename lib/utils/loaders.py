"""Data loaders whose results do not depend on how a run was split up.

Training: the order of epoch e is a function of (data seed, e) and the
augmentation randomness of each sample a function of (data seed, e, rank, the
sample's position in the epoch): python's, numpy's and torch's generators are
seeded from it just before the sample is read, in whichever process reads it.
So a run resumed at epoch k, or in the middle of it (`set_epoch(k, start)`
skips the batches already trained on), replays what an uninterrupted run would
have done, whatever WORKERS is.
Validation: each rank takes a contiguous slice of the items, without the padding
that DistributedSampler adds, so gathered results equal those of one process.
Both loaders drop the items a dataset returns as None (a bad image skipped under
DATASET.SKIP_BAD_IMAGES) and count them in the batch's meta['skipped'].
"""
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from torch.utils.data._utils.collate import default_collate

from utils.preemption import ignore_stop_signals
from utils.seeding import derive_seed, seed_everything


def collate_skipping(items):
    """default_collate of the items that are not None; the batch's meta gets
    'skipped': how many were None. A batch of None only is None."""
    kept = [item for item in items if item is not None]
    if not kept:
        return None
    batch = default_collate(kept)
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[-1], dict):
        batch[-1]['skipped'] = len(items) - len(kept)
    return batch


class SeededItems(Dataset):
    """`dataset` read through (index, seed) keys: the global generators are
    seeded with `seed` before `dataset[index]`."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key
        seed_everything(seed)
        return self.dataset[index]


class ResumableSampler(Sampler):
    """DistributedSampler's order for (seed, epoch) from position `start` on,
    each index paired with the seed of its augmentation."""

    def __init__(self, dataset, world_size, rank, shuffle, seed):
        self.order = DistributedSampler(dataset, num_replicas=world_size, rank=rank,
                                        shuffle=shuffle, seed=seed)
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


class EpochSeededLoader:
    """A training DataLoader to be told the epoch (and where in it to start)
    before each pass; see the module docstring."""

    def __init__(self, dataset, batch_size, workers, shuffle, seed, dist_ctx, pin_memory):
        self.seed = seed
        self.rank = dist_ctx.rank
        self.world_size = dist_ctx.world_size
        self.sampler = ResumableSampler(dataset, dist_ctx.world_size, dist_ctx.rank,
                                        shuffle, seed)
        self.generator = torch.Generator()
        self.loader = DataLoader(SeededItems(dataset), batch_size=batch_size,
                                 sampler=self.sampler, num_workers=workers,
                                 pin_memory=pin_memory, generator=self.generator,
                                 collate_fn=collate_skipping,
                                 worker_init_fn=ignore_stop_signals if workers else None)
        self.dataset = dataset

    def set_epoch(self, epoch, start_batch=0):
        """Epoch `epoch`, from its batch `start_batch` on (those before it are
        skipped: a resumed run continues where the interrupted one stopped)."""
        if not 0 <= start_batch <= self.batches_per_epoch:
            raise ValueError('cannot start epoch {} at batch {}: it has {} batches'.format(
                epoch, start_batch, self.batches_per_epoch))
        self.sampler.set_epoch(epoch, start_batch * self.batch_size)
        epoch_seed = derive_seed(self.seed, epoch, self.rank)
        self.generator.manual_seed(epoch_seed)
        seed_everything(epoch_seed)

    @property
    def batches_per_epoch(self):
        """Batches in a whole epoch (len() counts those left from the start batch)."""
        samples = len(self.sampler.order)
        return (samples + self.batch_size - 1) // self.batch_size

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
                      num_workers=workers, pin_memory=pin_memory,
                      collate_fn=collate_skipping)
