"""Evaluate a trained pose network:
`python pose_estimation/valid.py --cfg EXPERIMENT.yaml --model-file CKPT [--flip-test] ...`

Works in one process (CPU, one GPU, or `--gpus 0,1` with DataParallel) and under
`torchrun --nproc_per_node N`, where each rank predicts a shard of the people and
rank 0 evaluates the gathered results.

`--save-heatmaps [PATH]` also keeps the (flip-averaged) heatmaps with their boxes
(engine.heatmap_cache), so that tools/redecode.py can try other decoding and
post-processing settings without the network.
"""
import logging
import os
import re
import sys

import _init_paths  # noqa: F401  (puts lib/ on sys.path)

from hsrnet.engine.assembly import RunData, build_criterion, build_run_model
from hsrnet.engine.heatmap_cache import DTYPES
from hsrnet.engine.loops import validate_model
from hsrnet.runner.cli import COMMON_FLAGS, add_opts, base_parser, load_config
from hsrnet.runner.launch import run_job, setup_run
from hsrnet.utils.errors import ConfigError

logger = logging.getLogger('valid')
# A config key such as TEST.BATCH_SIZE, or the word opts (not a file name).
CONFIG_KEY = re.compile(r'^(opts|[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)*)$')

VALID_FLAGS = dict(
    COMMON_FLAGS,
    model_file=('TEST.MODEL_FILE', str),
    flip_test=('TEST.FLIP_TEST', bool),
    use_detect_bbox=('TEST.USE_GT_BBOX', lambda use_detect: not use_detect),
    coco_bbox_file=('TEST.COCO_BBOX_FILE', str),
    post_process=('TEST.POST_PROCESS', bool),
    shift_heatmap=('TEST.SHIFT_HEATMAP', bool),
)


def parse_args(argv=None):
    parser = base_parser('Validate a keypoint network', cfg_from_checkpoint=True)
    parser.add_argument('--model-file', help='weights to evaluate (TEST.MODEL_FILE); default: '
                        'final_state.pth.tar in the output folder. A checkpoint of this '
                        "project's training records its config: --cfg may then be left out")
    parser.add_argument('--flip-test', action='store_true', default=None,
                        help='average with the flipped image (TEST.FLIP_TEST)')
    parser.add_argument('--use-detect-bbox', action='store_true', default=None,
                        help='detector boxes instead of ground truth (TEST.USE_GT_BBOX false)')
    parser.add_argument('--coco-bbox-file', help='detector results json (TEST.COCO_BBOX_FILE)')
    parser.add_argument('--post-process', action='store_true', default=None,
                        help='quarter-pixel refinement (TEST.POST_PROCESS)')
    parser.add_argument('--shift-heatmap', action='store_true', default=None,
                        help='shift flipped heatmaps one pixel (TEST.SHIFT_HEATMAP)')
    parser.add_argument('--save-heatmaps', nargs='?', const='', default=None, metavar='PATH',
                        help='also save the heatmaps with the boxes for tools/redecode.py '
                        '(.npz; default path <output dir>/results/heatmaps_<set>.npz)')
    parser.add_argument('--heatmaps-dtype', choices=DTYPES, default='float16',
                        help='precision of the saved heatmaps (default float16)')
    add_opts(parser)
    args = parser.parse_args(argv)
    # `--save-heatmaps KEY VALUE ...`: the flag took the first override's key.
    if args.save_heatmaps is not None and CONFIG_KEY.match(args.save_heatmaps):
        args.opts = [args.save_heatmaps] + list(args.opts)
        args.save_heatmaps = ''
    return args


def heatmaps_path(args, cfg, output_dir):
    """Where --save-heatmaps writes (None without the flag); its folder is
    created here, so that an unwritable place is a setup error."""
    if args.save_heatmaps is None:
        return None
    path = args.save_heatmaps or os.path.join(output_dir, 'results',
                                              'heatmaps_{}.npz'.format(cfg.DATASET.TEST_SET))
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    except OSError as e:
        raise ConfigError('--save-heatmaps: cannot create the folder of {}: {}'.format(
            path, e)) from None
    return path


class Validator:
    """Model, data and loader of one evaluation: built in __init__ (where setup
    errors surface), run by run()."""

    def __init__(self, args):
        if args.save_heatmaps and not args.save_heatmaps.endswith('.npz'):  # before any reading
            raise ConfigError('--save-heatmaps: the file name must end in .npz, got {!r}'
                              .format(args.save_heatmaps))
        self.cfg = cfg = load_config(args, VALID_FLAGS, weights=args.model_file)
        self.ctx = ctx = setup_run(cfg, args.cfg, 'valid')
        self.heatmaps_file = heatmaps_path(args, cfg, ctx.output_dir)
        self.heatmaps_dtype = args.heatmaps_dtype
        model_file = cfg.TEST.MODEL_FILE or os.path.join(ctx.output_dir, 'final_state.pth.tar')
        if not os.path.isfile(model_file):
            raise FileNotFoundError('model file not found: {} (give one with --model-file or '
                                    'TEST.MODEL_FILE)'.format(model_file))
        self.model = build_run_model(cfg, ctx, is_train=False, weights=model_file)
        self.criterion = build_criterion(cfg, ctx)
        data = RunData(cfg, ctx)
        self.val_dataset = data.dataset(cfg.DATASET.TEST_SET, False)
        if self.heatmaps_file:
            j, (w, h) = self.val_dataset.num_joints, cfg.MODEL.EXTRA.HEATMAP_SIZE
            size = len(self.val_dataset) * j * w * h * (2 if self.heatmaps_dtype == 'float16'
                                                        else 4)
            logger.info('heatmaps (%s, %.1f MB) will be saved to %s',
                        self.heatmaps_dtype, size / 2 ** 20, self.heatmaps_file)
        self.val_loader = data.val_loader(self.val_dataset)

    def run(self):
        ctx = self.ctx
        return validate_model(self.cfg, self.val_loader, self.val_dataset, self.model,
                              self.criterion, ctx.output_dir, precision=ctx.precision,
                              heatmaps_file=self.heatmaps_file,
                              heatmaps_dtype=self.heatmaps_dtype)


def main(argv=None):
    return run_job(Validator, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
