# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled greedy loops of nms.nms (built by `cd lib && make`).

Both functions take candidates already sorted by descending score and return
the positions (in that order) of the ones kept. nms.nms holds the numpy
versions of the same loops, which must give identical keeps.
"""
import numpy as np

cimport numpy as cnp
from libc.math cimport exp

cnp.import_array()

# np.spacing(1): keeps the OKS denominator positive for zero-area boxes.
cdef double AREA_EPS = 2.220446049250313e-16


def greedy_oks_nms(const double[:, :, ::1] kpts, const double[::1] areas,
                   const double[::1] variances, double thresh, double vis_thre):
    """kpts (N, J, 3) [x, y, visibility]; drop every pose whose OKS with a kept,
    higher-scored pose exceeds `thresh`. Only joints visible above `vis_thre` in
    both poses count; with none the OKS is 0."""
    cdef Py_ssize_t n = kpts.shape[0], num_joints = kpts.shape[1]
    cdef Py_ssize_t i, k, j, counted
    cdef double dx, dy, total, scale
    cdef cnp.uint8_t[::1] suppressed = np.zeros(n, dtype=np.uint8)
    keep = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        for k in range(i + 1, n):
            if suppressed[k]:
                continue
            scale = (areas[i] + areas[k]) / 2.0 + AREA_EPS
            total = 0.0
            counted = 0
            for j in range(num_joints):
                if kpts[i, j, 2] > vis_thre and kpts[k, j, 2] > vis_thre:
                    dx = kpts[k, j, 0] - kpts[i, j, 0]
                    dy = kpts[k, j, 1] - kpts[i, j, 1]
                    total += exp(-((dx * dx + dy * dy) / variances[j] / scale / 2.0))
                    counted += 1
            if counted > 0 and total / counted > thresh:
                suppressed[k] = 1
    return np.asarray(keep, dtype=np.int64)


def greedy_box_nms(const double[:, ::1] boxes, double thresh):
    """boxes (N, 4) [x1, y1, x2, y2] in inclusive pixel coordinates; drop every
    box whose IoU with a kept, higher-scored box exceeds `thresh`."""
    cdef Py_ssize_t n = boxes.shape[0]
    cdef Py_ssize_t i, k
    cdef double iw, ih, inter, area_i, area_k
    cdef cnp.uint8_t[::1] suppressed = np.zeros(n, dtype=np.uint8)
    keep = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        area_i = (boxes[i, 2] - boxes[i, 0] + 1) * (boxes[i, 3] - boxes[i, 1] + 1)
        for k in range(i + 1, n):
            if suppressed[k]:
                continue
            iw = max(0.0, min(boxes[i, 2], boxes[k, 2]) - max(boxes[i, 0], boxes[k, 0]) + 1)
            ih = max(0.0, min(boxes[i, 3], boxes[k, 3]) - max(boxes[i, 1], boxes[k, 1]) + 1)
            inter = iw * ih
            area_k = (boxes[k, 2] - boxes[k, 0] + 1) * (boxes[k, 3] - boxes[k, 1] + 1)
            if inter / (area_i + area_k - inter) > thresh:
                suppressed[k] = 1
    return np.asarray(keep, dtype=np.int64)
