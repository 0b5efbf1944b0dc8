"""The output layouts of the ONNX person detectors that infer.py --detector reads,
how a file's layout is recognised, and how each is decoded into person boxes.

Every layout gives boxes in the pixels of the detector's letterboxed input
(apps.person_boxes maps them back to the picture and applies NMS):

  rows         one output (1, N, 6), rows [x1, y1, x2, y2, score, class], or
               (1, N, 5) without the class (every row a person); (N, 6) and
               (N, 5) too. Post-NMS detections (a model exported with its NMS).
  yolo         one output (1, 4 + C, A), the raw head of YOLOv8 / YOLO11 (an
               ultralytics export without NMS): for each of A anchors the box
               centre x, centre y, width, height, then C class scores that are
               already probabilities (no objectness column).
  dets-labels  two outputs, dets (1, N, 5) [x1, y1, x2, y2, score] and labels
               (1, N) class indices: RTMDet / YOLOX exported by mmdeploy.

Person is class `person_class` (0 in COCO's 80-class order). Recognition
(--detector-layout auto), on the shapes the file declares:
  1. two outputs that fit dets-labels (those named dets and labels, else any
     (1, N, 5) and (1, N) pair) -> dets-labels;
  2. else the first output, when its last dimension is 5 or 6 -> rows;
  3. else the first output, when it is (1, 4 + C, A) with 4 + C >= 5 -> yolo.
A dimension the file leaves open (a name instead of a number) fits no test that
needs its value: (1, N, 6) is rows, (1, 84, A) is yolo. When nothing fits the
declared shapes and some dimension is open, the detector is run once on a blank
picture and the actual shapes decide. A shape that fits rows and yolo, such as
(1, 6, 6) (6 detections, or 6 anchors of 2 classes), is read as rows by rule 2;
--detector-layout yolo reads it as yolo. A named layout that does not fit, or
no layout at all, is an error that lists the file's outputs.
"""
import numpy as np

LAYOUTS = ('rows', 'yolo', 'dets-labels')
LAYOUT_CHOICES = ('auto',) + LAYOUTS
ACCEPTED = ('rows: one output (1, N, 6) [x1, y1, x2, y2, score, class] or (1, N, 5); '
            'yolo: one output (1, 4 + C, A) [cx, cy, w, h, C class scores] per anchor; '
            'dets-labels: outputs dets (1, N, 5) [x1, y1, x2, y2, score] and labels (1, N)')
DETS_LABELS_NAMES = ('dets', 'labels')


def _known(dim):
    return isinstance(dim, (int, np.integer)) and not isinstance(dim, bool)


def _equal(dim, value):
    return _known(dim) and int(dim) == value


def _batch_of_one(dim):
    return not _known(dim) or int(dim) == 1


def fits_rows(shape):
    """(1, N, 6|5) or (N, 6|5)."""
    shape = list(shape)
    if len(shape) == 3 and _batch_of_one(shape[0]):
        shape = shape[1:]
    return len(shape) == 2 and (_equal(shape[1], 5) or _equal(shape[1], 6))


def fits_yolo(shape):
    """(1, 4 + C, A), C >= 1."""
    return (len(shape) == 3 and _batch_of_one(shape[0]) and _known(shape[1])
            and int(shape[1]) >= 5)


def fits_dets_labels(dets, labels):
    """dets (1, N, 5) with labels (1, N), or (N, 5) with (N,)."""
    dets, labels = list(dets), list(labels)
    if not (len(dets) in (2, 3) and _equal(dets[-1], 5) and len(labels) == len(dets) - 1):
        return False
    if len(dets) == 3 and not (_batch_of_one(dets[0]) and _batch_of_one(labels[0])):
        return False
    n, m = dets[-2], labels[-1]
    return not (_known(n) and _known(m)) or int(n) == int(m)


