"""Gaussian heatmaps: the one place that turns joints into training targets and
network heatmaps back into joints.

`HeatmapCodec` is used by the datasets (encode), the validation loop, the
inference API and the tools (flip-back, decode). The original's functions
(`JointsDataset.generate_target`, `core.inference.get_max_preds` /
`get_final_preds`) are thin wrappers around it; the mirror itself is
`utils.transforms.flip_back`, geometry like the rest of that module.

Conventions (PROTOCOL.md): heatmaps are (..., J, H, W) at HEATMAP_SIZE = (w, h),
IMAGE_SIZE / HEATMAP_SIZE is the stride; a joint's Gaussian peaks (value 1) at
mu = int(joint / stride + 0.5) with a window of radius 3 sigma.

With `udp` (MODEL.UDP, Huang et al. CVPR 2020) sizes are measured in pixel
intervals: heatmap coordinates = input coordinates x (heatmap_size - 1) /
(image_size - 1) (`stride` is the inverse of that factor), the Gaussian peaks
at the joint's exact sub-pixel position (window and weight still from its
rounded position mu), decoding maps back through UDP's inverse crop affine
(utils.transforms.udp_affine) and the flip test needs no shift.
"""
import functools

import numpy as np

from hsrnet.utils.errors import ConfigError
from hsrnet.utils.transforms import flip_back, transform_preds

TARGET_TYPES = ('gaussian',)


