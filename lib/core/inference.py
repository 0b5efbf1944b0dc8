"""Heatmaps -> joint coordinates (argmax decoding, as in the original)."""
import numpy as np

from utils.transforms import transform_preds


def get_max_preds(batch_heatmaps):
    """Per joint the argmax of the heatmap and its value.

    batch_heatmaps: (N, J, H, W). Returns preds (N, J, 2) float32 as (x, y) in
    heatmap pixels, and maxvals (N, J, 1); joints whose maximum is not positive
    get (0, 0).
    """
    heatmaps = np.asarray(batch_heatmaps)
    if heatmaps.ndim != 4:
        raise ValueError('get_max_preds expects heatmaps of shape (batch, joints, height, '
                         'width), got shape {}'.format(heatmaps.shape))
    n, j, _, width = heatmaps.shape
    flat = heatmaps.reshape(n, j, -1)
    idx = flat.argmax(axis=2)[..., None]
    maxvals = np.take_along_axis(flat, idx, axis=2).astype(np.float32)
    preds = np.concatenate([idx % width, idx // width], axis=2).astype(np.float32)
    preds *= maxvals > 0.0
    return preds, maxvals


def _quarter_offset(heatmaps, coords):
    """TEST.POST_PROCESS: 0.25 px toward the higher neighbour on each axis, for
    joints whose rounded peak is not on the heatmap's outer two rows/columns."""
    n, j, height, width = heatmaps.shape
    px = np.floor(coords[..., 0] + 0.5).astype(np.int64)
    py = np.floor(coords[..., 1] + 0.5).astype(np.int64)
    inside = (px > 1) & (px < width - 1) & (py > 1) & (py < height - 1)
    # Clip only so that the gathers stay in range; outside joints get no offset.
    px_c, py_c = np.clip(px, 1, width - 2), np.clip(py, 1, height - 2)
    nn, jj = np.meshgrid(np.arange(n), np.arange(j), indexing='ij')
    dx = heatmaps[nn, jj, py_c, px_c + 1] - heatmaps[nn, jj, py_c, px_c - 1]
    dy = heatmaps[nn, jj, py_c + 1, px_c] - heatmaps[nn, jj, py_c - 1, px_c]
    offset = np.stack([np.sign(dx), np.sign(dy)], axis=-1) * 0.25
    return offset * inside[..., None]


def get_final_preds(config, batch_heatmaps, center, scale):
    """Decode heatmaps (N, J, H, W) of crops with boxes center (N, 2), scale (N, 2)
    into image coordinates. Returns (preds (N, J, 2), maxvals (N, J, 1))."""
    heatmaps = np.asarray(batch_heatmaps)
    coords, maxvals = get_max_preds(heatmaps)
    coords = coords.astype(np.float64)
    if config.TEST.POST_PROCESS:
        coords += _quarter_offset(heatmaps, coords)
    height, width = heatmaps.shape[2:]
    preds = transform_preds(coords, np.asarray(center), np.asarray(scale), [width, height])
    return preds, maxvals
