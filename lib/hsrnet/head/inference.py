"""From crops to joints at test time: the network's heatmaps (with the flip
test) and their decoding, shared by valid.py, the inference API and the tools.

`get_max_preds` and `get_final_preds(cfg, ...)` are the original's names, kept
as thin wrappers of `head.codec.HeatmapCodec`.
"""
import numpy as np
import torch

from hsrnet.head.codec import HeatmapCodec, argmax_coords


def get_max_preds(batch_heatmaps):
    """Per joint the argmax (N, J, 2) float32 (x, y) in heatmap pixels and its
    value (N, J, 1) of heatmaps (N, J, H, W); joints whose maximum is not
    positive get (0, 0)."""
    return argmax_coords(batch_heatmaps)


def get_final_preds(config, batch_heatmaps, center, scale):
    """Decode heatmaps (N, J, H, W) of crops with boxes center (N, 2), scale (N, 2)
    into image coordinates as the config says (TEST.POST_PROCESS, TEST.DARK).
    Returns (preds (N, J, 2), maxvals (N, J, 1))."""
    heatmaps = np.asarray(batch_heatmaps)
    # The heatmaps' own size, so that any config with the right decode keys works.
    codec = HeatmapCodec.from_config(config, heatmap_size=heatmaps.shape[:1:-1])
    return codec.decode(heatmaps, center, scale)


def decode_keypoints(codec, heatmaps, center, scale):
    """Heatmaps (N, J, H, W) of crops with boxes center (N, 2), scale (N, 2) ->
    keypoints (N, J, 3) [x, y, maxval] in image pixels (HeatmapCodec.decode).
    The one decoding of valid.py's loop and of the inference API."""
    coords, maxvals = codec.decode(heatmaps, center, scale)
    return np.concatenate([coords[..., :2], maxvals], axis=2)


def predict_heatmaps(model, images, flip_pairs=None, shift_heatmap=False, precision=None):
    """Heatmaps (float32) of a batch of crops; with `flip_pairs` the flip test:
    the mirrored crops go through the network too (a second forward pass), their
    heatmaps are flipped back (and shifted one pixel right with `shift_heatmap`,
    TEST.SHIFT_HEATMAP) and averaged with the plain ones. `precision` (engine.precision.Precision)
    gives the autocast; None runs in the model's own dtype."""
    autocast = precision.autocast() if precision is not None else torch.autocast(
        images.device.type, enabled=False)
    if flip_pairs is None:
        with autocast:
            return model(images).float()
    # Two forward passes rather than one of twice the batch: the peak memory of
    # the activations does not double with the flip test. A batch of one crop
    # still goes as one pair (oneDNN computes a single image along another path,
    # last-bit different, and results must not depend on how the set is sharded).
    with autocast:
        if images.size(0) == 1:
            heatmaps, mirrored = model(torch.cat([images, images.flip(3)])).float().chunk(2)
        else:
            heatmaps = model(images).float()
            mirrored = model(images.flip(3)).float()
    mirrored = HeatmapCodec.flip_back(mirrored, flip_pairs, shift_heatmap)
    return (heatmaps + mirrored) * 0.5