def argmax_coords(heatmaps):
    """Per joint the argmax of the heatmap and its value.

    heatmaps (N, J, H, W). Returns coords (N, J, 2) float32 as (x, y) in heatmap
    pixels, and maxvals (N, J, 1); joints whose maximum is not positive get (0, 0).
    """
    heatmaps = np.asarray(heatmaps)
    if heatmaps.ndim != 4:
        raise ValueError('heatmaps must have shape (batch, joints, height, width), got shape {}'
                         .format(heatmaps.shape))
    n, j, _, width = heatmaps.shape
    flat = heatmaps.reshape(n, j, -1)
    idx = flat.argmax(axis=2)[..., None]
    maxvals = np.take_along_axis(flat, idx, axis=2).astype(np.float32)
    coords = np.concatenate([idx % width, idx // width], axis=2).astype(np.float32)
    coords *= maxvals > 0.0
    return coords, maxvals


def _gather(maps, x, y):
    """maps (N, J, H, W), integer x, y (N, J) -> maps[n, j, y, x] (N, J)."""
    n, j = np.indices(x.shape)
    return maps[n, j, y, x]


def quarter_offset(heatmaps, coords):
    """TEST.POST_PROCESS: 0.25 px toward the higher neighbour on each axis, for
    joints whose rounded peak is not on the heatmap's outer two rows/columns."""
    height, width = heatmaps.shape[2:]
    px = np.floor(coords[..., 0] + 0.5).astype(np.int64)
    py = np.floor(coords[..., 1] + 0.5).astype(np.int64)
    inside = (px > 1) & (px < width - 1) & (py > 1) & (py < height - 1)
    # Clipped only so that the gathers stay in range; outside joints get no offset.
    px, py = np.clip(px, 1, width - 2), np.clip(py, 1, height - 2)
    dx = _gather(heatmaps, px + 1, py) - _gather(heatmaps, px - 1, py)
    dy = _gather(heatmaps, px, py + 1) - _gather(heatmaps, px, py - 1)
    offset = np.stack([np.sign(dx), np.sign(dy)], axis=-1) * 0.25
    return offset * inside[..., None]


def _gaussian_band(size, sigma):
    """(size, size) matrix that smooths one axis with a Gaussian of `sigma`
    truncated at 3 sigma (zero border; unnormalised: the caller rescales)."""
    d = np.arange(size)[:, None] - np.arange(size)[None, :]
    return np.where(np.abs(d) <= 3 * sigma, np.exp(-d ** 2 / (2.0 * sigma ** 2)), 0.0)


def dark_offset(heatmaps, coords, sigma):
    """DARK (distribution-aware) refinement: smooth each heatmap with a Gaussian
    of the target's sigma (keeping its maximum), take the log, and move the
    argmax by the Newton step -H^-1 g of a second-order Taylor expansion there.
    Joints within 2 px of the border, or with a singular Hessian, stay put."""
    heatmaps = np.asarray(heatmaps, dtype=np.float64)
    height, width = heatmaps.shape[2:]
    blurred = _gaussian_band(height, sigma) @ heatmaps @ _gaussian_band(width, sigma).T
    peak = heatmaps.max(axis=(2, 3), keepdims=True)
    blurred *= peak / np.maximum(blurred.max(axis=(2, 3), keepdims=True), 1e-10)
    logs = np.log(np.maximum(blurred, 1e-10))

    x = coords[..., 0].astype(np.int64)
    y = coords[..., 1].astype(np.int64)
    inside = (x > 1) & (x < width - 2) & (y > 1) & (y < height - 2)
    x, y = np.clip(x, 2, width - 3), np.clip(y, 2, height - 3)

    def at(ox, oy):
        return _gather(logs, x + ox, y + oy)

    centre = at(0, 0)
    gx = 0.5 * (at(1, 0) - at(-1, 0))
    gy = 0.5 * (at(0, 1) - at(0, -1))
    hxx = 0.25 * (at(2, 0) - 2 * centre + at(-2, 0))
    hyy = 0.25 * (at(0, 2) - 2 * centre + at(0, -2))
    hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = hxx * hyy - hxy ** 2
    ok = inside & (np.abs(det) > 1e-12) & (peak[..., 0, 0] > 0)
    det = np.where(ok, det, 1.0)
    # -H^-1 g with H = [[hxx, hxy], [hxy, hyy]]
    offset_x = -(hyy * gx - hxy * gy) / det
    offset_y = -(hxx * gy - hxy * gx) / det
    return np.stack([offset_x, offset_y], axis=-1) * ok[..., None]


def _udp_profile(grid, mu, centre, sigma):
    """exp(-(x - centre)^2 / (2 sigma^2)) on `grid` (float64) for |x - mu| <= 3
    sigma, else 0; mu, centre (..., 1) float64 (numpy or torch alike)."""
    exp = np.exp if isinstance(grid, np.ndarray) else (lambda v: v.exp())
    inside = abs(grid - mu) <= sigma * 3
    return exp(-(grid - centre) ** 2 / (2 * sigma ** 2)) * inside


def gaussian_profile(sigma):
    """exp(-d^2 / (2 sigma^2)) for whole offsets d = 0 .. 3 sigma, float32, by the
    expression `HeatmapCodec.encode` evaluates."""
    d = np.arange(int(np.floor(sigma * 3)) + 1, dtype=np.float32)
    return np.exp(-d ** 2 / (2 * sigma ** 2)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _profile_on(sigma, device):
    """gaussian_profile as a tensor on `device`, copied there once (not per batch)."""
    import torch
    return torch.from_numpy(gaussian_profile(sigma)).to(device)


class HeatmapCodec:
    """Encode joints as Gaussian heatmaps and decode heatmaps to joints.

    image_size, heatmap_size: (width, height); sigma: the Gaussian's standard
    deviation in heatmap pixels. Decoding: the argmax, then the quarter-pixel
    offset (`post_process`, TEST.POST_PROCESS) or DARK (`dark`, TEST.DARK), then
    back through the inverse crop affine into image pixels. `udp` (MODEL.UDP):
    UDP's coordinates, targets and decoding (module docstring).
    """

    def __init__(self, image_size, heatmap_size, sigma, target_type='gaussian',
                 post_process=True, dark=False, udp=False):
        if target_type not in TARGET_TYPES:
            raise ConfigError("MODEL.EXTRA.TARGET_TYPE: only 'gaussian' targets exist, got {!r}"
                              .format(target_type))
        self.image_size = np.asarray(image_size, dtype=np.int64)
        self.heatmap_size = np.asarray(heatmap_size, dtype=np.int64)
        self.sigma = float(sigma)
        self.post_process = bool(post_process)
        self.dark = bool(dark)
        self.udp = bool(udp)

    @classmethod
    def from_config(cls, cfg, **overrides):
        """The codec of an experiment config; keyword arguments override its keys."""
        kwargs = dict(image_size=cfg.MODEL.IMAGE_SIZE, heatmap_size=cfg.MODEL.EXTRA.HEATMAP_SIZE,
                      sigma=cfg.MODEL.EXTRA.SIGMA, target_type=cfg.MODEL.EXTRA.TARGET_TYPE,
                      post_process=cfg.TEST.POST_PROCESS, dark=cfg.TEST.DARK,
                      udp=cfg.MODEL.UDP)
        kwargs.update(overrides)
        return cls(**kwargs)

    @property
    def stride(self):
        """Input pixels per heatmap pixel: image / heatmap size, with UDP the
        ratio of their pixel intervals (image - 1) / (heatmap - 1)."""
        if self.udp:
            return (self.image_size - 1) / (self.heatmap_size - 1)
        return self.image_size / self.heatmap_size

    def flip_shift(self, shift_heatmap):
        """Whether the flip test shifts the flipped heatmaps one pixel right:
        TEST.SHIFT_HEATMAP, never with UDP (there they align exactly)."""
        return bool(shift_heatmap) and not self.udp

    # -- encoding -----------------------------------------------------------------

    def encode(self, joints, joints_vis):
        """Targets of joints (..., J, >=2) in crop pixels with visibility
        (..., J) or (..., J, k) (the first column counts).

        Returns target (..., J, H, W) float32 and target_weight (..., J, 1)
        float32: the visibility, 0 also when the 3-sigma window lies wholly
        outside the heatmap (such joints get an all-zero heatmap).
        """
        joints = np.asarray(joints, dtype=np.float64)[..., :2]
        vis = np.asarray(joints_vis, dtype=np.float64)
        if vis.ndim == joints.ndim:
            vis = vis[..., 0]
        width, height = self.heatmap_size
        radius = self.sigma * 3
        # int(x + 0.5) of the original: truncation toward zero.
        exact = joints / self.stride
        mu = np.trunc(exact + 0.5)
        outside = ((mu - radius >= self.heatmap_size) | (mu + radius + 1 < 0)).any(axis=-1)
        target_weight = np.where(outside, 0.0, vis).astype(np.float32)

        # The Gaussian is separable: one 1-D profile per joint and axis.
        if self.udp:
            gx = _udp_profile(np.arange(width, dtype=np.float64), mu[..., :1], exact[..., :1],
                              self.sigma)
            gy = _udp_profile(np.arange(height, dtype=np.float64), mu[..., 1:], exact[..., 1:],
                              self.sigma)
        else:
            dx = np.arange(width, dtype=np.float32) - mu[..., :1].astype(np.float32)
            dy = np.arange(height, dtype=np.float32) - mu[..., 1:].astype(np.float32)
            gx = np.where(np.abs(dx) <= radius, np.exp(-dx ** 2 / (2 * self.sigma ** 2)), 0)
            gy = np.where(np.abs(dy) <= radius, np.exp(-dy ** 2 / (2 * self.sigma ** 2)), 0)
        gx *= (target_weight > 0.5)[..., None]
        target = (gy[..., :, None] * gx[..., None, :]).astype(np.float32, copy=False)
        return target, target_weight[..., None]

    def encode_torch(self, joints, joints_vis):
        """`encode` for a batch of torch tensors on any device (the training device
        builds the targets of a whole batch in a few vectorised ops, see
        data.batching): joints (..., J, >=2) in crop pixels (float64, as `encode`
        computes: then the results are bit for bit `encode`'s), joints_vis (..., J) or
        (..., J, k). Returns target (..., J, H, W) and target_weight (..., J, 1),
        float32 tensors on the joints' device."""
        import torch
        device = joints.device
        width, height = (int(v) for v in self.heatmap_size)
        stride_x, stride_y = (float(v) for v in self.stride)
        radius = self.sigma * 3
        vis = joints_vis[..., 0] if joints_vis.dim() == joints.dim() else joints_vis
        # int(x + 0.5) of the original: truncation toward zero. The constants are
        # python numbers: a tensor made from host data is a copy that, on CUDA, waits
        # for the device (a host sync per batch)
        joints = joints.double()
        exact = torch.stack([joints[..., 0] / stride_x, joints[..., 1] / stride_y], dim=-1)
        mu = torch.trunc(exact + 0.5)
        mu_x, mu_y = mu[..., 0], mu[..., 1]
        outside = ((mu_x - radius >= width) | (mu_y - radius >= height)
                   | (mu_x + radius + 1 < 0) | (mu_y + radius + 1 < 0))
        weight = torch.where(outside, torch.zeros((), dtype=torch.float32, device=device),
                             vis.float())
        if self.udp:   # float64 as `encode`, then float32
            grid_x = torch.arange(width, dtype=torch.float64, device=device)
            grid_y = torch.arange(height, dtype=torch.float64, device=device)
            gx = _udp_profile(grid_x, mu[..., :1], exact[..., :1], self.sigma)
            gy = _udp_profile(grid_y, mu[..., 1:], exact[..., 1:], self.sigma)
            gx = gx * (weight > 0.5).unsqueeze(-1)
            target = (gy.unsqueeze(-1) * gx.unsqueeze(-2)).float()
            return target, weight.unsqueeze(-1)
        mu = mu.float()
        dx = torch.arange(width, dtype=torch.float32, device=device) - mu[..., :1]
        dy = torch.arange(height, dtype=torch.float32, device=device) - mu[..., 1:]
        # mu is a whole number, so the offsets are too: the Gaussian's values come
        # from a table computed by `encode`'s own numpy expression (bit for bit the
        # same targets; torch's exp may differ from numpy's in the last bit)
        table = _profile_on(self.sigma, device)
        last = table.numel() - 1

        def profile(d):
            inside = d.abs() <= radius
            index = d.abs().clamp(max=last).long()
            return torch.where(inside, table[index], 0.0)

        gx, gy = profile(dx), profile(dy)
        gx = gx * (weight > 0.5).unsqueeze(-1)
        target = gy.unsqueeze(-1) * gx.unsqueeze(-2)
        return target, weight.unsqueeze(-1)

    # -- test time ------------------------------------------------------------------

    @staticmethod
    def flip_back(heatmaps, flip_pairs, shift=False):
        """Heatmaps (N, J, H, W) of mirrored crops -> heatmaps of the plain crops:
        mirror the columns and swap left/right joints (utils.transforms.flip_back);
        with `shift` (TEST.SHIFT_HEATMAP) move them one pixel right, as the
        original did. numpy in, numpy out; torch in, torch out (same device)."""
        out = flip_back(heatmaps, flip_pairs)
        if shift:
            out[..., 1:] = out[..., :-1].copy() if isinstance(out, np.ndarray) \
                else out[..., :-1].clone()
        return out

    def decode_heatmap_coords(self, heatmaps):
        """(coords (N, J, 2) float64 in heatmap pixels, maxvals (N, J, 1))."""
        heatmaps = np.asarray(heatmaps)
        coords, maxvals = argmax_coords(heatmaps)
        coords = coords.astype(np.float64)
        if self.dark:
            coords += dark_offset(heatmaps, coords, self.sigma)
        elif self.post_process:
            coords += quarter_offset(heatmaps, coords)
        return coords, maxvals

    def decode(self, heatmaps, center, scale):
        """Heatmaps (N, J, H, W) of crops with boxes center (N, 2), scale (N, 2)
        -> (preds (N, J, 2) float32 in image pixels, maxvals (N, J, 1) float32)."""
        heatmaps = np.asarray(heatmaps)
        coords, maxvals = self.decode_heatmap_coords(heatmaps)
        height, width = heatmaps.shape[2:]
        preds = transform_preds(coords, np.asarray(center), np.asarray(scale), [width, height],
                                udp=self.udp)
        # The original maps back in float64 and stores the result into its float32
        # `preds`: round there too, so that keypoints match it to the last bit.
        return preds.astype(np.float32), maxvals
