"""The fast data path of the scripts: workers cut uint8 crops, the training device
does the per-pixel work of the whole batch.

A DataLoader over `SampleView(dataset)` with `collate_samples` yields
(crops uint8 (N, H, W, 3), meta); `DeviceBatcher` turns that into the public
item's (input, target, target_weight, meta) on the device, in a few vectorised
torch ops that give what `JointsDataset.__getitem__` gives per sample with numpy
(normalisation bit for bit, targets by HeatmapCodec.encode_torch, equal to the
numpy encode to float32 rounding). Four times fewer bytes
leave the workers (a uint8 crop instead of a float32 one plus 17 float32
heatmaps) and the device builds the heatmaps where they are used.
"""
import torch

from hsrnet.head.codec import HeatmapCodec
from hsrnet.data.loaders import SampleView, collate_samples, meta_tensors  # noqa: F401  (this path)
from hsrnet.utils.modules import to_device_async

from .joints_dataset import PIXEL_MEAN, PIXEL_STD_DEV


class DeviceBatcher:
    """(crops, meta) from `collate_samples` -> (input, target, target_weight, meta)
    on `device`: input normalised as the public item (BGR unless
    DATASET.COLOR_RGB), in `memory_format`; targets by HeatmapCodec.encode_torch
    of `codec` (the run's; default: the config's)."""

    def __init__(self, cfg, device, memory_format=torch.contiguous_format, targets=True,
                 codec=None):
        self.device = device
        self.memory_format = memory_format
        self.color_rgb = bool(cfg.DATASET.COLOR_RGB)
        self.codec = codec or HeatmapCodec.from_config(cfg)
        self.targets = targets
        self.mean = torch.as_tensor(PIXEL_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.as_tensor(PIXEL_STD_DEV, device=device).view(1, 3, 1, 1)

    def images(self, crops):
        """uint8 (N, H, W, 3) -> float32 (N, 3, H, W): /255, minus mean, over std, in
        numpy's order (so bit for bit the public item's input)."""
        pixels = to_device_async(crops, self.device).permute(0, 3, 1, 2)
        if self.color_rgb:
            pixels = pixels.flip(1)
        # the permuted uint8 batch is channels_last already; float() keeps that
        pixels = pixels.float().contiguous(memory_format=self.memory_format)
        pixels.div_(255).sub_(self.mean).div_(self.std)
        return pixels

    def __call__(self, batch):
        crops, meta = batch
        meta = meta_tensors(meta)
        if isinstance(crops, list):   # LOADER.GPU_DECODE: JPEG bytes and crop matrices
            from .gpu_decode import decode_jpegs, warp_batch
            crops = warp_batch(decode_jpegs(crops, self.device), meta['warp'],
                               self.codec.image_size)
        input = self.images(crops)
        if not self.targets:
            return input, None, None, meta
        joints = to_device_async(meta['joints'], self.device)
        joints_vis = to_device_async(meta['joints_vis'], self.device)
        target, target_weight = self.codec.encode_torch(joints, joints_vis)
        return input, target, target_weight, meta
