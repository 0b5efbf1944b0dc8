"""Reading and writing checkpoints.

Files are read with `torch.load(weights_only=True)`: tensors, containers and
numbers only, so a checkpoint can never run code. Files are written atomically:
a crash while saving leaves the previous file intact, never a truncated one.
"""
import logging
import os
import pickle
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from hsrnet.utils.fileio import write_atomically

logger = logging.getLogger(__name__)

MODULE_PREFIX = 'module.'            # added by DataParallel / DistributedDataParallel
MAX_KEYS_LISTED = 20
# torch.save writes a zip archive (or, before PyTorch 1.6, a pickle: protocol >= 2)
FILE_MAGICS = (b'PK\x03\x04', b'\x80')
# The original stored its validation score as a numpy scalar in checkpoint.pth.tar:
# numeric numpy scalars (under numpy 1's and numpy 2's names) are plain data.
try:
    from numpy._core.multiarray import scalar as _numpy_scalar
except ImportError:  # numpy 1
    from numpy.core.multiarray import scalar as _numpy_scalar
NUMPY_SCALAR_GLOBALS = [(_numpy_scalar, 'numpy.core.multiarray.scalar'),
                        (_numpy_scalar, 'numpy._core.multiarray.scalar'), np.dtype] + [
    type(np.dtype(code)) for code in '?' + np.typecodes['AllInteger'] + np.typecodes['AllFloat']]


def read_checkpoint(path, mmap=False):
    """The object saved in `path`, on the CPU; never executes code from the file.
    `mmap`: tensors are mapped from the file, read only when used (a quick look at
    a large checkpoint's other fields)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError('checkpoint file not found: {}'.format(path))
    with open(path, 'rb') as f:
        head = f.read(4)
    if not head.startswith(FILE_MAGICS):
        raise ValueError('{}: not a PyTorch checkpoint (neither a zip archive nor a pickle)'
                         .format(path))
    try:
        with torch.serialization.safe_globals(NUMPY_SCALAR_GLOBALS):
            return torch.load(path, map_location='cpu', weights_only=True,
                              mmap=mmap and head == FILE_MAGICS[0])
    except pickle.UnpicklingError as err:
        if 'Weights only load failed' not in str(err):
            raise ValueError('{}: not a PyTorch checkpoint ({})'.format(path, err)) from None
        raise ValueError(
            '{}: refused: not a plain weights file ({}). Nothing in it was executed; loading '
            'it fully could run code stored in it.'.format(path, _refusal_reason(err))) from None
    except Exception as err:  # torch.load fails in many ways on files it cannot parse
        raise ValueError('{}: not a PyTorch checkpoint ({}: {})'.format(
            path, type(err).__name__, err)) from None


def _refusal_reason(err):
    """The weights-only unpickler's own one-line reason, without torch's advice."""
    text = str(err)
    marker = 'WeightsUnpickler error:'
    if marker in text:
        text = text.split(marker, 1)[1]
    return text.strip().split('. ')[0].split('\n')[0]


def state_dict_from(checkpoint, source='checkpoint'):
    """The weights of a checkpoint: a bare state_dict or a dict holding one under
    'state_dict', with DataParallel's 'module.' prefix removed from the keys."""
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get('state_dict'), Mapping):
        checkpoint = checkpoint['state_dict']
    if (not isinstance(checkpoint, Mapping) or not checkpoint
            or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                       for k, v in checkpoint.items())):
        raise ValueError("{}: not a model checkpoint: expected a state_dict (names -> tensors) "
                         "or a dict holding one under 'state_dict'".format(source))
    return {key.removeprefix(MODULE_PREFIX): value for key, value in checkpoint.items()}


def _listing(what, keys):
    shown = ', '.join(keys[:MAX_KEYS_LISTED])
    more = ' and {} more'.format(len(keys) - MAX_KEYS_LISTED) if len(keys) > MAX_KEYS_LISTED else ''
    return '{} ({}): {}{}'.format(what, len(keys), shown, more)


