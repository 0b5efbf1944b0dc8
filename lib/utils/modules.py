"""Helpers on torch modules that know nothing of the project above them."""
import torch


def unwrap_model(model):
    """The bare network inside DataParallel / DistributedDataParallel."""
    return model.module if isinstance(
        model, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)) else model
