"""From crops to joints at test time: the network's heatmaps (with the flip
test) and their decoding, shared by valid.py, the inference API and the tools.

`get_max_preds` and `get_final_preds(cfg, ...)` are the original's names, kept
as thin wrappers of `head.codec.HeatmapCodec`.
"""
import threading

import numpy as np
import torch

from hsrnet.head.codec import HeatmapCodec, argmax_coords
from hsrnet.models.blocked_layout import ATEN_ONEDNN_MIN_BATCH


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
    if _side_by_side(images, precision):
        heatmaps, mirrored = _forwards_side_by_side(model, images)
    else:
        with autocast:
            if images.size(0) == 1:
                heatmaps, mirrored = model(torch.cat([images, images.flip(3)])).float().chunk(2)
            else:
                heatmaps = model(images).float()
                mirrored = model(images.flip(3)).float()
    mirrored = HeatmapCodec.flip_back(mirrored, flip_pairs, shift_heatmap)
    return (heatmaps + mirrored) * 0.5


# one thread per pass keeps oneDNN's convolutions from this batch on (the reason:
# models.blocked_layout.ATEN_ONEDNN_MIN_BATCH)
SIDE_BY_SIDE_MIN_BATCH = ATEN_ONEDNN_MIN_BATCH


def _side_by_side(images, precision):
    """Whether the flip test's two forward passes run side by side: float32 on
    the CPU (no autocast) with two intra-op threads or more, outside tracing and compiling,
    where each pass runs the convolutions as one pass on all threads does
    (oneDNN's)."""
    threads = torch.get_num_threads()
    autocast = (precision is not None and precision.enabled) or torch.is_autocast_enabled('cpu')
    return (images.device.type == 'cpu' and images.dtype == torch.float32 and not autocast
            and threads >= 2 and images.size(0) > 1
            and (images.size(0) >= SIDE_BY_SIDE_MIN_BATCH or threads // 2 >= 2)
            and not torch.jit.is_tracing() and not torch.compiler.is_compiling())


def _forwards_side_by_side(model, images):
    """(heatmaps of `images`, heatmaps of the mirrored `images`), float32, on the
    CPU: the mirrored pass in a thread of its own, each pass on half of the
    intra-op threads (restored after). On a few cores two passes of one thread
    each keep the cores busier than one after the other on all of them: no
    thread waits for the other at the end of every op, and a DataLoader worker
    that takes a core slows one pass only. oneDNN's float32 forward results do
    not depend on the number of threads (checked bit for bit against the
    sequential passes, tests/test_inference.py); each pass keeps its own batch
    shape and layout, which they do depend on. The activations of both passes
    are in memory at once. The caller's grad mode and inference mode (both
    thread-local) are carried over to the helper thread."""
    threads = torch.get_num_threads()
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
    result = {}

    def mirrored_pass():
        try:
            torch.set_num_threads(threads // 2)
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                result['mirrored'] = model(images.flip(3)).float()
        except BaseException as error:   # re-raised in the caller's thread
            result['error'] = error

    helper = threading.Thread(target=mirrored_pass, name='flip-test forward', daemon=True)
    torch.set_num_threads(threads - threads // 2)
    try:
        helper.start()
        heatmaps = model(images).float()
    finally:
        helper.join()
        torch.set_num_threads(threads)
    if 'error' in result:
        raise result['error']
    return heatmaps, result['mirrored']
