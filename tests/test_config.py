import os

import pytest

from conftest import COCO_YAML, ROOT
from hsrnet.config import (ConfigError, check_config, dump_config, get_default_config,
                           get_model_name, update_config, update_config_from_list, update_dir)


def write(tmp_path, text, name='exp.yaml'):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_defaults_are_the_originals():
    cfg = get_default_config()
    assert cfg.MODEL.NAME == 'pose_resnet'
    assert cfg.MODEL.EXTRA.NUM_DECONV_FILTERS == [256, 256, 256]
    assert cfg.TEST.OKS_THRE == 0.5 and cfg.TEST.IN_VIS_THRE == 0.0
    assert cfg.TRAIN.LR_STEP == [90, 110] and cfg.TRAIN.END_EPOCH == 140
    assert cfg.DATASET.ROT_FACTOR == 30 and cfg.DATASET.SCALE_FACTOR == 0.25


def test_yaml_merges_and_coerces(tmp_path):
    cfg = get_default_config()
    path = write(tmp_path, 'MODEL:\n  NAME: pose_hsrnet\n  EXTRA:\n    SIGMA: 3\n'
                           '    NUM_LAYERS: 59\n    NUM_DECONV_LAYERS: 2\n'
                           '    NUM_DECONV_FILTERS: [256, 256]\n    NUM_DECONV_KERNELS: [4, 4]\n'
                           '    HEATMAP_SIZE: [48, 64]\n'
                           '  IMAGE_SIZE: [192, 256]\nTRAIN:\n  LR: 1e-3\n')
    update_config(path, cfg)
    check_config(cfg)
    assert cfg.MODEL.EXTRA.SIGMA == 3.0 and isinstance(cfg.MODEL.EXTRA.SIGMA, float)
    assert cfg.TRAIN.LR == pytest.approx(1e-3)
    assert get_model_name(cfg) == ('pose_hsrnet_59', '256x192_pose_hsrnet_59_d256d256')


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, 'TRAIN:\n  BATCH_SZE: 4\n')
    with pytest.raises(ConfigError) as err:
        update_config(path, get_default_config())
    assert 'TRAIN.BATCH_SZE' in str(err.value) and path in str(err.value)
    assert 'BATCH_SIZE' in str(err.value)  # suggestion


def test_wrong_kind_names_key_and_file(tmp_path):
    path = write(tmp_path, 'TEST:\n  FLIP_TEST: maybe\n')
    with pytest.raises(ConfigError) as err:
        update_config(path, get_default_config())
    assert 'TEST.FLIP_TEST' in str(err.value) and path in str(err.value)
    path = write(tmp_path, 'MODEL:\n  IMAGE_SIZE: [192, abc]\n', 'b.yaml')
    with pytest.raises(ConfigError, match=r'MODEL.IMAGE_SIZE\[1\]'):
        update_config(path, get_default_config())


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match='not found: .*nope.yaml'):
        update_config(str(tmp_path / 'nope.yaml'), get_default_config())
    path = write(tmp_path, 'TRAIN: [unclosed\n')
    with pytest.raises(ConfigError, match='not valid yaml'):
        update_config(path, get_default_config())


def test_opts_override_and_errors():
    cfg = get_default_config()
    update_config_from_list(['DATASET.ROOT', 'data/x', 'TEST.FLIP_TEST', 'true',
                             'TRAIN.LR_STEP', '[3, 5]', 'TRAIN.LR', '0.01'], cfg)
    assert cfg.DATASET.ROOT == 'data/x' and cfg.TEST.FLIP_TEST is True
    assert cfg.TRAIN.LR_STEP == [3, 5] and cfg.TRAIN.LR == 0.01
    with pytest.raises(ConfigError, match='TRAIN.BATCH_SIZE'):
        update_config_from_list(['TRAIN.BATCH_SIZE', 'big'], cfg)
    with pytest.raises(ConfigError, match='unknown key TEST.FLIPTEST'):
        update_config_from_list(['TEST.FLIPTEST', 'true'], cfg)
    with pytest.raises(ConfigError, match='odd number'):
        update_config_from_list(['TEST.FLIP_TEST'], cfg)


def test_check_config_catches_inconsistent_deconvs():
    cfg = get_default_config()
    cfg.MODEL.EXTRA.NUM_DECONV_LAYERS = 2
    with pytest.raises(ConfigError, match='NUM_DECONV_FILTERS has 3 entries'):
        check_config(cfg)


def test_update_dir_prefixes_data_paths():
    cfg = get_default_config()
    cfg.DATASET.ROOT = 'coco/'
    cfg.MODEL.PRETRAINED = 'models/x.pth'
    update_dir('out', 'logs', '/data', cfg)
    assert cfg.OUTPUT_DIR == 'out' and cfg.LOG_DIR == 'logs'
    assert cfg.DATASET.ROOT == '/data/coco/' and cfg.MODEL.PRETRAINED == '/data/models/x.pth'


