"""The structure holds: imports point down, errors live in one module, and the
scripts and tools share one command line."""
import argparse
import ast
import glob
import os

import pytest

from conftest import LIB, ROOT
from hsrnet.runner.cli import add_opts, base_parser, config_overrides, load_fresh_config
from hsrnet.utils.errors import ConfigError

PACKAGE = os.path.join(LIB, 'hsrnet')
# The packages of hsrnet from the top floor down; a module may import its own floor
# and the ones below it (docs/architecture.md describes them).
FLOORS = [{'runner', 'apps'}, {'engine'}, {'config'}, {'data', 'samples'},
          {'head', 'evaluation', 'models'}, {'nms'}, {'utils'}]
# The original's module names (spec/API.md), shims in lib/ outside the package
ORIGINAL_NAMES = ('core', 'dataset', 'models', 'nms', 'utils')


def imports_of(path):
    """Absolute module names a file imports (relative imports stay in its package)."""
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def package_of(path):
    """'data' for lib/hsrnet/data/loaders.py."""
    parts = os.path.relpath(path, PACKAGE).split(os.sep)
    return os.path.splitext(parts[0])[0]


def floor_of(package):
    for depth, packages in enumerate(FLOORS):
        if package in packages:
            return depth
    return None


def package_files():
    for path in glob.glob(os.path.join(PACKAGE, '**', '*.py'), recursive=True):
        if os.path.dirname(path) != PACKAGE:
            yield path   # the root's __init__ (lazy exports) and _shims stand apart


def test_every_package_has_a_floor():
    found = {package_of(path) for path in package_files()}
    assert found == set().union(*FLOORS)


@pytest.mark.parametrize('package', sorted(set().union(*FLOORS)))
def test_imports_point_down(package):
    own = floor_of(package)
    for path in package_files():
        if package_of(path) != package:
            continue
        for name in imports_of(path):
            parts = name.split('.')
            assert parts[0] not in ORIGINAL_NAMES, '{} imports the shim {}'.format(
                os.path.relpath(path, ROOT), name)
            if parts[0] == 'hsrnet' and len(parts) > 1:
                depth = floor_of(parts[1])
                assert depth is not None and depth >= own, '{} imports {}, a floor above'.format(
                    os.path.relpath(path, ROOT), name)


def test_shims_are_small_and_import_only_the_package():
    shims = [path for name in ORIGINAL_NAMES
             for path in glob.glob(os.path.join(LIB, name, '*.py'))]
    assert len(shims) >= 14
    for path in shims:
        assert len(open(path).read().splitlines()) <= 20, path
        assert all(name.split('.')[0] in ('hsrnet', 'sys') or name.startswith('.')
                   for name in imports_of(path)), path


DATA_TABLES = {('defaults.py', '_build_defaults')}   # the default config tree


def test_no_file_or_function_is_too_long():
    """No module over 400 lines, no function over 80 (data tables apart), in the
    package and the tools."""
    for path in glob.glob(os.path.join(PACKAGE, '**', '*.py'), recursive=True) + \
            glob.glob(os.path.join(ROOT, 'tools', '**', '*.py'), recursive=True):
        lines = open(path).read().splitlines()
        assert len(lines) <= 400, '{} has {} lines'.format(os.path.relpath(path, ROOT),
                                                          len(lines))
        for node in ast.walk(ast.parse('\n'.join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    (os.path.basename(path), node.name) not in DATA_TABLES:
                length = node.end_lineno - node.lineno + 1
                assert length <= 80, '{}:{} {} has {} lines'.format(
                    os.path.relpath(path, ROOT), node.lineno, node.name, length)


def test_error_classes_are_defined_once():
    defined = []
    for path in glob.glob(os.path.join(LIB, '**', '*.py'), recursive=True):
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ClassDef) and node.name.endswith('Error'):
                defined.append((node.name, os.path.relpath(path, LIB)))
    assert defined and all(where == os.path.join('hsrnet', 'utils', 'errors.py')
                           for _, where in defined)


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


@pytest.mark.parametrize('tool', ['benchmark.py', 'benchmarks/train.py', 'benchmarks/data.py',
                                  'benchmarks/valid.py', 'demo.py', 'export_onnx.py',
                                  'redecode.py'])
def test_tools_use_the_shared_command_line(tool):
    source = open(os.path.join(ROOT, 'tools', tool)).read()
    assert 'from hsrnet.runner.cli import' in source and 'argparse.REMAINDER' not in source


def sys_path_changes(path):
    """Calls of sys.path.insert / append in a file's code (not in its strings)."""
    return [node for node in ast.walk(ast.parse(open(path).read(), path))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ('insert', 'append') and ast.unparse(node.func.value) == 'sys.path']


def test_tools_put_lib_on_the_path_in_one_place():
    """tools/_paths.py alone puts lib/ on sys.path (the infer benchmark adds
    pose_estimation/, for infer.py); every tool imports it before hsrnet (top-level
    imports come first in imports_of's breadth-first walk)."""
    tools = os.path.join(ROOT, 'tools')
    files = glob.glob(os.path.join(tools, '*.py')) + \
        glob.glob(os.path.join(tools, 'benchmarks', '*.py'))
    changing = {os.path.relpath(p, tools) for p in files if sys_path_changes(p)}
    assert changing == {'_paths.py', os.path.join('benchmarks', 'infer.py')}
    assert len(files) >= 18
    for path in files:
        # the first import of hsrnet comes after _paths (or the benchmark modules, which
        # import it)
        roots = [name.split('.')[0] for name in imports_of(path)]
        if 'hsrnet' in roots:
            assert {'_paths', 'benchmark', 'benchmarks'} & set(roots[:roots.index('hsrnet')]), path


def test_the_original_script_flags_still_parse():
    from conftest import load_script
    valid = load_script(os.path.join(ROOT, 'pose_estimation', 'valid.py'))
    args = valid.parse_args(['--cfg', 'x.yaml', '--model-file', 'm.pth', '--flip-test',
                             '--use-detect-bbox', '--post-process', '--shift-heatmap',
                             '--frequent', '5', '--gpus', '0', '--workers', '2',
                             'opts', 'TEST.BATCH_SIZE', '8'])
    assert isinstance(args, argparse.Namespace) and args.flip_test and args.workers == 2
    assert args.opts == ['opts', 'TEST.BATCH_SIZE', '8']
