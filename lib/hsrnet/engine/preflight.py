"""Checks made at setup, before any data is read: what the configuration asks
for must fit what the model actually does."""
import torch

from hsrnet.utils.errors import ConfigError


def check_model_output(cfg, model, device):
    """One forward pass of a blank image of MODEL.IMAGE_SIZE (batch 1, eval mode,
    no gradient): the heatmaps must have MODEL.NUM_JOINTS channels and be
    MODEL.EXTRA.HEATMAP_SIZE large, else a ConfigError naming the keys (instead
    of a tensor-size error at the first step)."""
    width, height = cfg.MODEL.IMAGE_SIZE
    was_training = model.training
    model.eval()
    # On the CPU on one thread: only the shape is looked at. Threads on a single
    # image wait for each other at every op: with other processes on the cores
    # that took 1-2.5 s on 2 cores (HSRNet-59 at 256x192), on one thread 0.2 s;
    # on free cores 0.1 s against 0.17 s.
    threads = torch.get_num_threads()
    one_thread = torch.device(device).type == 'cpu' and threads > 1
    if one_thread:
        torch.set_num_threads(1)
    try:
        with torch.no_grad():
            image = torch.zeros(1, 3, height, width, device=device)
            if cfg.CHANNELS_LAST:
                image = image.contiguous(memory_format=torch.channels_last)
            output = model(image)
    finally:
        if one_thread:
            torch.set_num_threads(threads)
        model.train(was_training)
    got = tuple(output.shape[1:])
    want = (cfg.MODEL.NUM_JOINTS, cfg.MODEL.EXTRA.HEATMAP_SIZE[1], cfg.MODEL.EXTRA.HEATMAP_SIZE[0])
    if got != want:
        raise ConfigError(
            'the model ({} at MODEL.IMAGE_SIZE {}) outputs {} heatmaps of {}x{} (width x height) '
            'but MODEL.NUM_JOINTS is {} and MODEL.EXTRA.HEATMAP_SIZE is {}'.format(
                cfg.MODEL.NAME, list(cfg.MODEL.IMAGE_SIZE), got[0], got[2], got[1],
                cfg.MODEL.NUM_JOINTS, list(cfg.MODEL.EXTRA.HEATMAP_SIZE)))