def test_opts_string_keys_take_scalars_verbatim():
    cfg = get_default_config()
    update_config_from_list(['GPUS', '0', 'MODEL.PRETRAINED', '', 'DATASET.TRAIN_SET', '2017'],
                            cfg)
    assert cfg.GPUS == '0' and cfg.MODEL.PRETRAINED == '' and cfg.DATASET.TRAIN_SET == '2017'


def test_validate_every_must_be_a_number_of_epochs():
    cfg = get_default_config()
    update_config_from_list(['TRAIN.VALIDATE_EVERY', '3'], cfg)
    check_config(cfg)
    cfg.TRAIN.VALIDATE_EVERY = 0
    with pytest.raises(ConfigError, match='TRAIN.VALIDATE_EVERY must be >= 1, got 0'):
        check_config(cfg)
    with pytest.raises(ConfigError, match='TRAIN.VALIDATE_EVERY'):
        update_config_from_list(['TRAIN.VALIDATE_EVERY', 'often'], cfg)


@pytest.mark.parametrize('opts, message', [
    (['AMP.ENABLED', 'true', 'AMP.DTYPE', 'float16'], "does not work with AMP.DTYPE 'float16'"),
    (['TRAIN.OPTIMIZER', 'sgd'], "needs TRAIN.OPTIMIZER 'adam', got 'sgd'"),
])
def test_cuda_graphs_refuse_what_cannot_be_captured(opts, message):
    cfg = get_default_config()
    update_config_from_list(['SPEED.CUDA_GRAPHS', 'true', 'AMP.DTYPE', 'bfloat16'], cfg)
    check_config(cfg)   # bf16 autocast and Adam: fine
    update_config_from_list(['SPEED.COMPILE', 'true'], cfg)
    check_config(cfg)   # the compiled model's kernels are captured with the rest
    update_config_from_list(opts, cfg)
    with pytest.raises(ConfigError, match=message):
        check_config(cfg)


def test_cuda_graphs_need_one_cuda_gpu():
    import torch
    from hsrnet.engine.cuda_graph import check_graphable
    model = torch.nn.Conv2d(3, 4, 1)
    with pytest.raises(ConfigError, match='needs a CUDA GPU; this run is on cpu'):
        check_graphable(model)
    with pytest.raises(ConfigError, match='needs one process on one GPU'):
        check_graphable(torch.nn.DataParallel(model))


# -- yaml inheritance (_BASE_) -------------------------------------------------------

FLAT_YAMLS = os.path.join(os.path.dirname(__file__), 'fixtures', 'flat_yamls')


def _flat_fixtures():
    return sorted(os.path.relpath(os.path.join(folder, name), FLAT_YAMLS)
                  for folder, _, names in os.walk(FLAT_YAMLS) for name in names
                  if name.endswith('.yaml'))


@pytest.mark.parametrize('relpath', _flat_fixtures())
def test_each_experiment_merges_to_its_flat_yaml_key_for_key(relpath):
    """The project's yamls are bases plus deltas now; the flat files they were (kept
    as fixtures, as the original's own yaml files still are) merge to the same tree."""
    flat = update_config(os.path.join(FLAT_YAMLS, relpath), get_default_config())
    rewritten = update_config(os.path.join(ROOT, 'experiments', relpath), get_default_config())
    assert rewritten.to_dict() == flat.to_dict()
    if '_BASE_' not in open(os.path.join(ROOT, 'experiments', relpath)).read():
        pytest.fail('{} is flat'.format(relpath))


def test_hsrnet110_is_a_delta_of_a_few_lines():
    path = os.path.join(ROOT, 'experiments', 'coco', 'hsrnet110', '256x192_d256x3_adam_lr1e-3.yaml')
    lines = [l for l in open(path).read().splitlines() if l.strip() and not l.startswith('#')]
    assert lines[0].startswith('_BASE_:') and len(lines) <= 6


