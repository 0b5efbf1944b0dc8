"""The network alone: inference and training-step images/s (float32 and mixed
precision), then valid.py persons/s end to end with flip test (the `valid`
subcommand's figure) unless --skip-valid.

    python tools/benchmark.py model --cfg EXPERIMENT.yaml [--batch N] [--iters N]
        [--data-root data/sample] [--skip-valid] [opts KEY VALUE ...]

(What tools/benchmark.py printed before it had subcommands; without a subcommand
it still runs this.) Random inputs of MODEL.IMAGE_SIZE for the network alone, at
float32, float16 autocast (on a GPU) and bfloat16 autocast; a training step is the
scripts' training_step (forward, loss, backward, Adam). Weights are the untrained
initialisation: speed does not depend on them.
"""
import torch

from benchmarks import valid
from benchmarks.common import precisions, say, seconds_per_call, set_precision
from hsrnet import models
from hsrnet.engine.loops import training_step
from hsrnet.engine.precision import Precision
from hsrnet.head.inference import predict_heatmaps
from hsrnet.head.loss import JointsMSELoss
from hsrnet.runner.launch import SETUP_ERRORS, report_error

TAKES_CONFIG = True   # --cfg YAML ... [opts] KEY VALUE: the scripts' command line
WARMUP_ITERS = 2


def add_arguments(parser):
    valid.add_arguments(parser, iters=True)
    parser.add_argument('--skip-valid', action='store_true', help='network figures only')


def network_figures(cfg, args, device):
    """[(what, img/s)] for inference and a training step at each precision."""
    width, height = cfg.MODEL.IMAGE_SIZE
    hm_width, hm_height = cfg.MODEL.EXTRA.HEATMAP_SIZE
    joints = cfg.MODEL.NUM_JOINTS
    images = torch.randn(args.batch, 3, height, width, device=device)
    target = torch.rand(args.batch, joints, hm_height, hm_width, device=device)
    weight = torch.ones(args.batch, joints, 1, device=device)
    model = models.build_model(cfg, is_train=False).to(device)
    criterion = JointsMSELoss(True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-6)
    figures = []
    for dtype in precisions(device, emulated_bf16=True):
        label = dtype if dtype == 'float32' else dtype + ' autocast'
        precision = Precision(set_precision(cfg.clone(), dtype), device)
        model = precision.prepare_model(model)
        batch = precision.prepare_input(images, device)

        def infer():
            with torch.no_grad():
                predict_heatmaps(model, batch, precision=precision)

        def train_step():
            training_step(model, criterion, optimizer, precision, batch, target, weight)

        model.eval()
        figures.append(('inference   ' + label, args.batch / seconds_per_call(
            infer, args.iters, device, WARMUP_ITERS)))
        model.train()
        figures.append(('train step  ' + label, args.batch / seconds_per_call(
            train_step, args.iters, device, WARMUP_ITERS)))
    return figures


def run(args):
    try:
        cfg, device = valid.setup(args)
    except SETUP_ERRORS as error:
        return report_error(error, 2)
    for what, speed in network_figures(cfg, args, device):
        say('{:<45} {:8.1f} img/s'.format(what, speed))
    return 0 if args.skip_valid else valid.print_figure(cfg, args, device)
