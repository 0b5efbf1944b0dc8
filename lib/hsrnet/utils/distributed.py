"""One process or several (torchrun): who am I, and moving results between ranks.

Every helper here also works when torch.distributed is not initialised, where it
behaves as the only rank of a world of one, so callers need no special cases.
"""
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    in_group: bool = False   # joined torchrun's process group (also a group of one)

    @property
    def enabled(self):
        return self.world_size > 1 or self.in_group

    @property
    def is_main(self):
        return self.rank == 0


def init_distributed():
    """Join the process group that torchrun describes in the environment, if any.

    NCCL when there is a GPU, gloo otherwise. A plain `python train.py` (no
    torchrun, or a world of one outside torchrun) stays a single process.
    """
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    # torchrun with one process (one GPU) still joins a process group (of one), so
    # that the NCCL / DDP path is the one that runs; a plain `python` run does not.
    under_torchrun = 'TORCHELASTIC_RUN_ID' in os.environ
    if world_size <= 1 and not under_torchrun:
        return DistContext()
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        backend = 'nccl'
    else:
        backend = 'gloo'
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    if backend == 'nccl' and _CPU_GROUP.get('group') is None:
        # for the per-step control flags (any_rank): gloo, on the CPU (a collective
        # call of every rank, here where they all pass)
        _CPU_GROUP['group'] = dist.new_group(backend='gloo')
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                       local_rank=local_rank, in_group=True)


_CPU_GROUP = {}   # 'group': the gloo group of an NCCL run (init_distributed)


def shutdown_distributed():
    _CPU_GROUP.clear()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active():
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank():
    return dist.get_rank() if _active() else 0


def barrier():
    if _active():
        dist.barrier()


def all_gather_objects(obj):
    """[obj of rank 0, obj of rank 1, ...] on every rank (picklable objects)."""
    if not _active():
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj, src=0):
    """Rank `src`'s `obj` on every rank."""
    if not _active():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def any_rank(flag):
    """Whether `flag` is true on any rank. Through a CPU (gloo) group: asked once
    per training step, it must not wait for the GPU's queue as an NCCL all_reduce
    read back on the host would (a host sync per step)."""
    if not _active():
        return bool(flag)
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=_CPU_GROUP.get('group'))
    return bool(tensor.item())


def all_reduce_sum(values, device):
    """Element-wise sum over ranks of a list of floats (a float64 tensor back)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if _active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu()


def dataset_order(shards, num_items, allow_missing=False):
    """Where each dataset item is among the ranks' results: (kept, places), the
    dataset indices that have a result, ascending, and for each its (rank, row)
    in that rank's shard. `shards` as in `merge_in_dataset_order`; an index seen
    twice (a sampler that pads) keeps its first occurrence."""
    places = {}
    for rank, shard in enumerate(shards):
        for row, index in enumerate(shard['indices']):
            places.setdefault(int(index), (rank, row))
    missing = sorted(set(range(num_items)) - set(places))
    if missing and not allow_missing:
        raise ValueError('merge_in_dataset_order: no result for dataset items {}'
                         .format(missing[:10]))
    kept = [i for i in range(num_items) if i in places]
    return kept, [places[i] for i in kept]


def merge_in_dataset_order(shards, num_items, allow_missing=False):
    """Put per-rank results back in dataset order.

    `shards` is the list gathered from all ranks, each a dict with 'indices' (the
    dataset indices that rank processed, in order) and arrays or lists whose first
    dimension matches. Every index 0..num_items-1 must appear; an index seen twice
    (a sampler that pads) keeps its first occurrence, so the result is what one
    process would have produced. With `allow_missing`, items no rank returned
    (skipped) are left out instead, and 'indices' gives the dataset index of each
    item kept.
    """
    kept, places = dataset_order(shards, num_items, allow_missing)
    offsets = np.cumsum([0] + [len(shard['indices']) for shard in shards])
    take = [offsets[rank] + row for rank, row in places]
    merged = {}
    for key in shards[0]:
        if key == 'indices':
            continue
        values = [shard[key] for shard in shards]
        if isinstance(values[0], list):
            flat = [v for part in values for v in part]
            merged[key] = [flat[p] for p in take]
        else:
            merged[key] = np.concatenate(values, axis=0)[take]
    if allow_missing:
        merged['indices'] = np.array(kept, dtype=np.int64)
    return merged