def write_file(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_base_chain_merges_in_order_the_child_winning(tmp_path):
    write_file(tmp_path / 'a.yaml', 'TRAIN:\n  LR: 0.5\n  END_EPOCH: 7\nWORKERS: 1\n')
    write_file(tmp_path / 'sub' / 'b.yaml', '_BASE_: ../a.yaml\nTRAIN:\n  LR: 0.25\n')
    child = write_file(tmp_path / 'c.yaml', '_BASE_: [sub/b.yaml]\nWORKERS: 3\n')
    cfg = update_config(child, get_default_config())
    assert (cfg.TRAIN.LR, cfg.TRAIN.END_EPOCH, cfg.WORKERS) == (0.25, 7, 3)
    assert '_BASE_' not in dump_config(cfg)   # the merged config is the flat result


@pytest.mark.parametrize('files, message', [
    ({'c.yaml': '_BASE_: missing.yaml\n'}, r"c.yaml: _BASE_ missing.yaml: no such file"),
    ({'c.yaml': '_BASE_: d.yaml\n', 'd.yaml': '_BASE_: c.yaml\n'}, r'_BASE_ cycle: .*c.yaml'),
    ({'c.yaml': '_BASE_: d.yaml\n', 'd.yaml': 'TRAIN:\n  LRR: 1\n'},
     r'd.yaml: unknown key TRAIN.LRR \(did you mean LR\?\)'),
    ({'c.yaml': '_BASE_: 3\n'}, r'_BASE_ must be a path or a list of paths'),
])
def test_base_errors_name_the_file_and_key(tmp_path, files, message):
    for name, text in files.items():
        write_file(tmp_path / name, text)
    with pytest.raises(ConfigError, match=message):
        update_config(str(tmp_path / 'c.yaml'), get_default_config())


# -- the config as a value -------------------------------------------------------------

def test_load_config_freezes_and_an_explicit_flag_wins_over_opts(tmp_path):
    import argparse
    from hsrnet.runner.cli import load_config
    args = argparse.Namespace(cfg=COCO_YAML, workers=3,
                              opts=['WORKERS', '7', 'TEST.BATCH_SIZE', '5'])
    cfg = load_config(args, {'workers': ('WORKERS', int)})
    assert cfg.WORKERS == 3 and cfg.TEST.BATCH_SIZE == 5   # yaml, then opts, then flags
    with pytest.raises(ConfigError, match=r'^TEST.BATCH_SIZE: the config is frozen'):
        cfg.TEST.BATCH_SIZE = 8
    with pytest.raises(ConfigError, match='frozen'):
        cfg.MODEL.EXTRA.update(SIGMA=3.0)
    copy = cfg.clone()
    copy.TEST.BATCH_SIZE = 8   # a clone is writable
    assert cfg.TEST.BATCH_SIZE == 5 and not copy.frozen


def test_the_original_global_config_stays_writable():
    from hsrnet.config import config
    assert not config.frozen
    saved = config.WORKERS
    config.WORKERS = saved + 1
    config.WORKERS = saved


def test_unused_keys_warn_once_each(caplog):
    cfg = update_config(COCO_YAML, get_default_config())
    cfg.TRAIN.GAMMA1 = 0.5
    with caplog.at_level('WARNING'):
        check_config(cfg)
    warned = [r.getMessage() for r in caplog.records if 'nothing reads it' in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith('TRAIN.GAMMA1 is 0.5')


@pytest.mark.parametrize('key, value, message', [
    ('TRAIN.LR_FACTOR', '-1', r'TRAIN.LR_FACTOR must be > 0, got -1'),
    ('TRAIN.LR', '0', r'TRAIN.LR must be > 0, got 0'),
    ('DATASET.SCALE_FACTOR', '-5', r'DATASET.SCALE_FACTOR must be >= 0, got -5'),
    ('MODEL.NUM_JOINTS', '0', r'MODEL.NUM_JOINTS must be >= 1, got 0'),
    ('MODEL.EXTRA.SIGMA', '0', r'MODEL.EXTRA.SIGMA must be > 0, got 0'),
    ('TEST.OKS_THRE', '1.5', r'TEST.OKS_THRE must be in \[0, 1\], got 1.5'),
    ('TRAIN.END_EPOCH', '0', r'TRAIN.END_EPOCH must be >= 1, got 0'),
])
def test_value_ranges(key, value, message):
    cfg = update_config(COCO_YAML, get_default_config())
    update_config_from_list([key, value], cfg)
    with pytest.raises(ConfigError, match=message):
        check_config(cfg)


def test_end_epoch_must_be_above_begin_epoch():
    cfg = update_config(COCO_YAML, get_default_config())
    update_config_from_list(['TRAIN.BEGIN_EPOCH', '3', 'TRAIN.END_EPOCH', '1'], cfg)
    with pytest.raises(ConfigError, match='TRAIN.END_EPOCH 1 must be above TRAIN.BEGIN_EPOCH 3'):
        check_config(cfg)


def test_the_size_error_proposes_the_heatmap_size():
    cfg = update_config(COCO_YAML, get_default_config())
    update_config_from_list(['MODEL.IMAGE_SIZE', '[64, 96]'], cfg)
    with pytest.raises(ConfigError, match=r'for IMAGE_SIZE \[64, 96\] set MODEL.EXTRA.HEATMAP_SIZE '
                                          r'\[16, 24\]'):
        check_config(cfg)
