"""Speed of a pose network: inference and training-step images/s (float32 and
mixed precision), and validation persons/s end to end with flip test.

    python tools/benchmark.py --cfg EXPERIMENT.yaml [--batch N] [--iters N]
        [--data-root data/sample] [--skip-valid] [opts KEY VALUE ...]

Random inputs of MODEL.IMAGE_SIZE for the network alone; the validation pass
(data loading, forward passes of the plain and flipped crops, decoding, OKS-NMS,
COCO evaluation) runs on --data-root with its detector boxes (default: the
generated sample, see tools/make_sample_data.py). Weights are the untrained
initialisation: speed does not depend on them.
"""
import logging
import os
import sys
import time

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, os.path.join(ROOT, 'lib'))

from hsrnet import data as dataset  # noqa: E402
from hsrnet import models  # noqa: E402
from hsrnet.config import get_model_name  # noqa: E402
from hsrnet.engine.loops import training_step, validate_model  # noqa: E402
from hsrnet.head.inference import predict_heatmaps  # noqa: E402
from hsrnet.head.loss import JointsMSELoss  # noqa: E402
from hsrnet.data.batching import DeviceBatcher  # noqa: E402
from hsrnet.runner.cli import add_opts, base_parser, load_fresh_config  # noqa: E402
from hsrnet.runner.launch import SETUP_ERRORS, report_error  # noqa: E402
from hsrnet.utils.distributed import DistContext  # noqa: E402
from hsrnet.data.loaders import build_val_loader  # noqa: E402
from hsrnet.engine.precision import Precision  # noqa: E402

DETECTION_FILE = 'person_detection_results/COCO_val2017_detections_AP_H_56_person.json'
WARMUP_ITERS = 2


def parse_args():
    parser = base_parser(__doc__.split('\n\n')[0], common_flags=False)
    parser.add_argument('--batch', type=int, default=16, help='images per forward pass')
    parser.add_argument('--iters', type=int, default=5, help='timed iterations per figure')
    parser.add_argument('--data-root', default='data/sample',
                        help='COCO-layout dataset for the validation pass (with '
                             + DETECTION_FILE + ')')
    parser.add_argument('--skip-valid', action='store_true', help='network figures only')
    add_opts(parser)
    return parser.parse_args()


def precisions(device):
    """(label, AMP.ENABLED, AMP.DTYPE) settings worth timing on this device."""
    settings = [('float32', False, 'float16')]
    if device.type == 'cuda':
        settings.append(('float16 autocast', True, 'float16'))
    settings.append(('bfloat16 autocast', True, 'bfloat16'))
    return settings


def _synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def images_per_second(step, batch, iters, device):
    for _ in range(WARMUP_ITERS):
        step()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    _synchronize(device)
    return batch * iters / (time.perf_counter() - start)


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
    for label, enabled, dtype in precisions(device):
        cfg.AMP.ENABLED, cfg.AMP.DTYPE = enabled, dtype
        precision = Precision(cfg, device)
        model = precision.prepare_model(model)
        batch = precision.prepare_input(images, device)

        def infer():
            with torch.no_grad():
                predict_heatmaps(model, batch, precision=precision)

        def train_step():
            training_step(model, criterion, optimizer, precision, batch, target, weight)

        model.eval()
        figures.append(('inference   ' + label, images_per_second(infer, args.batch, args.iters,
                                                                 device)))
        model.train()
        figures.append(('train step  ' + label, images_per_second(train_step, args.batch,
                                                                  args.iters, device)))
    cfg.AMP.ENABLED = False
    return figures


def validation_figure(cfg, args, device, output_dir):
    """(what, persons/s) of one validation pass with flip test and detector boxes."""
    cfg.DATASET.ROOT = args.data_root
    cfg.TEST.COCO_BBOX_FILE = os.path.join(args.data_root, DETECTION_FILE)
    cfg.TEST.USE_GT_BBOX = False
    cfg.TEST.FLIP_TEST = True
    cfg.TEST.BATCH_SIZE = args.batch
    val_dataset = dataset.build_dataset(cfg, cfg.DATASET.TEST_SET, False)
    precision = Precision(cfg, device)
    loader = build_val_loader(val_dataset, args.batch, cfg.WORKERS, DistContext(),
                              device.type == 'cuda',
                              batcher=DeviceBatcher(cfg, device, precision.memory_format))
    model = precision.prepare_model(models.build_model(cfg, is_train=False).to(device))
    criterion = JointsMSELoss(cfg.LOSS.USE_TARGET_WEIGHT)
    start = time.perf_counter()
    validate_model(cfg, loader, val_dataset, model, criterion, output_dir, precision=precision)
    seconds = time.perf_counter() - start
    what = 'valid.py    flip test, {} detector boxes, WORKERS {}'.format(
        len(val_dataset), cfg.WORKERS)
    return what, len(val_dataset) / seconds


def main():
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    try:
        cfg = load_fresh_config(args)
    except SETUP_ERRORS as error:
        return report_error(error, 2)
    device = torch.device('cuda') if torch.cuda.is_available() else torch.device('cpu')
    threads = '{} threads'.format(torch.get_num_threads()) if device.type == 'cpu' \
        else torch.cuda.get_device_name(device)
    print('benchmark: {} {}x{}, batch {}, {} ({})'.format(
        get_model_name(cfg)[0], cfg.MODEL.IMAGE_SIZE[1], cfg.MODEL.IMAGE_SIZE[0],
        args.batch, device.type, threads), flush=True)
    for what, speed in network_figures(cfg, args, device):
        print('{:<45} {:8.1f} img/s'.format(what, speed), flush=True)
    if not args.skip_valid:
        output_dir = os.path.join(cfg.OUTPUT_DIR or 'output', 'benchmark')
        os.makedirs(output_dir, exist_ok=True)
        try:
            what, speed = validation_figure(cfg, args, device, output_dir)
        except SETUP_ERRORS as error:
            return report_error('{} (make the sample with tools/make_sample_data.py or '
                                'give --data-root)'.format(error), 2)
        print('{:<45} {:8.1f} persons/s'.format(what, speed), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
