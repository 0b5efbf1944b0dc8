"""Model summary of the network each experiment yaml describes: parameters,
GFLOPs at the yaml's input size, and each stage's output stride and resolution.

    python tools/count_params.py experiments/coco/hsrnet59/256x192_d256x3_adam_lr1e-3.yaml ...
    python tools/count_params.py --stages experiments/coco/*/*.yaml   # per-stage table too
    python tools/count_params.py --markdown experiments/coco/*/*.yaml # README table rows

FLOPs are counted by torch.utils.flop_counter.FlopCounterMode on one image
(batch 1) at MODEL.IMAGE_SIZE. It counts convolutions, transposed convolutions
and matrix products only (batch norm, ReLU, pooling and additions are not
counted), and a multiply-add counts as TWO FLOPs: GMACs (multiply-adds) are half
the GFLOPs printed. The networks are built on the meta device: no memory, no
weights, no arithmetic, so all 18 COCO yamls take seconds.
"""
import argparse
import os
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

import _paths  # noqa: F401,E402  (first: this clone's lib/ on sys.path)

from hsrnet import models  # noqa: E402
from hsrnet.config import ConfigError, check_config, get_default_config, update_config  # noqa: E402

STEM = 'maxpool'       # the stem's last module: stride 4


def build_meta_model(cfg_path):
    cfg = get_default_config()
    update_config(cfg_path, cfg)
    check_config(cfg)
    with torch.device('meta'):
        model = models.build_model(cfg, is_train=False)
    return cfg, model.eval()


def summarize(cfg_path):
    """{'arch', 'params', 'flops', 'input' (w, h), 'stages': [(name, channels,
    (w, h), stride)]} of the yaml's network at its input size, batch 1."""
    cfg, model = build_meta_model(cfg_path)
    width, height = cfg.MODEL.IMAGE_SIZE
    stage_names = [STEM] + list(model.stage_names) + ['deconv_layers', 'final_layer']
    stages, hooks = [], []
    for name in stage_names:
        def hook(module, inputs, output, name=name):
            h, w = output.shape[-2:]
            stages.append((name, output.shape[1], (w, h), height / h))
        hooks.append(model.get_submodule(name).register_forward_hook(hook))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.empty(1, 3, height, width, device='meta'))
    for handle in hooks:
        handle.remove()
    return {'arch': model.arch, 'params': sum(p.numel() for p in model.parameters()),
            'flops': counter.get_total_flops(), 'input': (width, height), 'stages': stages}


def format_stride(stride):
    return '{:g}'.format(stride) if stride >= 1 else '1/{:g}'.format(1 / stride)


def print_summary(path, s, with_stages):
    print('{}: {} {:,} parameters ({:.2f}M), {:.2f} GFLOPs at {}x{} (multiply-add = 2 FLOPs; '
          '{:.2f} GMACs)'.format(path, s['arch'], s['params'], s['params'] / 1e6,
                                 s['flops'] / 1e9, s['input'][0], s['input'][1],
                                 s['flops'] / 2e9))
    if with_stages:
        for name, channels, (w, h), stride in s['stages']:
            print('    {:<14} {:>5} ch  {:>3}x{:<3}  stride {}'.format(
                name, channels, w, h, format_stride(stride)))


def markdown_row(path, s):
    backbone = os.path.basename(os.path.dirname(path))
    strides = ' '.join(format_stride(st[3]) for st in s['stages'][1:-2])
    return '| {} | {}x{} | {:.1f}M | {:.2f} | {} |'.format(
        backbone, s['input'][0], s['input'][1], s['params'] / 1e6, s['flops'] / 1e9, strides)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('cfg', nargs='+', help='experiment yaml file(s)')
    parser.add_argument('--stages', action='store_true',
                        help="also print each stage's channels, resolution and output stride")
    parser.add_argument('--markdown', action='store_true',
                        help='print a markdown table (backbone, input, params, GFLOPs, '
                             'stage strides)')
    args = parser.parse_args()
    if args.markdown:
        print('| backbone | input (w x h) | params | GFLOPs | stage strides |')
        print('|---|---|---|---|---|')
    for path in args.cfg:
        try:
            summary = summarize(path)
        except (ConfigError, FileNotFoundError) as err:
            sys.exit('error: {}'.format(err))
        if args.markdown:
            print(markdown_row(path, summary))
        else:
            print_summary(path, summary, args.stages)


if __name__ == '__main__':
    main()
