"""Checks made at setup, before any data is read: what the configuration asks
for must fit what the model actually does."""
import torch

from hsrnet.utils.errors import ConfigError


def check_model_output(cfg, model, device=None):
    """The heatmaps of a crop of MODEL.IMAGE_SIZE must have MODEL.NUM_JOINTS
    channels and be MODEL.EXTRA.HEATMAP_SIZE large, else a ConfigError naming the
    keys (instead of a tensor-size error at the first step). The forward pass runs
    on meta tensors standing in for the input and the weights: shapes only, no
    arithmetic (0.06 s against 0.1-0.2 s for a blank image on the CPU, HSRNet-59 at
    256x192), whatever the model's device (`device`, kept for the callers)."""
    width, height = cfg.MODEL.IMAGE_SIZE
    was_training = model.training
    model.eval()
    stand_ins = {name: torch.empty_like(tensor, device='meta') for name, tensor
                 in list(model.named_parameters()) + list(model.named_buffers())}
    try:
        with torch.no_grad():
            output = torch.func.functional_call(
                model, stand_ins, (torch.empty(1, 3, height, width, device='meta'),))
    finally:
        model.train(was_training)
    got = tuple(output.shape[1:])
    want = (cfg.MODEL.NUM_JOINTS, cfg.MODEL.EXTRA.HEATMAP_SIZE[1], cfg.MODEL.EXTRA.HEATMAP_SIZE[0])
    if got != want:
        raise ConfigError(
            'the model ({} at MODEL.IMAGE_SIZE {}) outputs {} heatmaps of {}x{} (width x height) '
            'but MODEL.NUM_JOINTS is {} and MODEL.EXTRA.HEATMAP_SIZE is {}'.format(
                cfg.MODEL.NAME, list(cfg.MODEL.IMAGE_SIZE), got[0], got[2], got[1],
                cfg.MODEL.NUM_JOINTS, list(cfg.MODEL.EXTRA.HEATMAP_SIZE)))
