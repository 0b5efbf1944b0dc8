"""Print the parameter count of the network each experiment yaml describes.

    python tools/count_params.py experiments/coco/hsrnet59/256x192_d256x3_adam_lr1e-3.yaml ...

The networks are built on the meta device: no memory, no weights, instant.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))

import models  # noqa: E402
from core.config import ConfigError, check_config, get_default_config, update_config  # noqa: E402


def count_parameters(cfg_path):
    cfg = get_default_config()
    update_config(cfg_path, cfg)
    check_config(cfg)
    with torch.device('meta'):
        model = models.build_model(cfg, is_train=False)
    return model.arch, sum(p.numel() for p in model.parameters())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('cfg', nargs='+', help='experiment yaml file(s)')
    args = parser.parse_args()
    for path in args.cfg:
        try:
            arch, count = count_parameters(path)
        except ConfigError as err:
            sys.exit('error: {}'.format(err))
        print('{}: {} {:,} parameters ({:.2f}M)'.format(path, arch, count, count / 1e6))


if __name__ == '__main__':
    main()
