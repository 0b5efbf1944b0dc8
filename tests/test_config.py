import pytest

from hsrnet.config import (ConfigError, check_config, get_default_config, get_model_name,
                         update_config, update_config_from_list, update_dir)


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
    with pytest.raises(ConfigError, match='TRAIN.VALIDATE_EVERY must be a number of epochs'):
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
