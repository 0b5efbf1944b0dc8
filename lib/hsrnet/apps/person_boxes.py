"""Where infer.py's person boxes come from: a COCO results file, the whole
image, OpenCV's HOG people detector, or a person detector given as a local ONNX
file. Every source maps a Frame (apps.media) to boxes (N, 5) float64
[x, y, w, h, score] in image pixels.

The ONNX detector (`OnnxPersonDetector`):
  input   one float32 tensor (1, 3, H, W): the picture letterboxed to H x W (scaled
          to fit, keeping its aspect ratio, padded right and bottom with grey 114),
          RGB, values in [0, 1]. H and W are read from the model when they are
          fixed, else --detector-size (default 640 x 640).
  output  post-NMS rows (1, N, 6) [x1, y1, x2, y2, score, class] or (1, N, 5); the
          raw YOLOv8 / YOLO11 head (1, 4 + C, A); or mmdeploy's dets (1, N, 5) +
          labels (1, N); in the letterboxed input's pixels (apps.detector_layouts:
          the layouts and how a file's is recognised). Persons (class
          `person_class`, default 0, COCO's 80-class order) scoring >= the
          threshold are kept, mapped back to the picture and NMS'd.
"""
import os

import cv2
import numpy as np

from hsrnet.apps.detector_layouts import (LAYOUT_CHOICES, check_outputs, decode, format_shape,
                                          has_open_dims, recognise, unknown_layout_message)
from hsrnet.data.detections import read_person_detections
from hsrnet.nms.nms import nms

HOG_NMS_IOU = 0.5
HOG_MIN_HEIGHT = 160         # images smaller than this are upscaled for the 64x128 window


def _xywh_scores(boxes, scores):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    return np.concatenate([boxes, scores[:, None]], 1)


def _box_nms(boxes, iou):
    """Greedy NMS of [x, y, w, h, score] rows; best first."""
    if len(boxes) == 0:
        return boxes
    corners = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:4] - 1, boxes[:, 4:]], 1)
    return boxes[nms(corners, iou)]


class WholeImage:
    """One box, the whole picture, score 1 (single-person pictures)."""
    name = 'whole image'

    def __call__(self, frame):
        height, width = frame.image.shape[:2]
        return _xywh_scores([[0, 0, width, height]], [1.0])


def _hog_class():
    """cv2.HOGDescriptor (OpenCV 4), or its home in contrib's xobjdetect (OpenCV 5
    moved HOG out of the main modules), or None."""
    for owner in (cv2, getattr(cv2, 'xobjdetect', None)):
        if owner is not None and hasattr(owner, 'HOGDescriptor'):
            return owner.HOGDescriptor
    return None


class HogPeopleDetector:
    """OpenCV's built-in HOG + linear SVM people detector (it ships inside
    OpenCV 4: no download). Scores are the SVM margins squashed to (0, 1).
    OpenCV 5 moved HOG to opencv-contrib; without it this is a ValueError that
    says which other box sources there are."""
    name = 'OpenCV HOG people detector'

    def __init__(self, min_score=0.3):
        hog_class = _hog_class()
        if hog_class is None:
            raise ValueError(
                'OpenCV {} has no HOG people detector (OpenCV 5 moved it to opencv-contrib); '
                'give person boxes with --boxes FILE.json, --whole-image or --detector '
                'FILE.onnx, or install opencv-python-headless<5'.format(cv2.__version__))
        self.hog = hog_class()
        self.hog.setSVMDetector(hog_class.getDefaultPeopleDetector())
        self.min_score = min_score

    def __call__(self, frame):
        image = frame.image
        zoom = max(1.0, HOG_MIN_HEIGHT / image.shape[0])
        if zoom > 1:
            image = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_LINEAR)
        rects, weights = self.hog.detectMultiScale(image, winStride=(8, 8), padding=(8, 8),
                                                   scale=1.05)
        if len(rects) == 0:
            return np.zeros((0, 5))
        scores = 1.0 / (1.0 + np.exp(-np.asarray(weights, dtype=np.float64).reshape(-1)))
        boxes = _xywh_scores(np.asarray(rects, dtype=np.float64) / zoom, scores)
        return _box_nms(boxes[boxes[:, 4] >= self.min_score], HOG_NMS_IOU)


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


