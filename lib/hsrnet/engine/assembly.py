"""What train.py and valid.py both build for a run, built once: the network on the
run's device, the loss, one heatmap codec, and the datasets and loaders it feeds.

`ctx` is the run's context (runner.launch.RunContext: device, GPUs, processes,
precision)."""
import logging

import torch

from hsrnet import models
from hsrnet.data import build_dataset
from hsrnet.data.batching import DeviceBatcher
from hsrnet.data.loaders import build_val_loader, loader_options
from hsrnet.engine.preflight import check_model_output
from hsrnet.head.codec import HeatmapCodec
from hsrnet.head.loss import JointsMSELoss
from hsrnet.utils.checkpoint import load_pose_checkpoint
from hsrnet.utils.distributed import DistContext
from hsrnet.utils.modules import unwrap_model

logger = logging.getLogger(__name__)


def wrap_model(model, device, gpus, dist_ctx):
    """DistributedDataParallel under torchrun, DataParallel for GPUS '0,1', else as is."""
    model = model.to(device)
    if dist_ctx.enabled:
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == 'cuda' else None)
    if len(gpus) > 1:
        return torch.nn.DataParallel(model, device_ids=gpus)
    return model


def build_run_model(cfg, ctx, is_train, weights=None):
    """cfg.MODEL's network for the run: built (initialised for training with
    `is_train`), `weights` loaded when given, in the precision's memory format,
    wrapped for several GPUs (DistributedDataParallel only when training: evaluation
    needs no gradient sync), its output shape checked against the config, and
    torch.compile'd in place for training with SPEED.COMPILE."""
    model = models.build_model(cfg, is_train=is_train)
    if weights is not None:
        logger.info('loading model weights from %s', weights)
        load_pose_checkpoint(model, weights)
    model = wrap_model(ctx.precision.prepare_model(model), ctx.device, ctx.gpus,
                       ctx.dist if is_train else DistContext())
    check_model_output(cfg, unwrap_model(model), ctx.device)
    if is_train and cfg.SPEED.COMPILE:   # in place: state_dict keys stay as they are
        unwrap_model(model).compile()
    return model


def build_criterion(cfg, ctx):
    return JointsMSELoss(cfg.LOSS.USE_TARGET_WEIGHT).to(ctx.device)


class RunData:
    """The run's codec, and the datasets, device batchers and loaders built with it."""

    def __init__(self, cfg, ctx):
        self.cfg, self.ctx = cfg, ctx
        self.codec = HeatmapCodec.from_config(cfg)

    def dataset(self, image_set, is_train):
        return build_dataset(self.cfg, image_set, is_train, codec=self.codec)

    def batcher(self):
        """uint8 crops from the workers -> normalised inputs and targets on the device."""
        return DeviceBatcher(self.cfg, self.ctx.device, self.ctx.precision.memory_format,
                             codec=self.codec)

    def loader_options(self):
        return loader_options(self.cfg, self.ctx.device)

    def val_loader(self, dataset):
        cfg, ctx = self.cfg, self.ctx
        return build_val_loader(dataset, cfg.TEST.BATCH_SIZE * ctx.replicas, cfg.WORKERS,
                                ctx.dist, batcher=self.batcher(), **self.loader_options())
