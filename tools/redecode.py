"""Re-decode heatmaps saved by valid.py --save-heatmaps, without the network:
decoding (argmax, quarter-pixel offset or DARK), rescoring, OKS-NMS and the
dataset's metric, for one setting or a small grid of them, as one AP table.

    python pose_estimation/valid.py --cfg EXP.yaml --model-file W.pth --flip-test \\
        --save-heatmaps --heatmaps-dtype float32
    python tools/redecode.py --cfg EXP.yaml --heatmaps OUT/results/heatmaps_val2017.npz \\
        --decode quarter,dark,argmax --oks-thre 0.9,0.8 [opts KEY VALUE ...]

The config is the one valid.py saved in the file; with --cfg, that yaml, whose
persons (dataset, image set) must be those of the file and MODEL.IMAGE_SIZE /
HEATMAP_SIZE those of the heatmaps. Either way the boxes (TEST.USE_GT_BBOX,
COCO_BBOX_FILE, IMAGE_THRE) and the decoding settings come from the file unless
given as flags or KEY VALUE overrides. The settings not swept come from the config (TEST.POST_PROCESS,
TEST.DARK, TEST.IN_VIS_THRE, TEST.OKS_THRE, MODEL.EXTRA.SIGMA for DARK). Each
setting writes its results json under --output-dir (one setting: DIR/results/,
several: DIR/<setting>/results/) and the table goes to DIR/redecode_<set>.json.
With float32 heatmaps and valid.py's settings the results are valid.py's exactly.
"""
import argparse
import itertools
import logging
import os
import sys
import time

import numpy as np

import _paths  # noqa: F401,E402  (first: this clone's lib/ on sys.path)

from hsrnet import data as dataset  # noqa: E402
from hsrnet.head.codec import HeatmapCodec  # noqa: E402
from hsrnet.engine.heatmap_cache import config_value, load_heatmaps  # noqa: E402
from hsrnet.evaluation import PosePredictions  # noqa: E402
from hsrnet.config import get_default_config  # noqa: E402
from hsrnet.config.loading import merge_yaml_text  # noqa: E402
from hsrnet.runner.cli import add_opts, base_parser, config_overrides, load_fresh_config  # noqa: E402
from hsrnet.runner.launch import SETUP_ERROR_STATUS, SETUP_ERRORS, report_error  # noqa: E402
from hsrnet.utils.errors import (ConfigError, DataError, HeatmapCacheError,  # noqa: E402
                                 NonFinitePredictionError)
from hsrnet.utils.fileio import write_json_atomically  # noqa: E402

# Decoding name -> HeatmapCodec settings.
DECODES = {
    'argmax': dict(post_process=False, dark=False),
    'quarter': dict(post_process=True, dark=False),
    'dark': dict(post_process=True, dark=True),
}
# Keys the heatmaps were made with: the config must agree with the file.
FIXED_KEYS = ('MODEL.IMAGE_SIZE', 'MODEL.EXTRA.HEATMAP_SIZE', 'MODEL.UDP', 'DATASET.DATASET',
              'DATASET.TEST_SET')
# FIXED_KEYS that files saved before the key existed lack, with the value they had
FIXED_DEFAULTS = {'MODEL.UDP': False}
BOX_KEYS = ('DATASET.ROOT', 'TEST.USE_GT_BBOX', 'TEST.COCO_BBOX_FILE', 'TEST.IMAGE_THRE')


def comma_list(convert, name):
    def parse(text):
        try:
            values = [convert(v.strip()) for v in text.split(',') if v.strip()]
        except ValueError as e:
            raise argparse.ArgumentTypeError('{}: {}'.format(name, e)) from None
        if not values:
            raise argparse.ArgumentTypeError('{}: no value given'.format(name))
        return values
    return parse


def decode_name(text):
    if text not in DECODES:
        raise ValueError('{!r} is not one of {}'.format(text, ', '.join(DECODES)))
    return text


def parse_args(argv=None):
    parser = base_parser(__doc__.split('\n\n')[0], common_flags=False, cfg_from_checkpoint=True)
    parser.add_argument('--heatmaps', required=True, metavar='FILE',
                        help='file written by valid.py --save-heatmaps')
    parser.add_argument('--decode', type=comma_list(decode_name, '--decode'),
                        metavar='NAME[,NAME...]',
                        help='argmax, quarter (the quarter-pixel offset) and/or dark; '
                        'default: from TEST.POST_PROCESS / TEST.DARK')
    parser.add_argument('--post-process', action=argparse.BooleanOptionalAction,
                        help='quarter-pixel offset (TEST.POST_PROCESS)')
    parser.add_argument('--dark', action=argparse.BooleanOptionalAction,
                        help='DARK decoding (TEST.DARK)')
    parser.add_argument('--in-vis-thre', type=comma_list(float, '--in-vis-thre'),
                        metavar='X[,X...]', help='rescoring threshold(s) (TEST.IN_VIS_THRE)')
    parser.add_argument('--oks-thre', type=comma_list(float, '--oks-thre'),
                        metavar='X[,X...]', help='OKS-NMS threshold(s) (TEST.OKS_THRE)')
    parser.add_argument('--output-dir', help='where the results go (default: redecode/ '
                        'beside the heatmaps file)')
    parser.add_argument('--chunk', type=int, default=256,
                        help='persons decoded at a time (memory), default 256')
    parser.add_argument('--verbose', action='store_true', help='log the evaluation steps')
    add_opts(parser)
    return parser.parse_args(argv)


