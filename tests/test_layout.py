"""The structure holds: imports point down, errors live in one module, and the
scripts and tools share one command line."""
import argparse
import ast
import glob
import os

import pytest

from conftest import LIB, ROOT
from runner.cli import add_opts, base_parser, config_overrides, load_fresh_config
from utils.errors import ConfigError

# Packages of lib/ from the top floor down; a module may import its own floor
# and the ones below it.
FLOORS = [{'runner'}, {'dataset'}, {'core'}, {'evaluation', 'models'}, {'nms'}, {'utils'}]
# Shims that keep the original's module names where its scripts import them
# (spec/API.md); they re-export from any floor, and nothing in lib imports them.
SHIMS = {os.path.join('utils', 'utils.py')}


def lib_imports(path):
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split('.')[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split('.')[0]


def floor_of(package):
    for depth, packages in enumerate(FLOORS):
        if package in packages:
            return depth
    return None


@pytest.mark.parametrize('package', sorted(set().union(*FLOORS)))
def test_imports_point_down(package):
    own = floor_of(package)
    for path in glob.glob(os.path.join(LIB, package, '*.py')):
        if os.path.relpath(path, LIB) in SHIMS:
            continue
        for imported in lib_imports(path):
            depth = floor_of(imported)
            assert depth is None or depth >= own, '{} imports {}, a floor above'.format(
                os.path.relpath(path, ROOT), imported)


def test_shims_are_imported_by_nothing_in_lib():
    shim_modules = {os.path.splitext(shim)[0].replace(os.sep, '.') for shim in SHIMS}
    for path in glob.glob(os.path.join(LIB, '*', '*.py')):
        if os.path.relpath(path, LIB) in SHIMS:
            continue
        source = open(path).read()
        for module in shim_modules:
            assert 'from {} import'.format(module) not in source and \
                'import {}\n'.format(module) not in source, \
                '{} imports the shim {}'.format(os.path.relpath(path, ROOT), module)


def test_error_classes_are_defined_once():
    defined = []
    for path in glob.glob(os.path.join(LIB, '**', '*.py'), recursive=True):
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ClassDef) and node.name.endswith('Error'):
                defined.append((node.name, os.path.relpath(path, LIB)))
    assert defined and all(where == os.path.join('utils', 'errors.py') for _, where in defined)


def test_one_command_line_accepts_the_word_opts_and_rejects_stray_flags(tmp_path):
    parser = base_parser('test', common_flags=False)
    add_opts(parser)
    yaml_file = os.path.join(ROOT, 'experiments', 'sample', 'hsrnet59_demo.yaml')
    for words in (['opts', 'CHANNELS_LAST', 'false'], ['CHANNELS_LAST', 'false']):
        cfg = load_fresh_config(parser.parse_args(['--cfg', yaml_file] + words))
        assert cfg.CHANNELS_LAST is False
    assert config_overrides(['opts']) == []
    with pytest.raises(ConfigError, match='--flip-test looks like a flag'):
        config_overrides(['TEST.BATCH_SIZE', '8', '--flip-test', 'x'])


@pytest.mark.parametrize('tool', ['benchmark.py', 'benchmark_data.py', 'redecode.py'])
def test_tools_use_the_shared_command_line(tool):
    source = open(os.path.join(ROOT, 'tools', tool)).read()
    assert 'from runner.cli import' in source and 'argparse.REMAINDER' not in source


def test_the_original_script_flags_still_parse(monkeypatch):
    import importlib.util
    monkeypatch.syspath_prepend(os.path.join(ROOT, 'pose_estimation'))
    spec = importlib.util.spec_from_file_location(
        'valid_script', os.path.join(ROOT, 'pose_estimation', 'valid.py'))
    valid = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(valid)
    args = valid.parse_args(['--cfg', 'x.yaml', '--model-file', 'm.pth', '--flip-test',
                             '--use-detect-bbox', '--post-process', '--shift-heatmap',
                             '--frequent', '5', '--gpus', '0', '--workers', '2',
                             'opts', 'TEST.BATCH_SIZE', '8'])
    assert isinstance(args, argparse.Namespace) and args.flip_test and args.workers == 2
    assert args.opts == ['opts', 'TEST.BATCH_SIZE', '8']
