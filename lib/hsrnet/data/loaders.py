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

With a `batcher` (data.batching.DeviceBatcher) the workers return uint8 crops
(dataset.load_sample) and the batcher finishes each batch on the device: the
loaders then yield the public item's (input, target, target_weight, meta), built
on the device. LOADER.* sets pinned memory, persistent workers and prefetching.
"""

import numpy as np
import torch
from torch.utils.data import (DataLoader, Dataset, DistributedSampler, default_collate,
                              get_worker_info)

from hsrnet.utils.preemption import ignore_stop_signals, kill_workers_at_exit
from hsrnet.data.samplers import ImageGroupedSampler, ResumableSampler, ShardSampler
from hsrnet.utils.seeding import derive_seed, seed_everything, seed_sample


def opencv_single_threaded(workers):
    """OpenCV on one thread in this process before DataLoader workers are forked
    from it, which they inherit. Each worker is one of many processes: OpenCV's own
    pool (a thread per core in every worker) oversubscribed the cores (15 workers on
    16 cores delivered 1.38x more with it off), and a crop's warp is too small to
    gain from threads. It is set here, not in the workers: a forked child that
    resizes the pool it inherited waits forever on the parent's threads."""
    if workers > 0:
        import cv2
        cv2.setNumThreads(1)


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
    hold JPEG bytes instead of crops: (list of uint8 arrays, meta with 'warp').
    Samples that are None (skipped bad images) are dropped and counted in
    meta['skipped']; a batch of None only is None."""
    count = len(samples)
    samples = [s for s in samples if s is not None]
    if not samples:
        return None
    if 'crop' in samples[0]:
        crops = _stacked([s['crop'] for s in samples])
        skip = 'crop'
    else:
        crops = [s['jpeg'] for s in samples]
        skip = 'jpeg'
    meta = {key: _collate_field([s[key] for s in samples]) for key in samples[0] if key != skip}
    meta['skipped'] = count - len(samples)
    return crops, meta


def _collate_field(values):
    """One meta field of a batch, as numpy (strings as a list): pickled with the
    batch instead of one shared-memory tensor each, which costs both processes a
    file descriptor round trip per field and batch. `meta_tensors` (in the main
    process) gives the tensors default_collate would have made."""
    if isinstance(values[0], str):
        return list(values)
    return np.stack(values) if isinstance(values[0], np.ndarray) else np.asarray(values)


def meta_tensors(meta):
    """The numpy fields of `collate_samples`' meta as tensors (no copy): the meta of
    the public item's batches (float64, int64 as default_collate makes them)."""
    return {key: torch.from_numpy(value) if isinstance(value, np.ndarray) else value
            for key, value in meta.items()}


def _stacked(arrays):
    """torch tensor of the stacked uint8 arrays; in a DataLoader worker, written
    straight into shared memory (as default_collate does), which the batch has to
    reach anyway: one copy of the crops instead of two."""
    shape = (len(arrays),) + arrays[0].shape
    if get_worker_info() is None or arrays[0].dtype != np.uint8:
        return torch.from_numpy(np.stack(arrays))
    out = torch.empty(shape, dtype=torch.uint8).share_memory_()
    np.stack(arrays, out=out.numpy())
    return out


class SeededItems(Dataset):
    """`dataset` read through (index, seed) keys: the global generators are
    seeded with `seed` before `dataset[index]`."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key
        seed_sample(seed)
        return self.dataset[index]


class DeviceBatches:
    """A DataLoader whose batches a batcher (if any) finishes on the device; it
    answers what the loops ask of a loader (sampler, len, batch_size)."""

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


class EpochSeededLoader(DeviceBatches):
    """A training DataLoader to be told the epoch (and where in it to start)
    before each pass; see the module docstring."""

    def __init__(self, dataset, batch_size, workers, shuffle, seed, dist_ctx, pin_memory,
                 batcher=None, group_by_image=False, persistent_workers=False,
                 prefetch_factor=0):
        self.seed = seed
        self.rank = dist_ctx.rank
        self.world_size = dist_ctx.world_size
        order = ImageGroupedSampler(dataset, int(seed or 0), dist_ctx) if group_by_image and shuffle \
            else DistributedSampler(dataset, num_replicas=dist_ctx.world_size,
                                    rank=dist_ctx.rank, shuffle=shuffle, seed=seed)
        self.sampler = ResumableSampler(order, dist_ctx.rank, seed)
        self.generator = torch.Generator()
        self.batcher = batcher
        source, collate = _source(dataset, batcher)
        opencv_single_threaded(workers)
        self.loader = DataLoader(SeededItems(source), collate_fn=collate, batch_size=batch_size,
                                 sampler=self.sampler, num_workers=workers,
                                 pin_memory=pin_memory, generator=self.generator,
                                 worker_init_fn=ignore_stop_signals if workers else None,
                                 **_worker_options(workers, persistent_workers,
                                                   prefetch_factor))
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



def _source(dataset, batcher):
    """(dataset, collate_fn) for the DataLoader: crops for a batcher, else items;
    either way items that are None (skipped bad images) are dropped."""
    if batcher is None:
        return dataset, collate_skipping
    return SampleView(dataset), collate_samples


def _worker_options(workers, persistent_workers, prefetch_factor):
    if workers <= 0:
        return {}
    kill_workers_at_exit()
    options = {'persistent_workers': bool(persistent_workers)}
    if prefetch_factor > 0:
        options['prefetch_factor'] = int(prefetch_factor)
    return options


def _batches(loader, batcher):
    if batcher is None:
        yield from loader
        return
    for batch in loader:
        yield None if batch is None else batcher(batch)


def loader_options(cfg, device):
    """Keyword arguments of the loaders from LOADER.* (memory is pinned on CUDA only)."""
    return {'pin_memory': bool(cfg.LOADER.PIN_MEMORY) and device.type == 'cuda',
            'persistent_workers': bool(cfg.LOADER.PERSISTENT_WORKERS),
            'prefetch_factor': int(cfg.LOADER.PREFETCH_FACTOR)}


def build_val_loader(dataset, batch_size, workers, dist_ctx, pin_memory, batcher=None,
                     persistent_workers=False, prefetch_factor=0):
    sampler = ShardSampler(len(dataset), dist_ctx)
    opencv_single_threaded(workers)
    source, collate = _source(dataset, batcher)
    loader = DataLoader(source, batch_size=batch_size, sampler=sampler,
                        num_workers=workers, pin_memory=pin_memory, collate_fn=collate,
                        worker_init_fn=ignore_stop_signals if workers else None,
                        **_worker_options(workers, persistent_workers, prefetch_factor))
    return loader if batcher is None else DeviceBatches(loader, batcher)
