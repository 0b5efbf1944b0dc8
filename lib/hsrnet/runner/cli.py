"""The one command line of the scripts and tools: `--cfg YAML`, the command's
own flags, then HRNet-style `[opts] KEY VALUE ...` config overrides.

    parser = base_parser('Validate a keypoint network')
    parser.add_argument('--flip-test', action='store_true')
    add_opts(parser)                      # last: takes every remaining word
    args = parser.parse_args()
    cfg = load_config(args, {'flip_test': ('TEST.FLIP_TEST', bool)})
"""
import argparse

from hsrnet.config import check_config, config, get_default_config, update_config, \
    update_config_from_list
from hsrnet.utils.errors import ConfigError

# Flags of train.py and valid.py (and tools that want them): destination ->
# (config key, conversion).
COMMON_FLAGS = {
    'frequent': ('PRINT_FREQ', int),
    'gpus': ('GPUS', str),
    'workers': ('WORKERS', int),
}


def base_parser(description, common_flags=True):
    """A parser with --cfg and, with `common_flags`, --frequent/--gpus/--workers."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--cfg', required=True, help='experiment yaml file')
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


def load_config(args, flag_keys=None, cfg=None):
    """yaml, then the command's flags, then `opts`, then the consistency checks.

    `flag_keys` maps an argparse destination to (config key, value function); a
    flag left out on the command line leaves its key alone. `cfg` defaults to
    the global `core.config.config` (what the scripts and users' code share);
    tools use `load_fresh_config`."""
    cfg = config if cfg is None else cfg
    update_config(args.cfg, cfg)
    for dest, (key, convert) in (flag_keys or {}).items():
        value = getattr(args, dest, None)
        if value is None or value is False:
            continue
        *groups, leaf = key.split('.')
        node = cfg
        for group in groups:
            node = node[group]
        node[leaf] = convert(value)
    update_config_from_list(config_overrides(getattr(args, 'opts', [])), cfg)
    return check_config(cfg)


def load_fresh_config(args, flag_keys=None):
    """load_config into a fresh copy of the defaults (tools that must not touch
    the global config)."""
    return load_config(args, flag_keys, get_default_config())
