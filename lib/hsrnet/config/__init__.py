"""Experiment configuration: every key with its default (defaults.py), yaml files with
`_BASE_` inheritance and `KEY VALUE` overrides merged strictly (loading.py), and the
checks a config passes (checks.py).

The project's own code gets a config from runner.cli.load_config: a fresh tree,
file, then overrides, then the command's flags, checked and frozen (a value: writing
to it is an error naming the key). The module-level `config`, `update_config` and
`update_dir` are the original's public names (spec/API.md): its scripts write into
that global tree, so it stays mutable, and nothing of the project's own uses it.
"""
import os

from hsrnet.config.checks import (OUTPUT_STRIDE, SHAPE_KEYS, check_config as _check,
                                  check_same_network, get_model_name)
from hsrnet.config.defaults import RANGES, UNUSED_KEYS, CfgNode, get_default_config
from hsrnet.config.loading import merge_overrides, merge_yaml, merge_yaml_text, to_yaml
from hsrnet.utils.errors import ConfigError

config = get_default_config()   # the original's global tree

__all__ = ['CfgNode', 'ConfigError', 'OUTPUT_STRIDE', 'RANGES', 'SHAPE_KEYS', 'UNUSED_KEYS',
           'check_config', 'check_same_network', 'recorded_config',
           'config', 'dump_config', 'get_default_config', 'get_model_name', 'update_config',
           'update_config_from_list', 'update_dir']


def update_config(config_file, cfg=None):
    """Merge the yaml `config_file` (its `_BASE_` files first) into `cfg` (default:
    the global `config`); returns it."""
    return merge_yaml(config_file, config if cfg is None else cfg)


def update_config_from_list(opts, cfg=None):
    """Apply `KEY VALUE ...` overrides to `cfg` (default: the global `config`)."""
    return merge_overrides(opts, config if cfg is None else cfg)


def check_config(cfg=None):
    """Every check of a merged config (default: the global `config`); returns it."""
    return _check(config if cfg is None else cfg)


def recorded_config(path, record=None):
    """The config a checkpoint written by this project's training records (a fresh,
    unchecked tree), or None for a file that records none (the original's
    checkpoints, bare state_dicts). Read without unpickling code. `record`: the
    file's record when read already (an exported ONNX file's metadata)."""
    if record is None:
        from hsrnet.utils.checkpoint import read_checkpoint, recorded_run
        record = recorded_run(read_checkpoint(path))
    if record is None:
        return None
    cfg = get_default_config()
    merge_yaml_text(record['config'], cfg, 'the config recorded in {}'.format(path))
    return cfg


def dump_config(cfg=None):
    """The config as yaml text (written beside the outputs of every run)."""
    return to_yaml(config if cfg is None else cfg)


def update_dir(model_dir, log_dir, data_dir, cfg=None):
    """Set OUTPUT_DIR / LOG_DIR / DATA_DIR and put DATA_DIR in front of the data paths."""
    cfg = config if cfg is None else cfg
    if model_dir:
        cfg.OUTPUT_DIR = model_dir
    if log_dir:
        cfg.LOG_DIR = log_dir
    if data_dir:
        cfg.DATA_DIR = data_dir
    cfg.DATASET.ROOT = os.path.join(cfg.DATA_DIR, cfg.DATASET.ROOT)
    if cfg.TEST.COCO_BBOX_FILE:
        cfg.TEST.COCO_BBOX_FILE = os.path.join(cfg.DATA_DIR, cfg.TEST.COCO_BBOX_FILE)
    if cfg.MODEL.PRETRAINED:
        cfg.MODEL.PRETRAINED = os.path.join(cfg.DATA_DIR, cfg.MODEL.PRETRAINED)
    return cfg
