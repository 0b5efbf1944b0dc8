"""The fast data path of the scripts: workers cut uint8 crops, the training device
does the per-pixel work of the whole batch.

A DataLoader over `SampleView(dataset)` with `collate_samples` yields
(crops uint8 (N, H, W, 3), meta); `DeviceBatcher` turns that into the public
item's (input, target, target_weight, meta) on the device, in a few vectorised
torch ops that give what `JointsDataset.__getitem__` gives per sample with numpy
(normalisation bit for bit, targets to float32 rounding). Four times fewer bytes
leave the workers (a uint8 crop instead of a float32 one plus 17 float32
heatmaps) and the device builds the heatmaps where they are used.
"""
import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from .JointsDataset import PIXEL_MEAN, PIXEL_STD_DEV


class SampleView(Dataset):
    """`dataset.load_sample(i)` as the items (what the workers return)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, idx):
        return self.dataset.load_sample(idx)


def collate_samples(samples):
    """load_sample dicts -> (crops uint8 tensor (N, H, W, 3), meta collated as the
    DataLoader collates the public item's meta)."""
    crops = torch.from_numpy(np.stack([s['crop'] for s in samples]))
    meta = default_collate([{k: v for k, v in s.items() if k != 'crop'} for s in samples])
    return crops, meta


def encode_heatmaps(joints, joints_vis, image_size, heatmap_size, sigma):
    """Gaussian heatmaps of a batch, torch on any device: joints (..., J, >=2) in crop
    pixels (float64 for results equal to the numpy encoder), joints_vis (..., J[, k])
    -> target (..., J, H, W) float32 peaking at 1 on each visible joint and
    target_weight (..., J, 1) float32: the visibility, 0 also when the 3-sigma
    window lies wholly outside the heatmap. The same arithmetic as
    JointsDataset.generate_target (the original's), batched."""
    device = joints.device
    width, height = int(heatmap_size[0]), int(heatmap_size[1])
    size = torch.tensor([width, height], dtype=torch.float64, device=device)
    stride = torch.tensor([float(image_size[0]) / width, float(image_size[1]) / height],
                          dtype=torch.float64, device=device)
    radius = sigma * 3
    vis = joints_vis[..., 0] if joints_vis.dim() == joints.dim() else joints_vis
    # int(x + 0.5) of the original: truncation toward zero
    mu = torch.trunc(joints[..., :2].double() / stride + 0.5)
    outside = ((mu - radius >= size) | (mu + radius + 1 < 0)).any(dim=-1)
    weight = torch.where(outside, torch.zeros((), dtype=torch.float32, device=device),
                         vis.float())
    mu = mu.float()
    dx = torch.arange(width, dtype=torch.float32, device=device) - mu[..., :1]
    dy = torch.arange(height, dtype=torch.float32, device=device) - mu[..., 1:]
    denominator = 2 * sigma ** 2
    gx = torch.where(dx.abs() <= radius, torch.exp(-dx ** 2 / denominator), 0.0)
    gy = torch.where(dy.abs() <= radius, torch.exp(-dy ** 2 / denominator), 0.0)
    gx = gx * (weight > 0.5).unsqueeze(-1)
    target = gy.unsqueeze(-1) * gx.unsqueeze(-2)
    return target, weight.unsqueeze(-1)


class DeviceBatcher:
    """(crops, meta) from `collate_samples` -> (input, target, target_weight, meta)
    on `device`: input normalised as the public item (BGR unless
    DATASET.COLOR_RGB), in `memory_format`; targets by `encode_heatmaps`."""

    def __init__(self, cfg, device, memory_format=torch.contiguous_format, targets=True):
        self.device = device
        self.memory_format = memory_format
        self.color_rgb = bool(cfg.DATASET.COLOR_RGB)
        self.image_size = list(cfg.MODEL.IMAGE_SIZE)
        self.heatmap_size = list(cfg.MODEL.EXTRA.HEATMAP_SIZE)
        self.sigma = cfg.MODEL.EXTRA.SIGMA
        self.targets = targets
        self.mean = torch.as_tensor(PIXEL_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.as_tensor(PIXEL_STD_DEV, device=device).view(1, 3, 1, 1)

    def images(self, crops):
        """uint8 (N, H, W, 3) -> float32 (N, 3, H, W): /255, minus mean, over std, in
        numpy's order (so bit for bit the public item's input)."""
        pixels = crops.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        if self.color_rgb:
            pixels = pixels.flip(1)
        # the permuted uint8 batch is channels_last already; float() keeps that
        pixels = pixels.float().contiguous(memory_format=self.memory_format)
        pixels.div_(255).sub_(self.mean).div_(self.std)
        return pixels

    def __call__(self, batch):
        crops, meta = batch
        input = self.images(crops)
        if not self.targets:
            return input, None, None, meta
        joints = meta['joints'].to(self.device, non_blocking=True)
        joints_vis = meta['joints_vis'].to(self.device, non_blocking=True)
        target, target_weight = encode_heatmaps(joints, joints_vis, self.image_size,
                                                self.heatmap_size, self.sigma)
        return input, target, target_weight, meta