def load_pose_checkpoint(model, path_or_state):
    """Load a pose checkpoint (ours or the original's) into `model`, strictly.

    `path_or_state` is a file name or an object already read. The keys of the
    layers the original built but never used (`model.original_unused_keys()`) are
    dropped; any other missing, unexpected or misshapen key, or a tensor holding NaN
    or infinity, is a ValueError naming it. Returns the checkpoint object (a full
    training checkpoint also holds epoch, optimizer, ...).
    """
    if isinstance(path_or_state, (str, os.PathLike)):
        source = os.fspath(path_or_state)
        checkpoint = read_checkpoint(source)
    else:
        source, checkpoint = 'checkpoint', path_or_state
    state = state_dict_from(checkpoint, source)
    net = model.module if isinstance(model, (nn.DataParallel,
                                             nn.parallel.DistributedDataParallel)) else model
    own = net.state_dict()
    unused = getattr(net, 'original_unused_keys', set)()
    dropped = [key for key in state if key in unused and key not in own]
    state = {key: value for key, value in state.items() if key not in dropped}

    problems = []
    # BN batch counters are bookkeeping (absent from PyTorch < 0.4.1 files), not weights
    missing = [key for key in own if key not in state
               and not key.endswith('num_batches_tracked')]
    unexpected = [key for key in state if key not in own]
    misshapen = {key: (tuple(value.shape), tuple(own[key].shape)) for key, value in state.items()
                 if key in own and value.shape != own[key].shape}
    mismatched = ['{} (file {}, model {})'.format(key, *shapes) for key, shapes in misshapen.items()]
    for what, keys in (('missing keys', missing), ('unexpected keys', unexpected),
                       ('shape mismatches', mismatched)):
        if keys:
            problems.append(_listing(what, keys))
    if problems:
        # the network names the settings behind its parameters (a model of our own)
        explain = getattr(net, 'settings_behind', None)
        keys = explain(missing, unexpected, misshapen) if explain else []
        raise ValueError('{} does not fit the model {} (check {}): {}'.format(
            source, getattr(net, 'arch', type(net).__name__),
            ', '.join(keys) or 'the model settings', '; '.join(problems)))
    not_finite = [key for key, value in state.items()
                  if value.is_floating_point() and not bool(torch.isfinite(value).all())]
    if not_finite:
        raise ValueError('{}: refused: {} (the training that saved it had diverged?)'.format(
            source, _listing('tensors holding NaN or infinity', not_finite)))
    if dropped:
        logger.info("=> %s: dropped %d keys of layers the original built but never used",
                    source, len(dropped))
    net.load_state_dict(state, strict=True)
    logger.info('=> loaded %d tensors from %s', len(state), source)
    return checkpoint


def save_atomic(obj, path):
    """torch.save `obj` to `path` through a temporary file in the same directory,
    so that `path` is always either the old file or the complete new one. A failed
    write (disk full, ...) is a WriteError naming the file and the OS error."""
    write_atomically(path, lambda f: torch.save(obj, f))


# what this project's training writes beside the weights in every checkpoint: the
# merged config as yaml text, the experiment's name, the project's version
RECORD_KEYS = ('config', 'experiment', 'version')


def recorded_run(checkpoint):
    """{'config', 'experiment', 'version'} of a checkpoint this project's training
    wrote, or None (the original's checkpoints, bare state_dicts)."""
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get('config'), str):
        return {key: checkpoint.get(key) for key in RECORD_KEYS}
    return None


def save_weights(state_dict, path, record):
    """The weights with the run's record (`recorded_run` reads it back), atomically:
    {'state_dict': ..., 'config': ..., 'experiment': ..., 'version': ...};
    `torch.load(path)['state_dict']` gives the weights."""
    save_atomic(dict(record, state_dict=state_dict), path)


def save_checkpoint(states, is_best, output_dir, filename='checkpoint.pth.tar'):
    """Write `states` to output_dir/filename and, when `is_best`, its bare
    state_dict to output_dir/model_best.pth.tar (as the original did)."""
    save_atomic(states, os.path.join(output_dir, filename))
    if is_best and 'state_dict' in states:
        save_atomic(states['state_dict'], os.path.join(output_dir, 'model_best.pth.tar'))
