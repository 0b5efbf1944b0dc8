"""One-Euro smoothing of tracked keypoints in videos (infer.py --smooth).

The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) is an exponential
low-pass whose cutoff frequency rises with the signal's speed: slow joints are
smoothed hard (little jitter), fast joints lightly (little lag). Per joint, at
time t (seconds) with dt since the joint's last update:

    alpha(fc)  = 1 / (1 + 1 / (2 pi fc dt))
    velocity   = EMA with alpha(d_cutoff) of (x - previous smoothed x) / dt
    cutoff     = min_cutoff + beta * |velocity| / person size
    smoothed x = EMA with alpha(cutoff) of x

Units: cutoffs in Hz, time in seconds (a video's frame index / its frame
rate). The speed that raises the cutoff is the joint's 2-D speed in person
sizes per second (the size: the longer side of the person's box), so one set of
parameters suits any video resolution: beta is in Hz per (size / s). The speed
is estimated from the new sample minus the previous smoothed value. At a
steady speed v the filter trails the joint by v / (2 pi cutoff), which is under
size / (2 pi beta) whatever the speed (0.04 of the person's size at the
default beta 4).

The state is kept per track id and joint, in arrays (all the persons of a frame
are filtered at once):
  - a track id seen for the first time starts a fresh filter (its first pose is
    passed through unchanged);
  - a joint whose score is not above `score_threshold` is passed through
    unchanged and leaves the filter's state alone; its next confident frame is
    filtered against its last confident one, with the real time between them;
  - a track not seen for `forget_after` seconds is dropped (if the id comes back,
    it starts afresh).
"""
import numpy as np

DEFAULT_MIN_CUTOFF = 1.0      # Hz: the cutoff of a joint at rest
DEFAULT_BETA = 4.0            # Hz per (person size / s) of speed
DEFAULT_D_CUTOFF = 1.0        # Hz: the cutoff of the speed estimate
DEFAULTS = (DEFAULT_MIN_CUTOFF, DEFAULT_BETA, DEFAULT_D_CUTOFF)
PARAM_NAMES = ('min_cutoff', 'beta', 'd_cutoff')
MIN_SIZE = 1.0                # px: a degenerate box's size


def check_params(min_cutoff, beta, d_cutoff):
    """The parameters as floats; ValueError naming the bad one. The cutoffs must be
    positive, beta zero (a plain low-pass) or positive."""
    values = []
    for name, value, positive in zip(PARAM_NAMES, (min_cutoff, beta, d_cutoff),
                                     (True, False, True)):
        value = float(value)
        if not np.isfinite(value) or value < 0 or (positive and value == 0):
            raise ValueError('{} must be a {} number, got {!r}'.format(
                name, 'positive' if positive else 'non-negative', value))
        values.append(value)
    return tuple(values)


def smoothing_factor(cutoff, dt):
    """The EMA weight of a new sample for a first-order low-pass of cutoff `cutoff`
    (Hz) sampled every `dt` (s): 1 / (1 + tau / dt), tau = 1 / (2 pi cutoff)."""
    return 1.0 / (1.0 + 1.0 / (2 * np.pi * cutoff * dt))


def one_euro_step(state, points, valid, t, size, params):
    """One step of the filter on arrays; returns (smoothed points, new state).

    state: (x (..., 2) smoothed, dx (..., 2) smoothed velocity, t_last (...) time of
    the last update, NaN before the first); points (..., 2); valid (...) bool;
    t a scalar (s); size (...) or broadcastable, the person size in pixels;
    params (min_cutoff, beta, d_cutoff)."""
    min_cutoff, beta, d_cutoff = params
    x0, dx0, t0 = state
    fresh = valid & np.isnan(t0)
    go = valid & ~np.isnan(t0)
    dt = np.where(go, np.maximum(t - np.where(go, t0, t), 1e-6), 1.0)
    with np.errstate(invalid='ignore', over='ignore'):    # non-finite joints: not kept
        velocity = dx0 + smoothing_factor(d_cutoff, dt)[..., None] * (
            (points - x0) / dt[..., None] - dx0)
        speed = np.linalg.norm(velocity, axis=-1) / np.maximum(size, MIN_SIZE)
        alpha = smoothing_factor(min_cutoff + beta * speed, dt)[..., None]
        smoothed = x0 + alpha * (points - x0)
    go2, fresh2 = go[..., None], fresh[..., None]
    x = np.where(go2, smoothed, np.where(fresh2, points, x0))
    dx = np.where(go2, velocity, np.where(fresh2, 0.0, dx0))
    t_last = np.where(valid, float(t), t0)
    return np.where(valid[..., None], x, points), (x, dx, t_last)


