"""Reading the config: yaml files (with `_BASE_` inheritance) and `KEY VALUE`
overrides merged strictly into a default tree, and the yaml text of a config.

A file may name base files, `_BASE_: path` or a list of paths, relative to the file:
they merge first, in order (recursively), then the file itself, so the child wins.
Every file may only set keys that exist in the defaults, with a value of the same
kind; anything else is a ConfigError naming the file and the key.
"""
import difflib
import os

import yaml

from hsrnet.config.defaults import CfgNode
from hsrnet.utils.errors import ConfigError

BASE_KEY = '_BASE_'


def _kind(value):
    for kind, types in (('bool', bool), ('int', int), ('float', float), ('str', str),
                        ('list', (list, tuple)), ('mapping', dict)):
        if isinstance(value, types):
            return kind
    return type(value).__name__


def coerce(default, value, key, source):
    """`value` converted to the kind of `default`, or ConfigError."""
    want, got = _kind(default), _kind(value)
    if want == 'float' and got == 'int':
        return float(value)
    if want == 'float' and got == 'str':
        try:  # PyYAML reads `1e-3` (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if want == 'list' and got == 'list':
        if default:
            return [coerce(default[0], v, '{}[{}]'.format(key, i), source)
                    for i, v in enumerate(value)]
        return list(value)
    if want != got:
        raise ConfigError('{}: {} must be {} {}, got {} {!r}'.format(
            source, key, 'an' if want[0] in 'aeiou' else 'a', want, got, value))
    return value


def _suggest(key, node):
    close = difflib.get_close_matches(str(key), [str(k) for k in node], n=1)
    return ' (did you mean {}?)'.format(close[0]) if close else ''


def merge(node, updates, source, prefix=''):
    """Merge the mapping `updates` (from `source`) into the CfgNode `node`."""
    if not isinstance(updates, dict):
        raise ConfigError('{}: {} must be a mapping of keys, got {!r}'.format(
            source, prefix.rstrip('.') or 'the file', updates))
    for key, value in updates.items():
        full_key = prefix + str(key)
        if key not in node:
            raise ConfigError('{}: unknown key {}{}'.format(source, full_key,
                                                             _suggest(key, node)))
        if isinstance(node[key], CfgNode):
            merge(node[key], value, source, full_key + '.')
        else:
            node[key] = coerce(node[key], value, full_key, source)


def read_yaml(path):
    """What one yaml file holds, or ConfigError (also for a file with no keys: an
    empty config would silently run every default)."""
    if not os.path.isfile(path):
        raise ConfigError('config file not found: {}'.format(path))
    try:
        with open(path, 'rb') as f:
            text = f.read().decode('utf-8')
    except UnicodeDecodeError as e:
        raise ConfigError('{}: not UTF-8 text ({})'.format(path, e.reason)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError('{}: not valid yaml: {}'.format(path, e)) from None
    if data is None:
        raise ConfigError('{}: the config file is empty (it sets no key; every default would '
                          'be used)'.format(path))
    return data


def yaml_chain(path, seen=()):
    """(file, mapping) of `path`'s bases, recursively and in order, then its own."""
    path = os.path.normpath(path)
    if path in seen:
        raise ConfigError('{}: {} cycle: {}'.format(
            path, BASE_KEY, ' -> '.join(list(seen) + [path])))
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError('{}: must be a mapping of keys, got {!r}'.format(path, data))
    bases = data.pop(BASE_KEY, [])
    bases = [bases] if isinstance(bases, str) else bases
    for base in bases if isinstance(bases, list) else [bases]:
        if not isinstance(base, str):
            raise ConfigError('{}: {} must be a path or a list of paths, got {!r}'
                              .format(path, BASE_KEY, base))
        base_path = os.path.join(os.path.dirname(path), base)
        if not os.path.isfile(base_path):
            raise ConfigError('{}: {} {}: no such file ({})'.format(path, BASE_KEY, base,
                                                                    base_path))
        yield from yaml_chain(base_path, tuple(seen) + (path,))
    yield path, data


def merge_yaml(path, cfg):
    """Merge the yaml file `path`, its bases first, into `cfg`; returns `cfg`."""
    for source, data in list(yaml_chain(path)):
        merge(cfg, data, source)
    return cfg


def merge_yaml_text(text, cfg, source):
    """Merge yaml text (a flat config, as a checkpoint records it) into `cfg`."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError('{}: not valid yaml: {}'.format(source, e)) from None
    merge(cfg, data or {}, source)
    return cfg


def merge_overrides(opts, cfg):
    """Apply `KEY VALUE ...` overrides such as `DATASET.ROOT data/x TEST.FLIP_TEST true`.

    Values are read as yaml scalars/lists, so `true`, `3`, `0.5` and `[1, 2]` have
    their natural types; the kind must match the default as for a yaml file.
    """
    opts = list(opts or [])
    if len(opts) % 2:
        raise ConfigError('opts: expected KEY VALUE pairs, got an odd number of items: {}'
                          .format(' '.join(opts)))
    for full_key, raw in zip(opts[0::2], opts[1::2]):
        node, parts = cfg, full_key.split('.')
        for depth, part in enumerate(parts):
            if not isinstance(node, CfgNode) or part not in node:
                raise ConfigError('opts: unknown key {}{}'.format(
                    full_key, _suggest(part, node) if isinstance(node, CfgNode) else ''))
            if depth < len(parts) - 1:
                node = node[part]
        if isinstance(node[parts[-1]], CfgNode):
            raise ConfigError('opts: {} is a group of keys, not a value'.format(full_key))
        try:
            value = yaml.safe_load(raw) if isinstance(raw, str) else raw
        except yaml.YAMLError:
            value = raw
        if isinstance(node[parts[-1]], str) and isinstance(raw, str) and not isinstance(value, str):
            value = '' if value is None else raw  # `GPUS 0`, `MODEL.PRETRAINED ''`
        node[parts[-1]] = coerce(node[parts[-1]], value, full_key, 'opts')
    return cfg


def to_yaml(cfg):
    """The config as flat yaml text (what runs and checkpoints record)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None)
