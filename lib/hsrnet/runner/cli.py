"""The one command line of the scripts and tools: `--cfg YAML`, the command's
own flags, then HRNet-style `[opts] KEY VALUE ...` config overrides.

    parser = base_parser('Validate a keypoint network')
    parser.add_argument('--flip-test', action='store_true')
    add_opts(parser)                      # last: takes every remaining word
    args = parser.parse_args()
    cfg = load_config(args, {'flip_test': ('TEST.FLIP_TEST', bool)})
"""
import argparse
import os

from hsrnet.config import (check_config, check_same_network, get_default_config,
                           recorded_config, update_config, update_config_from_list)
from hsrnet.utils.errors import ConfigError

# Flags of train.py and valid.py (and tools that want them): destination ->
# (config key, conversion).
COMMON_FLAGS = {
    'frequent': ('PRINT_FREQ', int),
    'gpus': ('GPUS', str),
    'workers': ('WORKERS', int),
}


def base_parser(description, common_flags=True, cfg_from_checkpoint=False):
    """A parser with --cfg and, with `common_flags`, --frequent/--gpus/--workers. With
    `cfg_from_checkpoint`, --cfg may be left out: the config then comes from the
    checkpoint the command reads (load_config's `weights`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--cfg', required=not cfg_from_checkpoint,
                        help='experiment yaml file' + (
                            ' (default: the config recorded in the checkpoint)'
                            if cfg_from_checkpoint else ''))
    if common_flags:
        parser.add_argument('--frequent', type=int, help='log every N iterations (PRINT_FREQ)')
        parser.add_argument('--gpus', type=str,
                            help="GPU ids of this process, e.g. '0,1' (GPUS)")
        parser.add_argument('--workers', type=int, help='data loading processes (WORKERS)')
    return parser


def worker_counts(text):
    """argparse type of a comma list of worker counts: '1,2' -> [1, 2]; a bad word is
    argparse's one line naming the flag (it turns the ValueError into it)."""
    counts = [int(word) for word in text.split(',')]
    if any(count < 0 for count in counts):
        raise ValueError(text)
    return counts


def names_from(allowed):
    """argparse type of a comma list of names, each one of `allowed`."""
    def names(text):
        words = text.split(',')
        if not words or any(word not in allowed for word in words):
            raise argparse.ArgumentTypeError('{!r}: a comma list of {}'.format(
                text, ', '.join(allowed)))
        return words
    return names


def add_opts(parser):
    """Trailing `KEY VALUE ...` pairs override config keys (a leading literal
    'opts' is accepted too). Must be the last argument added."""
    parser.add_argument('opts', nargs=argparse.REMAINDER, default=[],
                        help='config overrides, e.g. DATASET.ROOT data/x TEST.BATCH_SIZE 8')


def config_overrides(opts):
    """The KEY VALUE words of `opts`, without a leading 'opts'; a flag among
    them (argparse hands everything after the first KEY to opts) is an error."""
    opts = list(opts or [])
    if opts[:1] == ['opts']:
        opts = opts[1:]
    flags = [o for o in opts[0::2] if o.startswith('-')]
    if flags:
        raise ConfigError('opts: {} looks like a flag; give flags before the KEY VALUE '
                          'overrides'.format(flags[0]))
    return opts


def apply_flags(args, flag_keys, cfg):
    """The command's flags into `cfg`: `flag_keys` maps an argparse destination to
    (config key, value function); a flag left out (None: give store_true flags
    default=None) leaves its key."""
    for dest, (key, convert) in (flag_keys or {}).items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        *groups, leaf = key.split('.')
        node = cfg
        for group in groups:
            node = node[group]
        node[leaf] = convert(value)
    return cfg


def read_recorded_config(path):
    """The config recorded in a checkpoint or an exported ONNX file, or None."""
    if os.fspath(path).lower().endswith('.onnx'):
        from hsrnet.apps.onnx_model import onnx_record
        record = onnx_record(path)
        return None if record is None else recorded_config(path, record)
    return recorded_config(path)


def load_config(args, flag_keys=None, cfg=None, weights=None, recorded=None):
    """The run's config: a fresh default tree (or `cfg`), then the yaml file (its
    `_BASE_` files first) or, without --cfg, the config recorded in the checkpoint
    `weights`, then the `opts` overrides, then the command's flags (a flag given
    explicitly wins over an override of the same key), then the checks; returned
    frozen (writing to it is an error naming the key). With both --cfg and a
    checkpoint that records its config, the two must agree on what shapes the
    network and its input (config.SHAPE_KEYS). `recorded`: a recorded config read
    already (a heatmaps file's), instead of the checkpoint's. The scripts and the
    tools all read their config here."""
    cfg = get_default_config() if cfg is None else cfg
    if recorded is None and weights and os.path.isfile(weights):
        recorded = read_recorded_config(weights)
    if args.cfg:
        update_config(args.cfg, cfg)
        if not cfg.EXPERIMENT:
            cfg.EXPERIMENT = os.path.splitext(os.path.basename(args.cfg))[0]
    elif recorded is not None:
        cfg = recorded
    elif weights:
        raise ConfigError('{}: records no config (a checkpoint of the original, or bare '
                          'weights): give its yaml with --cfg'.format(weights))
    else:
        raise ConfigError('--cfg: give the experiment yaml (or a --model-file that records '
                          'its config)')
    update_config_from_list(config_overrides(getattr(args, 'opts', [])), cfg)
    apply_flags(args, flag_keys, cfg)
    check_config(cfg)
    if args.cfg and recorded is not None:
        check_same_network(cfg, recorded, weights)
    return cfg.freeze()


def load_fresh_config(args, flag_keys=None, weights=None, recorded=None):
    """load_config (its name in the tools)."""
    return load_config(args, flag_keys, weights=weights, recorded=recorded)