class KeypointSmoother:
    """One-Euro filters of the tracked persons of a video.

    update(track_ids (N,), keypoints (N, J, 3), boxes (N, 4) [x, y, w, h], t seconds)
    -> keypoints (N, J, 3): x, y smoothed, scores unchanged."""

    def __init__(self, min_cutoff=DEFAULT_MIN_CUTOFF, beta=DEFAULT_BETA,
                 d_cutoff=DEFAULT_D_CUTOFF, score_threshold=0.0, forget_after=2.0):
        self.params = check_params(min_cutoff, beta, d_cutoff)
        self.score_threshold = float(score_threshold)
        self.forget_after = float(forget_after)
        self.ids = np.zeros(0, np.int64)
        self.last_seen = np.zeros(0)
        self.x = self.dx = self.t_last = None

    def _rows(self, ids, joints):
        """Row of each id in the state, new rows (fresh filters) for new ids."""
        if self.x is None:
            self.x, self.dx = np.zeros((0, joints, 2)), np.zeros((0, joints, 2))
            self.t_last = np.zeros((0, joints))
        if self.x.shape[1] != joints:
            raise ValueError('keypoints have {} joints; the smoother was filtering {}'.format(
                joints, self.x.shape[1]))
        new = ids[~np.isin(ids, self.ids)]
        if len(new):
            self.ids = np.concatenate([self.ids, new])
            self.last_seen = np.concatenate([self.last_seen, np.zeros(len(new))])
            self.x = np.concatenate([self.x, np.zeros((len(new), joints, 2))])
            self.dx = np.concatenate([self.dx, np.zeros((len(new), joints, 2))])
            self.t_last = np.concatenate([self.t_last, np.full((len(new), joints), np.nan)])
        order = np.argsort(self.ids)
        return order[np.searchsorted(self.ids, ids, sorter=order)]

    def update(self, track_ids, keypoints, boxes, t):
        ids = np.asarray(track_ids, dtype=np.int64).reshape(-1)
        if len(np.unique(ids)) != len(ids):
            raise ValueError('track ids of one frame must differ, got {}'.format(ids.tolist()))
        if not len(ids):
            self._forget(t)
            return np.array(keypoints, dtype=np.float64)
        keypoints = np.asarray(keypoints, dtype=np.float64).reshape(len(ids), -1, 3)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(len(ids), 4)
        rows = self._rows(ids, keypoints.shape[1])
        points = keypoints[..., :2]
        valid = (keypoints[..., 2] > self.score_threshold) & np.isfinite(points).all(-1)
        size = boxes[:, 2:].max(1)[:, None]
        state = (self.x[rows], self.dx[rows], self.t_last[rows])
        out = keypoints.copy()
        out[..., :2], (self.x[rows], self.dx[rows], self.t_last[rows]) = one_euro_step(
            state, points, valid, float(t), size, self.params)
        self.last_seen[rows] = t
        self._forget(t)
        return out

    def _forget(self, t):
        keep = self.last_seen >= t - self.forget_after
        if not keep.all():
            self.ids, self.last_seen = self.ids[keep], self.last_seen[keep]
            self.x, self.dx, self.t_last = self.x[keep], self.dx[keep], self.t_last[keep]
