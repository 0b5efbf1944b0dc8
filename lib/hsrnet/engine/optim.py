"""The optimizer and the learning-rate schedule of TRAIN.*."""
import torch

from hsrnet.utils.errors import ConfigError


def get_optimizer(cfg, model):
    """TRAIN.OPTIMIZER 'adam' (no weight decay, as the original) or 'sgd'."""
    name = cfg.TRAIN.OPTIMIZER.lower()
    params = [p for p in model.parameters() if p.requires_grad]
    if name == 'adam':
        # SPEED.FUSED_OPTIMIZER: one fused kernel over all parameters (CPU and CUDA;
        # results differ from the default loop in the last bits). SPEED.CUDA_GRAPHS:
        # its step is captured in a CUDA graph (engine/cuda_graph.py)
        options = {'fused': True} if cfg.SPEED.FUSED_OPTIMIZER else {}
        if cfg.SPEED.CUDA_GRAPHS:
            options['capturable'] = True
        return torch.optim.Adam(params, lr=cfg.TRAIN.LR, **options)
    if name == 'sgd':
        return torch.optim.SGD(params, lr=cfg.TRAIN.LR, momentum=cfg.TRAIN.MOMENTUM,
                               weight_decay=cfg.TRAIN.WD, nesterov=cfg.TRAIN.NESTEROV)
    raise ConfigError("TRAIN.OPTIMIZER must be 'adam' or 'sgd', got {!r}"
                      .format(cfg.TRAIN.OPTIMIZER))


def get_lr_scheduler(cfg, optimizer):
    """Multiply the learning rate by LR_FACTOR at each epoch in LR_STEP (stepped once
    per epoch, after it)."""
    return torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(cfg.TRAIN.LR_STEP), gamma=cfg.TRAIN.LR_FACTOR)


def lr_at(cfg, epoch):
    """TRAIN.LR after the drops of LR_STEP before `epoch` (what the schedule gives)."""
    drops = sum(epoch >= step for step in cfg.TRAIN.LR_STEP)
    return cfg.TRAIN.LR * cfg.TRAIN.LR_FACTOR ** drops