# flags -> config keys (the threshold lists sweep; the config holds their first value)
REDECODE_FLAGS = {'post_process': ('TEST.POST_PROCESS', bool), 'dark': ('TEST.DARK', bool),
                  'in_vis_thre': ('TEST.IN_VIS_THRE', lambda values: values[0]),
                  'oks_thre': ('TEST.OKS_THRE', lambda values: values[0])}


# what the file knows of how it was made, and is taken from it unless given (where
# the data lie, DATASET.ROOT, is the machine's: the yaml's)
FILE_KEYS = ('TEST.USE_GT_BBOX', 'TEST.COCO_BBOX_FILE', 'TEST.IMAGE_THRE', 'TEST.POST_PROCESS',
             'TEST.DARK', 'TEST.IN_VIS_THRE', 'TEST.OKS_THRE')


def load_config(args, cache):
    """The config valid.py saved in the heatmaps file, or --cfg's yaml with the
    file's boxes and decoding settings (FILE_KEYS); then opts, then the flags here
    (flags given win)."""
    opts = config_overrides(args.opts)
    given = set(opts[0::2]) | {key for flag, (key, _) in REDECODE_FLAGS.items()
                               if getattr(args, flag) is not None}
    from_file = [item for key in FILE_KEYS if key not in given and key in cache.config
                 for item in (key, cache.config[key])]
    args = argparse.Namespace(**dict(vars(args), opts=from_file + opts))
    recorded = None
    if not args.cfg and cache.config_yaml:
        recorded = merge_yaml_text(cache.config_yaml, get_default_config(),
                                   'the config saved in {}'.format(cache.path))
    return load_fresh_config(args, REDECODE_FLAGS, recorded=recorded)


def config_decode(cfg):
    return 'dark' if cfg.TEST.DARK else 'quarter' if cfg.TEST.POST_PROCESS else 'argmax'


def check_file_matches_config(cache, cfg):
    """ConfigError when the heatmaps cannot be those of this config."""
    hint = '(give redecode the yaml and overrides valid.py ran with)'
    for key in FIXED_KEYS:
        saved, ours = cache.config.get(key, FIXED_DEFAULTS.get(key)), config_value(cfg, key)
        if saved != ours:
            raise ConfigError('heatmaps file {} was saved with {} {}, the config has {} {}'
                              .format(cache.path, key, saved, ours, hint))
    width, height = cfg.MODEL.EXTRA.HEATMAP_SIZE
    if tuple(cache.shape[2:]) != (height, width):
        raise ConfigError('heatmaps file {} holds {}x{} heatmaps, MODEL.EXTRA.HEATMAP_SIZE is '
                          '[{}, {}]'.format(cache.path, cache.shape[3], cache.shape[2],
                                            width, height))


def dataset_images(ds, cache, cfg):
    """The dataset's image paths of the file's persons, after checking that
    they are the same boxes in the same order (the paths may differ: a moved
    DATASET.ROOT)."""
    db = ds.db
    same = len(db) == len(cache)
    if same:
        centers = np.array([r['center'] for r in db], dtype=np.float64).reshape(-1, 2)
        scales = np.array([r['scale'] for r in db], dtype=np.float64).reshape(-1, 2)
        names = [os.path.basename(r['image']) for r in db]
        same = (np.array_equal(centers, cache.centers) and np.array_equal(scales, cache.scales)
                and names == [os.path.basename(p) for p in cache.images])
    if not same:
        saved = ', '.join('{} {}'.format(k, cache.config.get(k)) for k in BOX_KEYS)
        ours = ', '.join('{} {}'.format(k, config_value(cfg, k)) for k in BOX_KEYS)
        raise ConfigError('the {} person boxes of {} under this config ({}) are not the {} of '
                          'heatmaps file {} (saved with {})'.format(
                              len(db), cfg.DATASET.TEST_SET, ours, len(cache), cache.path,
                              saved))
    return [r['image'] for r in db]


def decode_all(cache, cfg, decodes, chunk):
    """{decode name: keypoints (N, J, 3) [x, y, maxval]}, one pass through the file
    (heatmaps as float32, as valid.py decoded them)."""
    codecs = {name: HeatmapCodec.from_config(cfg, **DECODES[name]) for name in decodes}
    keypoints = {name: np.zeros(cache.shape[:2] + (3,)) for name in decodes}
    for start, heatmaps in cache.chunks(max(chunk, 1)):
        heatmaps = heatmaps.astype(np.float32)
        stop = start + len(heatmaps)
        for name, codec in codecs.items():
            coords, maxvals = codec.decode(heatmaps, cache.centers[start:stop],
                                           cache.scales[start:stop])
            keypoints[name][start:stop] = np.concatenate([coords[..., :2], maxvals], axis=2)
    return keypoints


