"""The Python API: a trained pose network applied to pictures.

    from hsrnet.apps.estimator import PoseEstimator
    estimator = PoseEstimator('experiments/coco/hsrnet59/256x192_d256x3_adam_lr1e-3.yaml',
                              'models/pytorch/pose_coco/pose_hsrnet_59_256x192.pth.tar',
                              flip_test=True)
    for person in estimator.estimate(image, boxes):     # image: BGR uint8 or a file name
        person.keypoints   # (J, 3) [x, y, score] in image pixels
        person.box         # [x, y, w, h]
        person.score       # the validation's person score (box score x mean joint score)

It is valid.py's path, function for function: the crop of each box
(utils.transforms.box_to_center_scale and crop_input: crop_image, ImageNet
normalisation, as the datasets), the heatmaps (core.inference.predict_heatmaps, with
the flip test), their decoding (core.inference.decode_keypoints, i.e.
HeatmapCodec.decode), the rescoring and OKS-NMS of the COCO metric
(evaluation.coco.rescore, oks_nms_per_image). For the same checkpoint and boxes
its keypoints and scores are those of valid.py's results json.

The model file is a checkpoint of this project or of the original (.pth,
.pth.tar), or an .onnx file from tools/export_onnx.py, run by onnxruntime (torch
then does no work: crops, flip test and decoding are numpy).
"""
import os
from dataclasses import dataclass

import numpy as np

from hsrnet.head.codec import HeatmapCodec
from hsrnet.config import (check_config, check_same_network, get_default_config, update_config,
                           update_config_from_list)
from hsrnet.data import experiment_keypoints
from hsrnet.head.inference import decode_keypoints
from hsrnet.evaluation.coco import PERSON_CATEGORY, oks_nms_per_image, rescore
from hsrnet.utils.errors import ConfigError, NonFinitePredictionError
from hsrnet.utils.transforms import PIXEL_STD, box_to_center_scale, crop_input

PRECISIONS = {'fp32': None, 'float32': None, 'bf16': 'bfloat16', 'bfloat16': 'bfloat16',
              'fp16': 'float16', 'float16': 'float16'}


@dataclass
class PersonPose:
    """One person: keypoints (J, 3) [x, y, joint score] in image pixels, the box
    [x, y, w, h] it was cut from, its score as valid.py computes it (box score x
    mean of the joint scores above TEST.IN_VIS_THRE), and the box's own score."""
    keypoints: np.ndarray
    box: np.ndarray
    score: float
    box_score: float
    center: np.ndarray
    scale: np.ndarray

    @property
    def area(self):
        """The box area OKS uses: (scale * 200) w x h."""
        return float(np.prod(self.scale * PIXEL_STD))

    def to_coco(self, image_id):
        """A COCO keypoint results record."""
        return {'image_id': image_id, 'category_id': PERSON_CATEGORY,
                'keypoints': [float(v) for v in self.keypoints.reshape(-1)],
                'score': float(self.score),
                'bbox': [round(float(v), 2) for v in self.box]}


def load_experiment(cfg, opts=(), weights=None):
    """The checked, frozen config of a yaml path or a config node, or with `cfg`
    None the one recorded in the checkpoint `weights`, with `opts` KEY VALUE
    overrides (applied before the checks). A yaml and a checkpoint that records its
    config must agree on what shapes the network (config.SHAPE_KEYS)."""
    from hsrnet.runner.cli import read_recorded_config
    recorded = read_recorded_config(weights) if weights and os.path.isfile(weights) else None
    if cfg is None:
        if recorded is None:
            raise ConfigError('{}: records no config (a checkpoint of the original, or bare '
                              'weights): give its yaml'.format(weights))
        node = recorded
    elif isinstance(cfg, (str, os.PathLike)):
        node = update_config(os.fspath(cfg), get_default_config())
    else:
        node = cfg.clone()
    update_config_from_list(list(opts), node)
    check_config(node)
    if cfg is not None and recorded is not None:
        check_same_network(node, recorded, weights)
    return node.freeze()


def estimator_overrides(flip_test, post_process, precision):
    """The estimator's keyword arguments as KEY VALUE overrides (None: the yaml's)."""
    opts = []
    if flip_test is not None:
        opts += ['TEST.FLIP_TEST', bool(flip_test)]
    if post_process is not None:
        opts += ['TEST.POST_PROCESS', bool(post_process)]
    if precision is not None:
        if precision not in PRECISIONS:
            raise ConfigError('precision must be one of {}, got {!r}'.format(
                ', '.join(PRECISIONS), precision))
        opts += ['AMP.ENABLED', PRECISIONS[precision] is not None]
        if PRECISIONS[precision] is not None:
            opts += ['AMP.DTYPE', PRECISIONS[precision]]
    return opts


