"""Helpers on torch modules and tensors that know nothing of the project above them."""
import torch


def unwrap_model(model):
    """The bare network inside DataParallel / DistributedDataParallel."""
    return model.module if isinstance(
        model, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)) else model


def to_device_async(tensor, device):
    """A host tensor on `device` without waiting for it: on CUDA a copy from pageable
    memory may wait for the device's queue (a host sync), so it goes through pinned
    memory (an already pinned tensor as it is)."""
    if device.type == 'cuda' and tensor.device.type == 'cpu':
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)