class OnnxPersonDetector:
    """A person detector in a local ONNX file (input and outputs: see the module
    docstring; `layout` one of apps.detector_layouts.LAYOUT_CHOICES)."""

    def __init__(self, path, min_score=0.3, person_class=0, size=(640, 640), nms_iou=0.5,
                 layout='auto'):
        import onnxruntime as ort
        if layout not in LAYOUT_CHOICES:
            raise ValueError('detector layout must be one of {}, got {!r}'.format(
                ', '.join(LAYOUT_CHOICES), layout))
        if not os.path.isfile(path):
            raise FileNotFoundError('{}: detector file not found'.format(path))
        try:
            self.session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
        except Exception as err:
            raise ValueError('{}: not an ONNX model onnxruntime can run ({})'.format(
                path, _first_line(err))) from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError('{}: a person detector takes one (1, 3, H, W) image input; this '
                             'model has inputs {}'.format(path, [i.shape for i in inputs]))
        self.path, self.input_name = path, inputs[0].name
        height, width = inputs[0].shape[2:]
        self.size = (width if isinstance(width, int) else size[0],
                     height if isinstance(height, int) else size[1])
        self.min_score, self.person_class, self.nms_iou = min_score, person_class, nms_iou
        self.layout, self.outputs, also = self._recognise(layout)
        self.name = 'ONNX detector {} ({} layout{})'.format(
            path, self.layout, '' if also is None else '; its output {} fits {} too: '
            '--detector-layout'.format(self.output_shapes[0], also))

    def _recognise(self, requested):
        """The layout of the model's outputs, from their declared shapes or, when
        those leave it open, from one run on a blank picture."""
        outputs = self.session.get_outputs()
        names, shapes = [o.name for o in outputs], [list(o.shape) for o in outputs]
        found = recognise(names, shapes, requested)
        if found is None and has_open_dims(shapes):
            blank = np.full((self.size[1], self.size[0], 3), 114, np.uint8)
            shapes = [list(a.shape) for a in self._run(self._letterbox(blank)[0])]
            found = recognise(names, shapes, requested)
        if found is None:
            raise ValueError(unknown_layout_message(self.path, names, shapes, requested))
        self.output_names = [names[i] for i in found[1]]
        self.output_shapes = [format_shape(shapes[i]) for i in found[1]]
        return found

    def _letterbox(self, image):
        width, height = self.size
        zoom = min(width / image.shape[1], height / image.shape[0])
        resized = cv2.resize(image, (max(1, round(image.shape[1] * zoom)),
                                     max(1, round(image.shape[0] * zoom))))
        canvas = np.full((height, width, 3), 114, np.uint8)
        canvas[:resized.shape[0], :resized.shape[1]] = resized
        return canvas[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0, zoom

    def _run(self, tensor, names=None):
        try:
            return self.session.run(names, {self.input_name: tensor})
        except Exception as err:
            raise ValueError('{}: the detector failed to run ({})'.format(
                self.path, _first_line(err))) from None

    def __call__(self, frame):
        image = frame.image
        tensor, zoom = self._letterbox(image)
        arrays = [np.asarray(a) for a in self._run(tensor, self.output_names)]
        if not check_outputs(self.layout, arrays):
            raise ValueError('{}: detector outputs {} no longer fit the {} layout it was read '
                             'as'.format(self.path, ', '.join(format_shape(a.shape)
                                                             for a in arrays), self.layout))
        corners, scores = decode(self.layout, arrays, self.min_score, self.person_class)
        x1y1 = np.clip(corners[:, :2] / zoom, 0, None)
        x2y2 = np.minimum(corners[:, 2:4] / zoom, [image.shape[1], image.shape[0]])
        boxes = _xywh_scores(np.concatenate([x1y1, np.maximum(x2y2 - x1y1, 1)], 1), scores)
        return _box_nms(boxes, self.nms_iou)


class BoxesFile:
    """Boxes of a COCO results json, matched to the input pictures by `file_name`
    (the picture's name) or by `image_id` (the number in the picture's name, e.g.
    000000900001.jpg -> 900001, else its position; a video frame's index)."""

    def __init__(self, path, min_score=0.0):
        self.name = 'boxes of {}'.format(path)
        self.path, self.min_score = path, min_score
        self.by_name, self.by_id = {}, {}
        for person in read_person_detections(path, '--boxes', strict=False).persons:
            key, rows = ((person['file_name'], self.by_name) if person['file_name'] is not None
                         else (person['image_id'], self.by_id))
            rows.setdefault(key, []).append(person['bbox'] + [person['score']])

    def _rows(self, file_name, image_id):
        rows = self.by_name.get(file_name) if file_name is not None else None
        if rows is None:
            rows = self.by_id.get(image_id, [])
        return np.asarray(rows, dtype=np.float64).reshape(-1, 5)

    def check_inputs(self, frames_ids, inputs):
        """ValueError unless some box of at least `min_score` names one of the
        (file_name, image_id) pairs of the input `inputs`; the message tells a file
        that names none of them from boxes that all score below the threshold."""
        scores = np.concatenate([self._rows(name, image_id)[:, 4]
                                 for name, image_id in frames_ids] or [np.zeros(0)])
        if not len(scores):
            raise ValueError('{}: names none of the inputs of {} (no entry with one of their '
                             'file names or image ids)'.format(self.path, inputs))
        if scores.max() < self.min_score:
            raise ValueError('{}: each of the {} person boxes of the inputs of {} scores below '
                             '--box-thre {:g} (the highest: {:.4g})'.format(
                                 self.path, len(scores), inputs, self.min_score, scores.max()))

    def __call__(self, frame):
        rows = self._rows(frame.file_name, frame.image_id)
        return rows[rows[:, 4] >= self.min_score]
