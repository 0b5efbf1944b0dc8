"""Non-maximum suppression of poses (OKS) and boxes (IoU).

The greedy loops run in the Cython extension `nms.cpu_nms` when it has been
built (`cd lib && make`); otherwise in the numpy versions below, which keep
exactly the same candidates, and a warning says so once per process.
Candidates are ordered by descending score as the original ordered them
(`argsort()[::-1]`: tied candidates in reverse input order), in one place, so
both backends see the same sequence.
"""
import logging

import numpy as np

from hsrnet.utils.keypoints import COCO_KEYPOINTS

try:
    from . import cpu_nms as compiled_kernels
except ImportError:  # not built: numpy fallback
    compiled_kernels = None

logger = logging.getLogger(__name__)

COCO_SIGMAS = np.array(COCO_KEYPOINTS.sigmas)
_AREA_EPS = np.spacing(1)


def _oks_against(ref, cands, ref_area, cand_areas, variances, vis_thre):
    """OKS of one pose `ref` (J, 3) with each of `cands` (M, J, 3)."""
    d2 = ((cands[..., :2] - ref[:, :2]) ** 2).sum(axis=-1)
    scale = (ref_area + cand_areas[:, None]) / 2.0 + _AREA_EPS
    e = d2 / variances / scale / 2.0
    counted = (ref[:, 2] > vis_thre) & (cands[..., 2] > vis_thre)
    num_counted = counted.sum(axis=1)
    total = np.where(counted, np.exp(-e), 0.0).sum(axis=1)
    return np.where(num_counted > 0, total / np.maximum(num_counted, 1), 0.0)


class _NumpyKernels:
    """The numpy twins of the functions in cpu_nms.pyx (same arguments, same keeps)."""

    @staticmethod
    def greedy_oks_nms(kpts, areas, variances, thresh, vis_thre):
        order = np.arange(len(kpts))
        keep = []
        while order.size:
            i, rest = order[0], order[1:]
            keep.append(i)
            oks = _oks_against(kpts[i], kpts[rest], areas[i], areas[rest], variances, vis_thre)
            order = rest[oks <= thresh]
        return np.asarray(keep, dtype=np.int64)

    @staticmethod
    def greedy_box_nms(boxes, thresh):
        x1, y1, x2, y2 = boxes.T
        areas = (x2 - x1 + 1) * (y2 - y1 + 1)
        order = np.arange(len(boxes))
        keep = []
        while order.size:
            i, rest = order[0], order[1:]
            keep.append(i)
            iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
            ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
            inter = iw * ih
            order = rest[inter / (areas[i] + areas[rest] - inter) <= thresh]
        return np.asarray(keep, dtype=np.int64)


numpy_kernels = _NumpyKernels()
_warned_fallback = False


def _kernels(backend):
    global _warned_fallback
    if backend == 'numpy':
        return numpy_kernels
    if backend not in (None, 'cython'):
        raise ValueError("backend must be None, 'cython' or 'numpy', got {!r}".format(backend))
    if compiled_kernels is not None:
        return compiled_kernels
    if backend == 'cython':
        raise ImportError('the Cython extension nms.cpu_nms is not built; run `cd lib && make`')
    if not _warned_fallback:
        logger.warning('nms.cpu_nms is not built (run `cd lib && make`); using the slower '
                       'numpy NMS')
        _warned_fallback = True
    return numpy_kernels


def _descending(scores):
    """Indices by descending score, ties in reverse input order: the original's
    `scores.argsort()[::-1]` (numpy sorts short arrays stably; a stable sort
    keeps that order for any length and on every CPU)."""
    return np.argsort(np.asarray(scores, dtype=np.float64), kind='stable')[::-1]


def _as_poses(keypoints):
    """(J, 3) or flattened (3J,) keypoints -> float64 (..., J, 3)."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.shape[-1] != 3:
        keypoints = keypoints.reshape(keypoints.shape[:-1] + (-1, 3))
    return keypoints


def _variances(sigmas, num_joints):
    sigmas = COCO_SIGMAS if sigmas is None else np.asarray(sigmas, dtype=np.float64)
    if len(sigmas) != num_joints:
        raise ValueError('OKS needs one sigma per joint: got {} sigmas for {} joints'
                         .format(len(sigmas), num_joints))
    return np.ascontiguousarray((sigmas * 2) ** 2)


def _vis_threshold(in_vis_thre):
    # No threshold: every joint counts.
    return -np.inf if in_vis_thre is None else float(in_vis_thre)


def oks_iou(g, d, a_g, a_d, sigmas=None, in_vis_thre=None):
    """OKS between pose g ((J, 3) or flattened 3J) and poses d ((M, J, 3) or
    (M, 3J)) with areas a_g and a_d (M,). With `in_vis_thre`, only joints whose
    score exceeds it in both poses count (the original meant this but, by a
    slip, tested only d)."""
    g = _as_poses(g)
    d = _as_poses(np.atleast_2d(d))
    return _oks_against(g, d, float(a_g), np.asarray(a_d, dtype=np.float64).reshape(-1),
                        _variances(sigmas, g.shape[0]), _vis_threshold(in_vis_thre))


def oks_nms(kpts_db, thresh, sigmas=None, in_vis_thre=None, backend=None):
    """Greedy OKS-NMS. kpts_db: list of dicts with 'keypoints' (J, 3) [x, y,
    score], 'score' and 'area'. Returns the indices into kpts_db of the poses
    kept, best first. `backend` forces 'cython' or 'numpy' (default: cython if built)."""
    if len(kpts_db) == 0:
        return []
    scores = np.array([k['score'] for k in kpts_db], dtype=np.float64)
    order = _descending(scores)
    kpts = np.ascontiguousarray(
        np.stack([_as_poses(kpts_db[i]['keypoints']) for i in order]))
    areas = np.ascontiguousarray([kpts_db[i]['area'] for i in order], dtype=np.float64)
    keep = _kernels(backend).greedy_oks_nms(
        kpts, areas, _variances(sigmas, kpts.shape[1]), float(thresh),
        _vis_threshold(in_vis_thre))
    return order[keep].tolist()


def nms(dets, thresh, backend=None):
    """Greedy box NMS. dets: (N, 5) [x1, y1, x2, y2, score] (pixel-inclusive
    corners, areas (x2-x1+1)(y2-y1+1)). Returns the kept indices, best first."""
    dets = np.asarray(dets, dtype=np.float64)
    if dets.size == 0:
        return []
    if dets.ndim != 2 or dets.shape[1] < 5:
        raise ValueError('nms expects boxes of shape (N, 5) [x1, y1, x2, y2, score], got shape {}'
                         .format(dets.shape))
    order = _descending(dets[:, 4])
    keep = _kernels(backend).greedy_box_nms(np.ascontiguousarray(dets[order, :4]), float(thresh))
    return order[keep].tolist()