def _dets_labels_pair(names, shapes):
    """Output indices (dets, labels) of a dets-labels pair, or None."""
    if all(name in names for name in DETS_LABELS_NAMES):
        i, j = names.index('dets'), names.index('labels')
        if fits_dets_labels(shapes[i], shapes[j]):
            return i, j
    for i, dets in enumerate(shapes):
        for j, labels in enumerate(shapes):
            if i != j and fits_dets_labels(dets, labels):
                return i, j
    return None


def recognise(names, shapes, requested='auto'):
    """(layout, output indices, also) where `also` names another layout the same
    output fits (rows read as rows, though yolo fits too); None when no layout
    (or not the requested one) fits."""
    if requested not in LAYOUT_CHOICES:
        raise ValueError('detector layout must be one of {}, got {!r}'.format(
            ', '.join(LAYOUT_CHOICES), requested))
    names, shapes = list(names), [list(s) for s in shapes]
    found = []
    pair = _dets_labels_pair(names, shapes)
    if pair is not None:
        found.append(('dets-labels', pair))
    if shapes and fits_rows(shapes[0]):
        found.append(('rows', (0,)))
    if shapes and fits_yolo(shapes[0]):
        found.append(('yolo', (0,)))
    layouts = [layout for layout, _ in found]
    if requested != 'auto':
        found = [f for f in found if f[0] == requested]
    if not found:
        return None
    layout, indices = found[0]
    also = 'yolo' if layout == 'rows' and 'yolo' in layouts else None
    return layout, indices, also


def has_open_dims(shapes):
    return any(not _known(dim) for shape in shapes for dim in shape)


def format_shape(shape):
    return '({})'.format(', '.join(str(int(d)) if _known(d) else str(d or '?') for d in shape)
                         + (',' if len(shape) == 1 else ''))


def unknown_layout_message(path, names, shapes, requested='auto'):
    what = ('no detector output layout fits' if requested == 'auto' else
            '--detector-layout {} does not fit'.format(requested))
    outputs = ', '.join('{} {}'.format(name, format_shape(shape))
                        for name, shape in zip(names, shapes)) or 'none'
    return '{}: {} its outputs: {}; accepted: {}'.format(path, what, outputs, ACCEPTED)


def check_outputs(layout, arrays):
    """Whether the actual outputs still fit `layout` (their sizes may change)."""
    if layout == 'rows':
        return fits_rows(arrays[0].shape)
    if layout == 'yolo':
        return fits_yolo(arrays[0].shape)
    return fits_dets_labels(arrays[0].shape, arrays[1].shape)


def decode(layout, arrays, min_score, person_class=0):
    """Person boxes of one picture: (corners (K, 4) [x1, y1, x2, y2], scores (K,)) in
    the detector input's pixels, scores >= min_score, not yet NMS'd. `arrays`: the
    outputs the layout reads, in its order (rows / yolo: one; dets, labels)."""
    if layout == 'rows':
        rows = np.asarray(arrays[0], dtype=np.float64)
        rows = rows.reshape(rows.shape[-2:])
        keep = rows[:, 4] >= min_score
        if rows.shape[1] == 6:
            keep &= np.round(rows[:, 5]) == person_class
        return rows[keep, :4], rows[keep, 4]
    if layout == 'yolo':
        pred = np.asarray(arrays[0], dtype=np.float64)[0]          # (4 + C, A)
        if person_class >= pred.shape[0] - 4:
            raise ValueError('a yolo output of {} classes has no class {}'.format(
                pred.shape[0] - 4, person_class))
        scores = pred[4 + person_class]
        keep = scores >= min_score
        centre, half = pred[:2, keep].T, pred[2:4, keep].T / 2
        return np.concatenate([centre - half, centre + half], 1), scores[keep]
    if layout == 'dets-labels':
        dets = np.asarray(arrays[0], dtype=np.float64).reshape(-1, 5)
        labels = np.asarray(arrays[1]).reshape(-1)
        keep = (np.round(labels) == person_class) & (dets[:, 4] >= min_score)
        return dets[keep, :4], dets[keep, 4]
    raise ValueError('unknown detector layout {!r}'.format(layout))
