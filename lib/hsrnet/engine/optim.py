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


def load_optimizer_state(optimizer, state, source, names=None):
    """Load a saved optimizer state (`state`, from the file `source`) into
    `optimizer`, after checking that it fits: the same parameter groups of the same
    sizes, and per-parameter state (Adam's moments, SGD's momentum) of the
    parameters' shapes. Anything else is a ValueError naming the file (and, from
    `names` {id(parameter): name}, the parameter)."""
    prefix = '{}: the optimizer state does not fit this model'.format(source)
    if not isinstance(state, dict) or not isinstance(state.get('param_groups'), list) or \
            not isinstance(state.get('state'), dict) or \
            not all(isinstance(g, dict) and isinstance(g.get('params'), list)
                    for g in state['param_groups']):
        raise ValueError('{}: its "optimizer" entry is not an optimizer state'.format(source))
    saved = [len(g['params']) for g in state['param_groups']]
    ours = [len(g['params']) for g in optimizer.param_groups]
    if saved != ours:
        raise ValueError('{} ({} parameters saved, the model has {}): saved by another network '
                         'or with other settings?'.format(prefix, _counts(saved), _counts(ours)))
    ids = [i for g in state['param_groups'] for i in g['params']]
    params = [p for g in optimizer.param_groups for p in g['params']]
    for index, (saved_id, param) in enumerate(zip(ids, params)):
        per_param = state['state'].get(saved_id, {})
        for key, value in (per_param.items() if isinstance(per_param, dict) else ()):
            if torch.is_tensor(value) and value.dim() > 0 and value.shape != param.shape:
                name = (names or {}).get(id(param), 'number {}'.format(index))
                raise ValueError('{}: its {} of parameter {} has shape {}, the parameter {}'
                                 .format(prefix, key, name, tuple(value.shape),
                                         tuple(param.shape)))
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, TypeError, RuntimeError) as error:
        raise ValueError('{} ({}: {})'.format(prefix, type(error).__name__, error)) from None


def _counts(groups):
    return ' + '.join(map(str, groups)) if len(groups) != 1 else str(groups[0])
