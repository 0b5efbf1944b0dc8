"""Export a trained pose network to ONNX and check the export against torch.

    python tools/export_onnx.py --cfg experiments/coco/hsrnet59/256x192_d256x3_adam_lr1e-3.yaml \
        --model-file models/pytorch/pose_coco/pose_hsrnet_59_256x192.pth.tar --out hsrnet59.onnx

The file takes a dynamic batch of normalised crops `images` (batch, 3, H, W)
float32 and gives `heatmaps` (batch, J, h, w); opset 17 (onnxruntime 1.12 or
later). It is written atomically (a temporary file, then a rename). After the
export, torch and onnxruntime run on the same seeded random batch (3 crops: a
batch size other than the one traced) and the largest absolute heatmap
difference is printed. Trailing `KEY VALUE` pairs override config keys.
"""
import os
import sys

import numpy as np
import torch

import _paths  # noqa: F401,E402  (first: this clone's lib/ on sys.path)

from hsrnet import models  # noqa: E402
from hsrnet.runner.cli import add_opts, base_parser, load_fresh_config  # noqa: E402
from hsrnet.utils.checkpoint import load_pose_checkpoint  # noqa: E402
from hsrnet.utils.errors import ConfigError  # noqa: E402
from hsrnet.apps.onnx_model import OPSET, OnnxPoseNet, export_onnx  # noqa: E402

CHECK_BATCH = 3
CHECK_SEED = 0


def parse_args(argv=None):
    parser = base_parser(__doc__.split('\n')[0], common_flags=False, cfg_from_checkpoint=True)
    parser.add_argument('--model-file', required=True, help='checkpoint (.pth / .pth.tar)')
    parser.add_argument('--out', required=True, help='ONNX file to write')
    parser.add_argument('--opset', type=int, default=OPSET,
                        help='ONNX opset (default %(default)s)')
    add_opts(parser)
    return parser.parse_args(argv)


def load_model(args):
    cfg = load_fresh_config(args, weights=args.model_file)
    model = models.build_model(cfg, is_train=False)
    load_pose_checkpoint(model, args.model_file)
    return cfg, model.eval()


def compare(model, onnx_net, cfg, batch=CHECK_BATCH, seed=CHECK_SEED):
    """Largest |torch - onnxruntime| over the heatmaps of a seeded random batch;
    ValueError when either gives a NaN or infinity."""
    width, height = cfg.MODEL.IMAGE_SIZE
    images = np.random.default_rng(seed).standard_normal((batch, 3, height, width),
                                                         dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    got = onnx_net(images)
    if got.shape != expected.shape:
        raise ValueError('onnxruntime gave heatmaps of shape {}, torch {}'.format(
            got.shape, expected.shape))
    if not (np.isfinite(expected).all() and np.isfinite(got).all()):
        raise ValueError('the heatmaps of the check batch are not finite (NaN or infinity) in {}'
                         .format(' and '.join(name for name, h in (('torch', expected),
                                                                     ('onnxruntime', got))
                                              if not np.isfinite(h).all())))
    return float(np.abs(got - expected).max())


def main(argv=None):
    args = parse_args(argv)
    try:
        out_dir = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK):
            raise ValueError('{}: cannot write there (folder {} missing or read-only)'.format(
                args.out, out_dir))
        cfg, model = load_model(args)
        export_onnx(model, cfg, args.out, opset=args.opset)
        onnx_net = OnnxPoseNet(args.out, cfg)
        try:
            diff = compare(model, onnx_net, cfg)
        except ValueError as err:   # the export is of no use: not left as if it were
            os.remove(args.out)
            raise ValueError('{}: removed: {}'.format(args.out, err)) from None
    except (ConfigError, ValueError, FileNotFoundError, OSError) as err:
        print('error: {}'.format(err), file=sys.stderr)
        return 2
    width, height = cfg.MODEL.IMAGE_SIZE
    print('wrote {} ({}, input [batch, 3, {}, {}], opset {}, {:.1f} MB)'.format(
        args.out, model.arch, height, width, args.opset, os.path.getsize(args.out) / 1e6))
    print('largest heatmap difference torch vs onnxruntime (batch {}): {:.3g}'.format(
        CHECK_BATCH, diff))
    return 0


if __name__ == '__main__':
    sys.exit(main())
