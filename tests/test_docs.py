"""The documentation cannot drift from the code: docs/config.md lists exactly the
config's keys with their real defaults, ranges and unused keys; docs/architecture.md
names the import layers of tests/test_layout.py in order and describes every package;
README stays short; links resolve; the commands quoted name flags that exist."""
import glob
import os
import re

import pytest
import yaml

from conftest import LIB, ROOT
from test_layout import FLOORS

DOCS = os.path.join(ROOT, 'docs')
README = os.path.join(ROOT, 'README.md')
README_MAX_LINES = 200
CHANGES = ('yes', 'no', 'last bits')   # the words a "changes results" cell starts with


def read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def section(text, title):
    """The body of the `## title` section (up to the next `## ` heading)."""
    match = re.search(r'^## {}\s*$(.*?)(?=^## |\Z)'.format(re.escape(title)), text,
                      re.M | re.S)
    assert match, 'no "## {}" section'.format(title)
    return match.group(1)


def table_rows(text):
    """The cells of each markdown table row whose first cell is a `CODE` span."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if line.lstrip().startswith('|') and re.fullmatch(r'`[^`]+`', cells[0]):
            yield [c[1:-1] if re.fullmatch(r'`[^`]*`', c) else c for c in cells]


def flat_keys(node, prefix=''):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from flat_keys(value, prefix + key + '.')
        else:
            yield prefix + key, value


def same_value(documented, real):
    """Equal and of the same kind (an int is not a float, a bool not an int)."""
    if isinstance(real, (list, tuple)):
        return isinstance(documented, list) and len(documented) == len(real) and \
            all(same_value(d, r) for d, r in zip(documented, real))
    return type(documented) is type(real) and documented == real


# -- docs/config.md -------------------------------------------------------------

@pytest.fixture(scope='module')
def config_md():
    return read(os.path.join(DOCS, 'config.md'))


@pytest.fixture(scope='module')
def documented_keys(config_md):
    rows = list(table_rows(section(config_md, 'The keys')))
    keys = [row[0] for row in rows]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    assert not duplicated, 'docs/config.md documents these keys twice: {}'.format(duplicated)
    return {row[0]: row for row in rows}


def test_config_md_documents_every_key_and_no_other(documented_keys):
    from hsrnet.config import get_default_config
    real = {key for key, _ in flat_keys(get_default_config())}
    missing = sorted(real - set(documented_keys))
    extra = sorted(set(documented_keys) - real)
    assert not missing, 'keys without a row in docs/config.md: {}'.format(missing)
    assert not extra, 'docs/config.md documents keys that do not exist: {}'.format(extra)


def test_config_md_defaults_are_the_real_ones(documented_keys):
    from hsrnet.config import get_default_config
    for key, real in flat_keys(get_default_config()):
        row = documented_keys[key]
        assert len(row) == 4, 'docs/config.md, {}: expected 4 cells, got {}'.format(key, row)
        documented = yaml.safe_load(row[1])
        assert same_value(documented, real), \
            'docs/config.md, {}: default {} documented, the code has {!r}'.format(
                key, row[1], real)


def test_config_md_says_whether_each_key_changes_results(documented_keys):
    for key, row in documented_keys.items():
        assert row[2].startswith(CHANGES), \
            'docs/config.md, {}: "changes results" must start with one of {}, got {!r}'.format(
                key, CHANGES, row[2])
        assert row[3].strip(), 'docs/config.md, {}: no meaning given'.format(key)


def range_text(low, high, low_allowed):
    if high is not None:
        return 'in [{}, {}]'.format(low, high)
    return '{} {}'.format('>=' if low_allowed else '>', low)


def test_config_md_ranges_are_the_real_ones(config_md):
    from hsrnet.config import RANGES
    documented = [(row[0], row[1]) for row in table_rows(section(config_md, 'Ranges'))]
    real = [(key, range_text(low, high, low_allowed)) for key, low, high, low_allowed in RANGES]
    assert documented == real


def test_config_md_lists_the_unused_keys(config_md, documented_keys):
    from hsrnet.config import UNUSED_KEYS
    listed = re.findall(r'^- `([A-Z0-9_.]+)`', section(config_md, 'Unused keys'), re.M)
    assert listed == list(UNUSED_KEYS)
    for key in UNUSED_KEYS:
        assert documented_keys[key][2].startswith('no (unused'), key


def test_config_md_explains_how_a_config_is_made(config_md):
    text = section(config_md, 'How a config is made')
    for word in ('_BASE_', 'Overrides', 'Flags', 'win', 'Frozen', 'check_config',
                 'update_config', 'update_dir'):
        assert word in text, 'docs/config.md does not explain {!r}'.format(word)


# -- docs/architecture.md ---------------------------------------------------------

@pytest.fixture(scope='module')
def architecture_md():
    return read(os.path.join(DOCS, 'architecture.md'))


def test_architecture_md_names_the_import_layers_in_order(architecture_md):
    items = re.findall(r'^\d+\. (.*?):', section(architecture_md, 'Import layers'), re.M)
    layers = [re.findall(r'`([a-z_]+)`', item) for item in items]
    assert [set(layer) for layer in layers] == FLOORS, \
        'docs/architecture.md lists the layers {}, tests/test_layout.py has {}'.format(
            layers, [sorted(floor) for floor in FLOORS])
    assert all(len(set(layer)) == len(layer) for layer in layers)


def test_architecture_md_describes_every_package(architecture_md):
    described = re.findall(r'^### `([a-z_]+)`\s*$', section(architecture_md, 'Packages'), re.M)
    packages = {os.path.basename(os.path.dirname(path))
                for path in glob.glob(os.path.join(LIB, 'hsrnet', '*', '__init__.py'))}
    assert sorted(described) == sorted(packages)
    assert set(described) == set().union(*FLOORS)
    layer = {name: depth for depth, floor in enumerate(FLOORS) for name in floor}
    assert sorted(described, key=layer.get) == described, \
        'docs/architecture.md: describe the packages from the top layer down'


# -- README and links -------------------------------------------------------------

def test_readme_is_short():
    lines = read(README).splitlines()
    assert len(lines) <= README_MAX_LINES, 'README.md has {} lines (at most {}): move the ' \
        'detail to docs/'.format(len(lines), README_MAX_LINES)


def test_readme_links_every_docs_page():
    text = read(README)
    for path in glob.glob(os.path.join(DOCS, '*.md')):
        assert 'docs/{}'.format(os.path.basename(path)) in text, path


def slug(heading):
    """GitHub's anchor of a heading."""
    text = re.sub(r'[^\w\- ]', '', heading.strip().lower())
    return text.replace(' ', '-')