def settings_grid(args, cfg):
    decodes = args.decode or [config_decode(cfg)]
    vis = args.in_vis_thre or [cfg.TEST.IN_VIS_THRE]
    oks = args.oks_thre or [cfg.TEST.OKS_THRE]
    return list(dict.fromkeys(itertools.product(decodes, vis, oks)))


def format_table(rows, saved):
    names = list(rows[0]['metrics'])
    lines = ['| decode | IN_VIS_THRE | OKS_THRE | ' + ' | '.join(names) + ' |',
             '|' + '---|' * (3 + len(names))]
    for row in rows:
        setting = (row['decode'], row['IN_VIS_THRE'], row['OKS_THRE'])
        lines.append('| {}{} | {:g} | {:g} | '.format(
            row['decode'], ' *' if setting == saved else '', row['IN_VIS_THRE'],
            row['OKS_THRE']) + ' | '.join('{:.4f}'.format(v) for v in row['metrics'].values())
            + ' |')
    return '\n'.join(lines)


def redecode(args):
    cache = load_heatmaps(args.heatmaps)
    cfg = load_config(args, cache)
    check_file_matches_config(cache, cfg)
    settings = settings_grid(args, cfg)
    start = time.perf_counter()
    ds = dataset.build_dataset(cfg, cfg.DATASET.TEST_SET, False)
    images = dataset_images(ds, cache, cfg)
    metric = ds.get_metric()
    sweeps_nms = len({(vis, oks) for _, vis, oks in settings}) > 1 or args.in_vis_thre \
        or args.oks_thre
    if sweeps_nms and not hasattr(metric, 'oks_thre'):
        raise ConfigError('--in-vis-thre / --oks-thre: the {} metric has no rescoring or '
                          'OKS-NMS'.format(cfg.DATASET.DATASET))
    loaded = time.perf_counter()

    keypoints = decode_all(cache, cfg, list(dict.fromkeys(s[0] for s in settings)), args.chunk)
    decoded = time.perf_counter()

    output_dir = args.output_dir or os.path.join(
        os.path.dirname(os.path.abspath(args.heatmaps)), 'redecode')
    rows = []
    for decode, vis, oks in settings:
        if hasattr(metric, 'oks_thre'):
            metric.in_vis_thre, metric.oks_thre = vis, oks
        label = '{}_vis{:g}_oks{:g}'.format(decode, vis, oks)
        out = output_dir if len(settings) == 1 else os.path.join(output_dir, label)
        predictions = PosePredictions(keypoints=keypoints[decode], centers=cache.centers,
                                      scales=cache.scales, box_scores=cache.box_scores,
                                      images=images, areas=cache.areas)
        name_values, _ = metric.evaluate(predictions, out)
        rows.append({'decode': decode, 'IN_VIS_THRE': vis, 'OKS_THRE': oks, 'output_dir': out,
                     'metrics': {k: float(v) for k, v in name_values.items()}})
    evaluated = time.perf_counter()

    saved_cfg = cache.config
    saved = ('dark' if saved_cfg.get('TEST.DARK') else 'quarter'
             if saved_cfg.get('TEST.POST_PROCESS') else 'argmax',
             saved_cfg.get('TEST.IN_VIS_THRE'), saved_cfg.get('TEST.OKS_THRE'))
    os.makedirs(output_dir, exist_ok=True)
    summary = os.path.join(output_dir, 'redecode_{}.json'.format(cfg.DATASET.TEST_SET))
    write_json_atomically({'heatmaps': os.path.abspath(args.heatmaps), 'model':
                           cache.meta.get('model'), 'valid_settings': list(saved),
                           'rows': rows}, summary)
    print('{}: {} persons, {} heatmaps {}x{}, flip test {}, shift {} ({})'.format(
        cache.meta.get('model'), len(cache), cache.dtype, cache.shape[2], cache.shape[3],
        'on' if saved_cfg.get('TEST.FLIP_TEST') else 'off',
        'on' if saved_cfg.get('TEST.SHIFT_HEATMAP') else 'off', args.heatmaps))
    print(format_table(rows, saved))
    print('(* = the settings valid.py ran with) data {:.1f} s, decoding {:.1f} s, '
          'evaluation {:.1f} s; table in {}'.format(loaded - start, decoded - loaded,
                                                    evaluated - decoded, summary))
    return rows


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format='%(message)s')
    try:
        redecode(args)
    except (HeatmapCacheError, DataError) as e:
        return report_error(e, 1)
    except NonFinitePredictionError as e:   # NaN or infinity in the saved heatmaps
        return report_error('heatmaps file {}: {}'.format(args.heatmaps, e), 1)
    except SETUP_ERRORS as e:
        return report_error(e, SETUP_ERROR_STATUS)
    return 0


if __name__ == '__main__':
    sys.exit(main())
