"""LOADER.GPU_DECODE: JPEG decode and crop on the GPU (optional).

The workers then send the JPEG file bytes (held in RAM by their cache) and the
2x3 crop matrix instead of a crop; the training device decodes the batch with
nvJPEG (`torchvision.io.decode_jpeg(device='cuda')`) and cuts the crops with
`affine_grid`/`grid_sample`, using the very matrices of the CPU path
(`cv2.warpAffine`, bilinear, black outside the image): the crops differ from
OpenCV's by its fixed-point interpolation (well under one grey level on average).

torchvision is imported only here and only when a GPU decode is asked for on a
machine with CUDA (`available()` looks for it without importing it).
"""
import importlib.util
import logging
import warnings

import torch
import torch.nn.functional as F

from hsrnet.utils.modules import to_device_async

logger = logging.getLogger(__name__)


def available():
    """CUDA and torchvision are both there (nothing is imported to find out)."""
    return torch.cuda.is_available() and importlib.util.find_spec('torchvision') is not None


def jpeg_tensors(buffers):
    """uint8 numpy arrays -> tensors sharing their memory. The file bytes held in RAM
    are read-only arrays, which torch warns about once per process; decode_jpeg only
    reads them, so no copy is made and the warning is not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='The given NumPy array is not writable')
        return [torch.from_numpy(b) for b in buffers]


def decode_jpegs(buffers, device):
    """uint8 numpy arrays of JPEG files -> list of uint8 (3, H, W) tensors, BGR as
    OpenCV decodes, on `device` (batched nvJPEG)."""
    from torchvision.io import ImageReadMode, decode_jpeg
    images = decode_jpeg(jpeg_tensors(buffers), mode=ImageReadMode.RGB, device=device)
    return [image.flip(0) for image in images]   # RGB -> BGR, as the CPU path


def warp_batch(images, warps, out_size):
    """Crops of a batch as cv2.warpAffine(image, warp, out_size, INTER_LINEAR) does:
    images list of uint8 (3, H, W) tensors (sizes may differ) on one device, warps
    (N, 2, 3) float64 mapping image pixels to crop pixels, out_size (width, height)
    -> uint8 (N, out_h, out_w, 3), zeros where the crop leaves the image."""
    device = images[0].device
    out_w, out_h = int(out_size[0]), int(out_size[1])
    height = max(int(i.shape[1]) for i in images)
    width = max(int(i.shape[2]) for i in images)
    batch = torch.zeros((len(images), 3, height, width), dtype=torch.float32, device=device)
    for n, image in enumerate(images):   # zero padding = the black border of warpAffine
        batch[n, :, :image.shape[1], :image.shape[2]] = image
    # crop -> image pixels, inverted on the host (tiny) and copied without waiting: a
    # tensor made from host data, or linalg.inv's singularity check, would wait for
    # the GPU (a host sync per batch)
    warps = torch.as_tensor(warps, dtype=torch.float64)
    full = torch.cat([warps, torch.tensor([[[0.0, 0.0, 1.0]]],
                                          dtype=torch.float64).expand(len(images), 1, 3)], dim=1)
    inverse = to_device_async(torch.linalg.inv(full)[:, :2], device)
    ys, xs = torch.meshgrid(torch.arange(out_h, dtype=torch.float64, device=device),
                            torch.arange(out_w, dtype=torch.float64, device=device),
                            indexing='ij')
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)      # (h, w, 3)
    source = torch.einsum('nij,hwj->nhwi', inverse, points)          # (N, h, w, 2)
    # align_corners=True: -1 and 1 are the centres of the first and last pixels
    grid = torch.stack([source[..., 0] * (2.0 / max(width - 1, 1)) - 1,
                        source[..., 1] * (2.0 / max(height - 1, 1)) - 1], dim=-1).float()
    crops = F.grid_sample(batch, grid, mode='bilinear', padding_mode='zeros',
                          align_corners=True)
    return crops.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