def select_device(device):
    import torch
    if device in (None, 'auto'):
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    return torch.device(device)


class PoseEstimator:
    """A pose network ready to run on pictures (see the module docstring).

    cfg: experiment yaml (or config node), or None: the config recorded in the
    checkpoint (this project's training records it); model_file: .pth / .pth.tar / .onnx;
    device: 'auto' (CUDA when present, else the CPU), 'cpu', 'cuda:1', ...
    (torch only); flip_test, post_process: None keeps the yaml's TEST.FLIP_TEST /
    TEST.POST_PROCESS; precision: None keeps the yaml's AMP, else 'fp32', 'bf16'
    or 'fp16' (torch only); oks_nms: drop poses that duplicate a better one of
    the same picture (OKS above TEST.OKS_THRE), as valid.py does before scoring;
    batch_size: crops per forward pass (None: TEST.BATCH_SIZE); threads: CPU
    threads of onnxruntime, or torch's (torch.set_num_threads, process-wide)
    (None: their defaults).
    """

    def __init__(self, cfg, model_file, device='auto', flip_test=None, precision=None,
                 oks_nms=False, batch_size=None, post_process=None, opts=(), threads=None):
        self.cfg = cfg = load_experiment(
            cfg, list(opts) + estimator_overrides(flip_test, post_process, precision),
            weights=model_file)
        self.keypoints = experiment_keypoints(cfg)
        self.flip_pairs = [list(p) for p in self.keypoints.flip_pairs] if cfg.TEST.FLIP_TEST \
            else None
        self.codec = HeatmapCodec.from_config(cfg)
        self.image_size = tuple(cfg.MODEL.IMAGE_SIZE)
        self.aspect_ratio = self.image_size[0] / self.image_size[1]
        self.oks_nms = oks_nms
        self.batch_size = int(batch_size or cfg.TEST.BATCH_SIZE)
        self.model_file = model_file = os.fspath(model_file)
        if not os.path.isfile(model_file):
            raise FileNotFoundError('{}: model file not found'.format(model_file))
        if model_file.lower().endswith('.onnx'):
            from hsrnet.apps.onnx_model import OnnxPoseNet
            self.backend = 'onnxruntime'
            self.net = OnnxPoseNet(model_file, cfg, threads=threads)
            self.arch = self.net.arch or cfg.MODEL.NAME
            self.device = 'cpu'
        else:
            if threads:
                import torch
                torch.set_num_threads(int(threads))
            self._load_torch(cfg, model_file, device)

    def _load_torch(self, cfg, model_file, device):
        from hsrnet import models
        from hsrnet.utils.checkpoint import load_pose_checkpoint
        from hsrnet.engine.precision import Precision
        self.backend = 'torch'
        self.device = select_device(device)
        model = models.build_model(cfg, is_train=False)
        load_pose_checkpoint(model, model_file)
        self.precision = Precision(cfg, self.device)
        self.model = self.precision.prepare_model(model).to(self.device).eval()
        self.model = self.precision.inference_network(self.model, cfg.MODEL.IMAGE_SIZE)
        self.arch = model.arch

    def describe(self):
        what = self.precision.describe() if self.backend == 'torch' else 'float32 on cpu'
        return '{} ({}, {}{})'.format(self.arch, self.backend, what,
                                      ', flip test' if self.flip_pairs else '')

    # -- the network -------------------------------------------------------------

    def heatmaps(self, inputs):
        """Heatmaps (N, J, h, w) float32 of normalised crops (N, 3, H, W) float32,
        with the flip test when it is on, in forward passes of batch_size crops."""
        out = []
        for start in range(0, len(inputs), self.batch_size):
            chunk = inputs[start:start + self.batch_size]
            out.append(self._torch_heatmaps(chunk) if self.backend == 'torch'
                       else self._onnx_heatmaps(chunk))
        if not out:
            hm_w, hm_h = self.cfg.MODEL.EXTRA.HEATMAP_SIZE
            return np.zeros((0, self.cfg.MODEL.NUM_JOINTS, hm_h, hm_w), np.float32)
        return np.concatenate(out)

    def _torch_heatmaps(self, chunk):
        import torch
        from hsrnet.head.inference import predict_heatmaps
        images = self.precision.prepare_input(torch.from_numpy(chunk), self.device)
        with torch.no_grad():
            heatmaps = predict_heatmaps(self.model, images, self.flip_pairs,
                                        self.codec.flip_shift(self.cfg.TEST.SHIFT_HEATMAP),
                                        self.precision)
        return heatmaps.cpu().numpy()

    def _onnx_heatmaps(self, chunk):
        heatmaps = self.net(chunk)
        if self.flip_pairs is None:
            return heatmaps
        mirrored = self.codec.flip_back(self.net(chunk[..., ::-1]), self.flip_pairs,
                                        self.codec.flip_shift(self.cfg.TEST.SHIFT_HEATMAP))
        return (heatmaps + mirrored) * 0.5

    # -- pictures -> persons --------------------------------------------------------

    def _boxes(self, image, boxes):
        """(N, 5) [x, y, w, h, score]: given boxes (score 1 when absent), or the
        whole picture when None."""
        if boxes is None:
            height, width = image.shape[:2]
            return np.array([[0.0, 0.0, width, height, 1.0]])
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.size == 0:
            return np.zeros((0, 5))
        if boxes.ndim != 2 or boxes.shape[1] not in (4, 5):
            raise ValueError('boxes must have shape (N, 4) [x, y, w, h] or (N, 5) with a '
                             'score, got shape {}'.format(boxes.shape))
        if boxes.shape[1] == 4:
            boxes = np.concatenate([boxes, np.ones((len(boxes), 1))], 1)
        return boxes

    def estimate_many(self, images, boxes=None):
        """Persons of several pictures, all their boxes in the same forward passes.
        images: BGR uint8 arrays (or file names); boxes: one entry per picture
        (None: the whole picture). Returns one list of PersonPose per picture; a
        network output that is not finite is a NonFinitePredictionError."""
        images = [self._read(image) for image in images]
        boxes = [None] * len(images) if boxes is None else list(boxes)
        if len(boxes) != len(images):
            raise ValueError('estimate_many: {} pictures but {} box lists'.format(
                len(images), len(boxes)))
        rows = [self._boxes(image, b) for image, b in zip(images, boxes)]
        owner = np.concatenate([np.full(len(r), i) for i, r in enumerate(rows)]).astype(np.int64)
        rows = np.concatenate(rows) if rows else np.zeros((0, 5))
        persons = [[] for _ in images]
        if len(rows) == 0:
            return persons
        centers, scales = box_to_center_scale(rows[:, :4], self.aspect_ratio)
        width, height = self.image_size
        inputs = np.zeros((len(rows), 3, height, width), np.float32)
        for k in range(len(rows)):
            inputs[k] = crop_input(images[owner[k]], centers[k], scales[k], self.image_size,
                                   self.cfg.DATASET.COLOR_RGB, udp=self.codec.udp)[0]
        keypoints = decode_keypoints(self.codec, self.heatmaps(inputs), centers, scales)
        finite = np.isfinite(keypoints).all(axis=(1, 2))
        if not finite.all():
            raise NonFinitePredictionError(
                '{}: the network gives non-finite heatmaps (NaN or infinity) for {} of {} '
                'persons'.format(self.model_file, int((~finite).sum()), len(finite)))
        scores = rescore(keypoints[:, :, 2], rows[:, 4], self.cfg.TEST.IN_VIS_THRE)
        if self.oks_nms:
            kept = oks_nms_per_image(keypoints, np.prod(scales * PIXEL_STD, axis=1), scores,
                                     owner, self.cfg.TEST.OKS_THRE, self.keypoints.sigmas)
        else:
            kept = np.arange(len(rows))
        for k in kept:
            persons[owner[k]].append(PersonPose(keypoints[k], rows[k, :4], float(scores[k]),
                                                float(rows[k, 4]), centers[k], scales[k]))
        return persons

    def estimate(self, image, boxes=None):
        """Persons of one picture: a list of PersonPose (see estimate_many)."""
        return self.estimate_many([image], [boxes])[0]

    @staticmethod
    def _read(image):
        if isinstance(image, (str, os.PathLike)):
            from hsrnet.apps.media import read_image
            return read_image(os.fspath(image))
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError('images must be BGR uint8 arrays (H, W, 3), got {} {}'.format(
                image.dtype, image.shape))
        return image
