"""The checks a config passes before anything is built from it, and the names
derived from it. Each key's range is one row of defaults.RANGES; the network's keys
are checked by the model registry (hsrnet.models), the dataset's name by the
dataset registry (hsrnet.data): one registry each, read here and where things are
built."""
import logging

from hsrnet.config.defaults import RANGES, UNUSED_KEYS, get_default_config, lookup
from hsrnet.utils.errors import ConfigError

logger = logging.getLogger(__name__)

OUTPUT_STRIDE = 4   # input pixels per heatmap pixel, the same for every network here


def _range_text(low, high, low_allowed):
    if high is not None:
        return 'in [{}, {}]'.format(low, high)
    return '{} {}'.format('>=' if low_allowed else '>', low)


def check_ranges(cfg):
    for key, low, high, low_allowed in RANGES:
        value = lookup(cfg, key)
        if value < low or (value == low and not low_allowed) or \
                (high is not None and value > high):
            raise ConfigError('{} must be {}, got {}'.format(
                key, _range_text(low, high, low_allowed), value))


def check_sizes(cfg):
    """IMAGE_SIZE is OUTPUT_STRIDE x HEATMAP_SIZE; the message proposes the
    HEATMAP_SIZE that goes with the given IMAGE_SIZE."""
    for key, size in (('MODEL.IMAGE_SIZE', cfg.MODEL.IMAGE_SIZE),
                      ('MODEL.EXTRA.HEATMAP_SIZE', cfg.MODEL.EXTRA.HEATMAP_SIZE)):
        if len(size) != 2 or min(size) <= 0:
            raise ConfigError('{} must be [width, height] with positive entries, got {}'
                              .format(key, list(size)))
    image_size, heatmap_size = list(cfg.MODEL.IMAGE_SIZE), list(cfg.MODEL.EXTRA.HEATMAP_SIZE)
    if cfg.MODEL.UDP and min(heatmap_size) < 2:
        raise ConfigError('MODEL.UDP needs MODEL.EXTRA.HEATMAP_SIZE of 2 pixels or more each '
                          'way, got {}'.format(heatmap_size))
    if [OUTPUT_STRIDE * n for n in heatmap_size] == image_size:
        return
    if all(n % OUTPUT_STRIDE == 0 for n in image_size):
        fix = 'for IMAGE_SIZE {} set MODEL.EXTRA.HEATMAP_SIZE {}'.format(
            image_size, [n // OUTPUT_STRIDE for n in image_size])
    else:
        near = [max(1, round(n / OUTPUT_STRIDE)) for n in image_size]
        fix = 'IMAGE_SIZE must be a multiple of {0}: e.g. IMAGE_SIZE {1} with ' \
              'HEATMAP_SIZE {2}'.format(OUTPUT_STRIDE, [OUTPUT_STRIDE * n for n in near], near)
    raise ConfigError('MODEL.IMAGE_SIZE {} must be {} x MODEL.EXTRA.HEATMAP_SIZE {} (the '
                      'networks output heatmaps at 1/{} of the input size); {}'.format(
                          image_size, OUTPUT_STRIDE, heatmap_size, OUTPUT_STRIDE, fix))


def check_speed(cfg):
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


def warn_unused(cfg):
    """One warning for each key that only the original's yamls set, given a value:
    nothing reads it."""
    defaults = get_default_config()
    for key in UNUSED_KEYS:
        if lookup(cfg, key) != lookup(defaults, key):
            logger.warning('%s is %s, but nothing reads it (kept so that the original\'s '
                           'yaml files load); it has no effect', key, lookup(cfg, key))


def check_config(cfg):
    """Every check a merged config must pass (after the yaml, the overrides and
    the flags); returns `cfg`."""
    from hsrnet.data import DATASETS
    from hsrnet.models import check_model_config
    check_model_config(cfg.MODEL)
    if cfg.DATASET.DATASET not in DATASETS:
        raise ConfigError('unknown DATASET.DATASET {!r}; choose one of {}'.format(
            cfg.DATASET.DATASET, ', '.join(sorted(DATASETS))))
    check_sizes(cfg)
    check_ranges(cfg)
    if cfg.TRAIN.END_EPOCH <= cfg.TRAIN.BEGIN_EPOCH:
        raise ConfigError('TRAIN.END_EPOCH {} must be above TRAIN.BEGIN_EPOCH {}: training '
                          'would run no epoch'.format(cfg.TRAIN.END_EPOCH,
                                                      cfg.TRAIN.BEGIN_EPOCH))
    check_speed(cfg)
    warn_unused(cfg)
    return cfg


# what a network's weights fit or not: a checkpoint's recorded config and a yaml must
# agree on these
SHAPE_KEYS = ('MODEL.NAME', 'MODEL.NUM_JOINTS', 'MODEL.IMAGE_SIZE', 'MODEL.EXTRA.HEATMAP_SIZE',
              'MODEL.EXTRA.NUM_LAYERS', 'MODEL.EXTRA.NUM_DECONV_LAYERS',
              'MODEL.EXTRA.NUM_DECONV_FILTERS', 'MODEL.EXTRA.NUM_DECONV_KERNELS',
              'MODEL.EXTRA.DECONV_WITH_BIAS', 'MODEL.EXTRA.FINAL_CONV_KERNEL')


def check_same_network(cfg, recorded, source):
    """ConfigError naming each key of SHAPE_KEYS where `cfg` and the config `recorded`
    in the checkpoint `source` differ, with both values."""
    differ = ['{} {} (checkpoint: {})'.format(key, lookup(cfg, key), lookup(recorded, key))
              for key in SHAPE_KEYS if lookup(cfg, key) != lookup(recorded, key)]
    if differ:
        raise ConfigError('{} was trained with another network or input than the config '
                          'gives: {}'.format(source, '; '.join(differ)))


def get_model_name(cfg):
    """('pose_hsrnet_59', '256x192_pose_hsrnet_59_d256d256') for an HSRNet-59 256x192 yaml."""
    from hsrnet.models import MODELS
    extra = cfg.MODEL.EXTRA
    if cfg.MODEL.NAME not in MODELS:
        raise ConfigError('unknown MODEL.NAME {!r}; choose one of {}'.format(
            cfg.MODEL.NAME, ', '.join(MODELS)))
    name = '{}_{}'.format(cfg.MODEL.NAME, extra.NUM_LAYERS)
    deconv_suffix = ''.join('d{}'.format(n) for n in extra.NUM_DECONV_FILTERS)
    full_name = '{}x{}_{}_{}'.format(
        cfg.MODEL.IMAGE_SIZE[1], cfg.MODEL.IMAGE_SIZE[0], name, deconv_suffix)
    return name, full_name
