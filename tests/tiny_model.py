"""A small, seeded, randomly initialised pose network saved to a file, for the
tests of the API, infer.py and the ONNX export (no training, no download)."""
import os

import torch

from conftest import ROOT

DEMO_YAML = os.path.join(ROOT, 'experiments', 'sample', 'hsrnet59_demo.yaml')
# A smaller input and head than the demo yaml: fast on a CPU. The paper's decoding
# (the demo's DARK turns 1e-7 heatmap differences between torch and onnxruntime, or
# between batch sizes, into 1e-4 px; the DARK tests set it themselves).
TINY_OPTS = ['MODEL.IMAGE_SIZE', '[48, 64]', 'MODEL.EXTRA.HEATMAP_SIZE', '[12, 16]',
             'MODEL.EXTRA.NUM_DECONV_FILTERS', '[32, 32]', 'CHANNELS_LAST', 'false',
             'TEST.DARK', 'false']


def tiny_config(*opts):
    from hsrnet.config import check_config, get_default_config, update_config, \
        update_config_from_list
    cfg = update_config(DEMO_YAML, get_default_config())
    update_config_from_list(TINY_OPTS + list(opts), cfg)
    return check_config(cfg)


def tiny_yaml(path, *opts):
    """The tiny config written as a yaml file (for the command-line tools)."""
    from hsrnet.config import dump_config
    cfg = tiny_config(*opts)
    with open(path, 'w') as f:
        f.write(dump_config(cfg))
    return str(path)


def tiny_model(seed=0, *opts):
    """The network with seeded random weights; the head's weights are made large
    enough that heatmaps have clear, input-dependent peaks."""
    from hsrnet import models
    cfg = tiny_config(*opts)
    generator = torch.Generator().manual_seed(seed)
    model = models.build_model(cfg, is_train=False)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1:
                fan_in = param[0].numel()
                param.copy_(torch.randn(param.shape, generator=generator) / fan_in ** 0.5)
            elif name.endswith('bias'):
                param.copy_(0.05 * torch.randn(param.shape, generator=generator))
            else:
                param.fill_(1.0)
        for name, buf in model.named_buffers():
            if name.endswith('running_var'):
                buf.fill_(1.0)
    return cfg, model.eval()


def save_tiny_checkpoint(path, seed=0):
    cfg, model = tiny_model(seed)
    torch.save({'state_dict': model.state_dict(), 'epoch': 1}, str(path))
    return str(path)
