"""Experiment configuration: every key with its default, strict yaml merging and
command-line overrides.

All defaults live in `_build_defaults` and nowhere else. A yaml file or an
`opts KEY VALUE` pair may only set keys that exist here, with a value of the
same kind; anything else is a `ConfigError` that names the key and where it
came from. The module-level `config` is the object the original code base
exposed (`from core.config import config`); `update_config` merges into it.
"""
import os

import yaml

from hsrnet.utils.errors import ConfigError  # noqa: F401  (re-exported: core.config.ConfigError)


class CfgNode(dict):
    """A dict whose keys can also be read and written as attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def clone(self):
        return CfgNode({k: v.clone() if isinstance(v, CfgNode) else _copy(v)
                        for k, v in self.items()})

    def to_dict(self):
        return {k: v.to_dict() if isinstance(v, CfgNode) else _copy(v)
                for k, v in self.items()}


def _copy(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _build_defaults():
    """The original's config tree and defaults, plus a few opt-in additions
    (marked 'new'), all off or neutral by default."""
    C = CfgNode
    return C(
        OUTPUT_DIR='',
        LOG_DIR='',
        DATA_DIR='',
        GPUS='0',
        WORKERS=4,
        PRINT_FREQ=20,
        SEED=-1,              # new: >= 0 seeds python/numpy/torch and data order
        CHANNELS_LAST=False,  # new: channels_last memory format for model and input
        CPU_AUTO=False,       # new: on the CPU, channels_last from the CPU's ISA (precision.py)
        CUDNN=C(BENCHMARK=True, DETERMINISTIC=False, ENABLED=True),
        AMP=C(ENABLED=False,  # new: autocast; bfloat16 is used on the CPU
              DTYPE='float16'),
        MODEL=C(
            NAME='pose_resnet',
            INIT_WEIGHTS=True,
            PRETRAINED='',
            # new: training from scratch, the last BN of every residual branch starts at
            # zero (each block starts as its shortcut; Goyal et al. 2017), which trains
            # much faster from scratch. No effect with ImageNet weights.
            ZERO_INIT_RESIDUAL=False,
            NUM_JOINTS=16,
            # new: UDP (Huang et al. 2020): crops, targets, decoding and the flip test
            # in unbiased coordinates (sizes in pixel intervals); TEST.SHIFT_HEATMAP unused
            UDP=False,
            IMAGE_SIZE=[256, 256],  # [width, height]
            EXTRA=C(
                NUM_LAYERS=50,
                TARGET_TYPE='gaussian',
                HEATMAP_SIZE=[64, 64],  # [width, height]
                SIGMA=2.0,
                FINAL_CONV_KERNEL=1,
                DECONV_WITH_BIAS=False,
                NUM_DECONV_LAYERS=3,
                NUM_DECONV_FILTERS=[256, 256, 256],
                NUM_DECONV_KERNELS=[4, 4, 4],
            ),
        ),
        LOSS=C(USE_TARGET_WEIGHT=True),
        DATASET=C(
            ROOT='',
            DATASET='mpii',
            TRAIN_SET='train',
            TEST_SET='valid',
            DATA_FORMAT='jpg',
            HYBRID_JOINTS_TYPE='',
            SELECT_DATA=False,
            FLIP=True,
            SCALE_FACTOR=0.25,
            ROT_FACTOR=30.0,
            COLOR_RGB=False,  # new: the original feeds BGR pixels
            SKIP_BAD_IMAGES=False,  # new: skip (warn, count) truncated images and images
                                    # whose size differs from the annotation's
            # new: a COCO-format dataset with its own joints (MODEL.NUM_JOINTS):
            FLIP_PAIRS=[],    # [[left, right], ...] 0-based joint ids
            OKS_SIGMAS=[],    # one OKS constant per joint (COCOeval, OKS-NMS)
            SKELETON=[],      # [[a, b], ...] limbs for drawing
            # new, speed (off: the original's behaviour). GROUP_BY_IMAGE: training order
            # shuffles images, the persons of one image follow each other (one decode);
            # REDUCED_DECODE: JPEGs decoded at 1/2, 1/4, 1/8 size when the crop shrinks
            # the image that much (changes pixels slightly).
            GROUP_BY_IMAGE=False,
            REDUCED_DECODE=False,
            # new: half-body augmentation (HRNet's defaults): in training, with
            # probability PROB_HALF_BODY a person with more than NUM_JOINTS_HALF_BODY
            # visible joints is cropped around its upper or lower body's visible
            # joints; UPPER_BODY_IDS: that body's joints, for a dataset with its own
            # (COCO's and MPII's are built in)
            HALF_BODY=False,
            PROB_HALF_BODY=0.3,
            NUM_JOINTS_HALF_BODY=8,
            UPPER_BODY_IDS=[],
        ),
        # new: how batches reach the device. PIN_MEMORY: pinned batches when on
        # CUDA (as before); PREFETCH_FACTOR 0 = PyTorch's default; GPU_DECODE: JPEG
        # decode and crops on the GPU (needs CUDA and torchvision; dataset/gpu_decode.py).
        LOADER=C(PIN_MEMORY=True, PERSISTENT_WORKERS=False, PREFETCH_FACTOR=0,
                 GPU_DECODE=False),
        # new: GPU speed settings (off: as the original). FUSED_OPTIMIZER: fused Adam
        # (also on the CPU); COMPILE: torch.compile the model; CUDA_GRAPHS: the
        # training step captured as a CUDA graph and replayed (core/cuda_graph.py),
        # the compiled model's kernels too when both are on.
        # CPU_MALLOC_CACHE (on: results unchanged): on the CPU, freed memory is kept
        # for the next batch instead of being faulted in again (utils/cpu_memory.py).
        SPEED=C(FUSED_OPTIMIZER=False, COMPILE=False, CUDA_GRAPHS=False, CPU_MALLOC_CACHE=True),
        TRAIN=C(
            LR_FACTOR=0.1,
            LR_STEP=[90, 110],
            LR=0.001,
            OPTIMIZER='adam',
            MOMENTUM=0.9,
            WD=0.0001,
            NESTEROV=False,
            GAMMA1=0.99,
            GAMMA2=0.0,
            BEGIN_EPOCH=0,
            END_EPOCH=140,
            RESUME=False,
            CHECKPOINT='',
            SAVE_EVERY=0,     # new: also save checkpoint.pth.tar every N iterations (0: off)
            VALIDATE_EVERY=1,  # new: validate after every Nth epoch and the last (1: each,
                               # as the original)
            BATCH_SIZE=32,
            SHUFFLE=True,
        ),
        TEST=C(
            BATCH_SIZE=32,
            FLIP_TEST=False,
            POST_PROCESS=True,
            DARK=False,       # new: DARK decoding (replaces POST_PROCESS's quarter offset)
            SHIFT_HEATMAP=True,
            USE_GT_BBOX=False,
            OKS_THRE=0.5,
            IN_VIS_THRE=0.0,
            COCO_BBOX_FILE='',
            BBOX_THRE=1.0,
            MODEL_FILE='',
            IMAGE_THRE=0.0,
            NMS_THRE=1.0,
        ),
        DEBUG=C(
            DEBUG=False,
            SAVE_BATCH_IMAGES_GT=False,
            SAVE_BATCH_IMAGES_PRED=False,
            SAVE_HEATMAPS_GT=False,
            SAVE_HEATMAPS_PRED=False,
        ),
    )


def get_default_config():
    """A fresh copy of the defaults (tests and tools that must not touch `config`)."""
    return _build_defaults()


config = _build_defaults()


def _kind(value):
    if isinstance(value, bool):
        return 'bool'
    if isinstance(value, int):
        return 'int'
    if isinstance(value, float):
        return 'float'
    if isinstance(value, str):
        return 'str'
    if isinstance(value, (list, tuple)):
        return 'list'
    if isinstance(value, dict):
        return 'mapping'
    return type(value).__name__


def _coerce(default, value, key, source):
    """Return `value` converted to the kind of `default`, or raise ConfigError."""
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
            return [_coerce(default[0], v, '{}[{}]'.format(key, i), source)
                    for i, v in enumerate(value)]
        return list(value)
    if want != got:
        raise ConfigError('{}: {} must be {} {}, got {} {!r}'.format(
            source, key, 'an' if want[0] in 'aeiou' else 'a', want, got, value))
    return value


def _merge(node, updates, source, prefix=''):
    if not isinstance(updates, dict):
        raise ConfigError('{}: {} must be a mapping of keys, got {!r}'.format(
            source, prefix.rstrip('.') or 'the file', updates))
    for key, value in updates.items():
        full_key = prefix + str(key)
        if key not in node:
            raise ConfigError('{}: unknown key {}{}'.format(
                source, full_key, _suggest(key, node)))
        if isinstance(node[key], CfgNode):
            _merge(node[key], value, source, full_key + '.')
        else:
            node[key] = _coerce(node[key], value, full_key, source)


def _suggest(key, node):
    import difflib
    close = difflib.get_close_matches(str(key), [str(k) for k in node], n=1)
    return ' (did you mean {}?)'.format(close[0]) if close else ''


def update_config(config_file, cfg=None):
    """Merge the yaml `config_file` into `cfg` (default: the global `config`)."""
    cfg = config if cfg is None else cfg
    if not os.path.isfile(config_file):
        raise ConfigError('config file not found: {}'.format(config_file))
    with open(config_file) as f:
        try:
            exp_config = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError('{}: not valid yaml: {}'.format(config_file, e)) from None
    if exp_config is None:
        return cfg
    _merge(cfg, exp_config, config_file)
    return cfg


def update_config_from_list(opts, cfg=None):
    """Apply `KEY VALUE ...` overrides such as `DATASET.ROOT data/x TEST.FLIP_TEST true`.

    Values are read as yaml scalars/lists, so `true`, `3`, `0.5` and `[1, 2]` have
    their natural types; the kind must match the default as for a yaml file.
    """
    cfg = config if cfg is None else cfg
    opts = list(opts or [])
    if len(opts) % 2:
        raise ConfigError('opts: expected KEY VALUE pairs, got an odd number of items: {}'
                          .format(' '.join(opts)))
    for full_key, raw in zip(opts[0::2], opts[1::2]):
        node = cfg
        parts = full_key.split('.')
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
        node[parts[-1]] = _coerce(node[parts[-1]], value, full_key, 'opts')
    return cfg


OUTPUT_STRIDE = 4   # input pixels per heatmap pixel, the same for every network here


def check_config(cfg=None):
    """Consistency checks that no single key can make (run after all merges)."""
    cfg = config if cfg is None else cfg
    extra = cfg.MODEL.EXTRA
    for key in ('NUM_DECONV_FILTERS', 'NUM_DECONV_KERNELS'):
        if len(extra[key]) != extra.NUM_DECONV_LAYERS:
            raise ConfigError('MODEL.EXTRA.{} has {} entries but NUM_DECONV_LAYERS is {}'
                              .format(key, len(extra[key]), extra.NUM_DECONV_LAYERS))
    for kernel in extra.NUM_DECONV_KERNELS:
        if kernel not in (2, 3, 4):
            raise ConfigError('MODEL.EXTRA.NUM_DECONV_KERNELS: kernel {} is not one of 2, 3, 4'
                              .format(kernel))
    if extra.FINAL_CONV_KERNEL not in (1, 3):
        raise ConfigError('MODEL.EXTRA.FINAL_CONV_KERNEL must be 1 or 3, got {}'
                          .format(extra.FINAL_CONV_KERNEL))
    for key, size in (('MODEL.IMAGE_SIZE', cfg.MODEL.IMAGE_SIZE),
                      ('MODEL.EXTRA.HEATMAP_SIZE', extra.HEATMAP_SIZE)):
        if len(size) != 2 or min(size) <= 0:
            raise ConfigError('{} must be [width, height] with positive entries, got {}'
                              .format(key, size))
    image_size, heatmap_size = list(cfg.MODEL.IMAGE_SIZE), list(extra.HEATMAP_SIZE)
    if [OUTPUT_STRIDE * n for n in heatmap_size] != image_size:
        raise ConfigError('MODEL.IMAGE_SIZE {} must be {} x MODEL.EXTRA.HEATMAP_SIZE {} (the '
                          'networks output heatmaps at 1/{} of the input size); for this '
                          'HEATMAP_SIZE use IMAGE_SIZE {}'.format(
                              image_size, OUTPUT_STRIDE, heatmap_size, OUTPUT_STRIDE,
                              [OUTPUT_STRIDE * n for n in heatmap_size]))
    for key in ('TRAIN', 'TEST'):
        if cfg[key].BATCH_SIZE <= 0:
            raise ConfigError('{}.BATCH_SIZE must be a positive number of images per GPU, '
                              'got {}'.format(key, cfg[key].BATCH_SIZE))
    if cfg.TRAIN.SAVE_EVERY < 0:
        raise ConfigError('TRAIN.SAVE_EVERY must be 0 (off) or a number of iterations, got {}'
                          .format(cfg.TRAIN.SAVE_EVERY))
    if cfg.TRAIN.VALIDATE_EVERY < 1:
        raise ConfigError('TRAIN.VALIDATE_EVERY must be a number of epochs (1: after each '
                          'epoch), got {}'.format(cfg.TRAIN.VALIDATE_EVERY))
    if not 0.0 <= cfg.DATASET.PROB_HALF_BODY <= 1.0:
        raise ConfigError('DATASET.PROB_HALF_BODY must be a probability in [0, 1], got {}'
                          .format(cfg.DATASET.PROB_HALF_BODY))
    if cfg.DATASET.NUM_JOINTS_HALF_BODY < 0:
        raise ConfigError('DATASET.NUM_JOINTS_HALF_BODY must be a number of joints >= 0, got {}'
                          .format(cfg.DATASET.NUM_JOINTS_HALF_BODY))
    if cfg.MODEL.UDP and min(heatmap_size) < 2:
        raise ConfigError('MODEL.UDP needs MODEL.EXTRA.HEATMAP_SIZE of 2 pixels or more each '
                          'way, got {}'.format(heatmap_size))
    if cfg.AMP.DTYPE not in ('float16', 'bfloat16'):
        raise ConfigError("AMP.DTYPE must be 'float16' or 'bfloat16', got {!r}"
                          .format(cfg.AMP.DTYPE))
    if cfg.SPEED.CUDA_GRAPHS:
        if cfg.AMP.ENABLED and cfg.AMP.DTYPE == 'float16':
            raise ConfigError("SPEED.CUDA_GRAPHS does not work with AMP.DTYPE 'float16' "
                              "(GradScaler's step reads the host); use 'bfloat16'")
        if cfg.TRAIN.OPTIMIZER.lower() != 'adam':
            raise ConfigError("SPEED.CUDA_GRAPHS needs TRAIN.OPTIMIZER 'adam', got {!r}"
                              .format(cfg.TRAIN.OPTIMIZER))
    return cfg


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


MODEL_NAMES = ('pose_resnet', 'pose_hsrnet', 'pose_hsr_msnet')


def get_model_name(cfg):
    """('pose_hsrnet_59', '256x192_pose_hsrnet_59_d256d256') for an HSRNet-59 256x192 yaml."""
    extra = cfg.MODEL.EXTRA
    if cfg.MODEL.NAME not in MODEL_NAMES:
        raise ConfigError('unknown MODEL.NAME {!r}; choose one of {}'.format(
            cfg.MODEL.NAME, ', '.join(MODEL_NAMES)))
    name = '{}_{}'.format(cfg.MODEL.NAME, extra.NUM_LAYERS)
    deconv_suffix = ''.join('d{}'.format(n) for n in extra.NUM_DECONV_FILTERS)
    full_name = '{}x{}_{}_{}'.format(
        cfg.MODEL.IMAGE_SIZE[1], cfg.MODEL.IMAGE_SIZE[0], name, deconv_suffix)
    return name, full_name


def dump_config(cfg=None):
    """The config as yaml text (written beside the outputs of every run)."""
    cfg = config if cfg is None else cfg
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None)