MARKDOWN = [README] + sorted(glob.glob(os.path.join(DOCS, '*.md')))


@pytest.mark.parametrize('path', MARKDOWN, ids=os.path.basename)
def test_relative_links_resolve(path):
    text = read(path)
    for target in re.findall(r'\]\(([^)\s]+)\)', text):
        if re.match(r'[a-z]+:', target):
            continue
        file_part, _, anchor = target.partition('#')
        linked = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) \
            if file_part else path
        assert os.path.exists(linked), '{}: link to {} does not resolve'.format(path, target)
        if anchor and linked.endswith('.md'):
            anchors = {slug(h) for h in re.findall(r'^#+ (.*)$', read(linked), re.M)}
            assert anchor in anchors, '{}: no heading for #{} in {}'.format(
                path, anchor, linked)


# -- the commands quoted ------------------------------------------------------------

def quoted_commands(path):
    """Each command line of the file's code blocks, continuation lines joined."""
    for block in re.findall(r'^```[a-z]*\n(.*?)^```', read(path), re.M | re.S):
        yield from block.replace('\\\n', ' ').splitlines()


def script_flags(script):
    source = read(os.path.join(ROOT, script)) + \
        read(os.path.join(LIB, 'hsrnet', 'runner', 'cli.py'))
    return set(re.findall(r"'(--[a-z][a-z0-9-]*)'", source)), \
        'BooleanOptionalAction' in source


@pytest.mark.parametrize('path', MARKDOWN, ids=os.path.basename)
def test_quoted_commands_name_scripts_and_flags_that_exist(path):
    for line in quoted_commands(path):
        scripts = re.findall(r'((?:pose_estimation|tools)/[a-z_]+\.py)', line)
        if not scripts:
            continue
        script = scripts[0]
        assert os.path.isfile(os.path.join(ROOT, script)), '{}: {} does not exist'.format(
            path, script)
        flags, negatable = script_flags(script)
        for flag in re.findall(r'(?<![\w-])(--[a-z][a-z0-9-]*)', line.split('#')[0]):
            known = flag in flags or (negatable and flag.startswith('--no-') and
                                      '--' + flag[5:] in flags)
            assert known, '{}: {} has no flag {} ({})'.format(path, script, flag, line.strip())
