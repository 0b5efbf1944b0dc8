"""Base class of the top-down keypoint datasets: crops, augmentation, targets.

A subclass fills `self.db` with one record per person box:
    image        path of the image file
    center       (2,) box centre in pixels
    scale        (2,) box (w, h) / 200, already enlarged by 1.25
    joints_3d    (J, 3) [x, y, 0] in pixels
    joints_3d_vis (J, 3) [v, v, 0], v in {0, 1}
    score        (optional) detector score of the box, 1 for ground-truth boxes
and implements `evaluate`. Records of one image must be adjacent in `db`, so
that the per-process image cache decodes each image once when reading in order.

An item is (input, target, target_weight, meta). `input` is the crop as a
float32 tensor (3, H, W), always scaled to [0, 1] and normalised with the
ImageNet mean/std, channels in OpenCV's BGR order unless DATASET.COLOR_RGB:
what the original's scripts obtained by passing ToTensor + Normalize as the
transform. The optional `transform` is an extra callable applied to that tensor.
"""
import logging
import os
from collections import OrderedDict

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from hsrnet.head.codec import HeatmapCodec
from hsrnet.data.gpu_decode import available as gpu_decode_available
from hsrnet.data.half_body import HalfBody
from hsrnet.data.layouts import keypoint_layout
from hsrnet.evaluation import PosePredictions
from hsrnet.utils.arrays import group_indices
from hsrnet.utils.errors import ConfigError, DataError, ImageNotFoundError
from hsrnet.utils.image_decode import jpeg_width, read_image_file
from hsrnet.utils.transforms import (PIXEL_MEAN, PIXEL_STD, PIXEL_STD_DEV,  # noqa: F401  (re-exported)
                              affine_transform_points, box_to_center_scale, crop_image,
                              fliplr_joints, get_affine_transform, normalize_pixels)

logger = logging.getLogger(__name__)

def pixels_to_tensor(crop):
    """uint8 crop (H, W, 3) -> normalised float32 tensor (3, H, W)."""
    return torch.from_numpy(normalize_pixels(crop))


def _largest_factor(shrink):
    """The largest of 1, 2, 4, 8 that a crop shrinking the image `shrink` times
    allows (the reduced image keeps at least the crop's resolution)."""
    factor = 1
    while factor < 8 and shrink >= 2 * factor:
        factor *= 2
    return factor


def reduced_crop(image, image_width, factor, center, scale, rotation, image_size, flip,
                 udp=False):
    """crop_image for an image decoded at 1/factor size (DATASET.REDUCED_DECODE):
    the same box, the same trans (full-size image -> crop) returned; reduced pixel
    i covers full pixels factor * i .. factor * i + factor - 1."""
    trans = get_affine_transform(center, scale, rotation, image_size, udp=udp)
    warp = trans
    if flip:
        mirror = np.array([[-1.0, 0.0, image_width - 1], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        warp = trans @ mirror
    half = np.full((2, 1), (factor - 1) / 2)
    warp = np.concatenate([warp[:, :2] * factor, warp[:, :2] @ half + warp[:, 2:]], axis=1)
    crop = cv2.warpAffine(image, warp, (int(image_size[0]), int(image_size[1])),
                          flags=cv2.INTER_LINEAR)
    return crop, trans


class ReducedImage(tuple):
    """(image decoded at reduced size, full width); `nbytes` for the cache."""

    def __new__(cls, image, width):
        return super().__new__(cls, (image, width))

    @property
    def nbytes(self):
        return self[0].nbytes

    @property
    def flags(self):
        return self[0].flags


class ImageCache:
    """A small per-process LRU of decoded images, bounded in bytes.

    Each DataLoader worker gets its own (empty) cache: pickling drops the
    contents. The images are read-only so a cached array cannot be altered.
    """

    def __init__(self, load, max_bytes=64 << 20):
        self.load = load
        self.max_bytes = max_bytes
        self._images = OrderedDict()
        self._bytes = 0

    def __getstate__(self):
        return {'load': self.load, 'max_bytes': self.max_bytes}

    def __setstate__(self, state):
        self.__init__(state['load'], state['max_bytes'])

    def __call__(self, path):
        image = self._images.get(path)
        if image is not None:
            self._images.move_to_end(path)
            return image
        image = self.load(path)
        image.flags.writeable = False
        self._images[path] = image
        self._bytes += image.nbytes
        while self._bytes > self.max_bytes and len(self._images) > 1:
            _, dropped = self._images.popitem(last=False)
            self._bytes -= dropped.nbytes
        return image


class JointsDataset(Dataset):
    """Person crops with Gaussian heatmap targets (see the module docstring)."""

    # The dataset's own keypoints (utils.keypoints); subclasses that read any
    # joint count from COCO-format files allow a yaml-declared layout.
    native_keypoints = None
    custom_keypoints = False
    # Where the images are expected, for error messages (set by subclasses).
    image_layout = '<ROOT>/images/...'

    def __init__(self, cfg, root, image_set, is_train, transform=None, codec=None):
        """`codec`: the run's HeatmapCodec (default: the config's)."""
        self.cfg = cfg
        self.root = root
        self.image_set = image_set
        self.is_train = is_train
        self.transform = transform
        self.data_format = cfg.DATASET.DATA_FORMAT
        self.scale_factor = cfg.DATASET.SCALE_FACTOR
        self.rotation_factor = cfg.DATASET.ROT_FACTOR
        self.flip = cfg.DATASET.FLIP
        self.color_rgb = cfg.DATASET.COLOR_RGB
        self.image_size = np.array(cfg.MODEL.IMAGE_SIZE, dtype=np.int64)
        self.heatmap_size = np.array(cfg.MODEL.EXTRA.HEATMAP_SIZE, dtype=np.int64)
        self.sigma = cfg.MODEL.EXTRA.SIGMA
        self.codec = codec or HeatmapCodec.from_config(cfg)
        self.udp = self.codec.udp   # MODEL.UDP: UDP's crops, as the codec's targets
        self.db = []
        self._check_config(cfg)
        self.reduced_decode = bool(cfg.DATASET.get('REDUCED_DECODE', False))
        self._decode_factors = None   # image -> decode factor, made on first use
        self.keypoints = keypoint_layout(cfg, self.native_keypoints, self.custom_keypoints)
        # the original's attributes
        self.num_joints = self.keypoints.num_joints
        self.flip_pairs = [list(pair) for pair in self.keypoints.flip_pairs]
        # DATASET.HALF_BODY (training only); DATASET.UPPER_BODY_IDS is checked in any case
        half_body = HalfBody(cfg, self.keypoints, self.image_size)
        self.half_body = half_body if is_train and cfg.DATASET.HALF_BODY else None
        self.read_image = ImageCache(self._decode_image)
        # new: a truncated image, or one whose size differs from its annotation's,
        # is skipped with a warning instead of stopping the run
        self.skip_bad_images = cfg.DATASET.SKIP_BAD_IMAGES
        self._warned = set()
        # LOADER.GPU_DECODE: the workers send JPEG bytes, held in RAM here
        self.gpu_decode = bool(cfg.LOADER.GPU_DECODE) and gpu_decode_available()
        if cfg.LOADER.GPU_DECODE and not self.gpu_decode:
            logger.info('LOADER.GPU_DECODE: needs CUDA and torchvision; decoding on the CPU')
        self.read_bytes = ImageCache(self._read_file, max_bytes=256 << 20)

    def _check_config(self, cfg):
        native = self.native_keypoints.num_joints
        if cfg.MODEL.NUM_JOINTS != native and not self.custom_keypoints:
            raise ConfigError('MODEL.NUM_JOINTS is {} but the {} dataset has {} joints'.format(
                cfg.MODEL.NUM_JOINTS, cfg.DATASET.DATASET, native))
        if self.data_format != 'jpg':
            raise ConfigError("DATASET.DATA_FORMAT: only 'jpg' (image files on disk) is "
                              "supported, got {!r}".format(self.data_format))

    def _read_file(self, path):
        if not os.path.isfile(path):
            raise ImageNotFoundError('image not found: {} (expected layout {})'.format(
                path, self.image_layout))
        with open(path, 'rb') as f:
            return np.frombuffer(f.read(), dtype=np.uint8)

    def _decode_image(self, key):
        """Decode `key`: a path, or (path, factor) for DATASET.REDUCED_DECODE, which
        gives ReducedImage(image at 1/factor size, full width)."""
        path, factor = key if isinstance(key, tuple) else (key, 1)
        if not os.path.isfile(path):
            raise ImageNotFoundError('image not found: {} (expected layout {})'.format(
                path, self.image_layout))
        image, width = read_image_file(path, factor)
        if factor == 1:
            return image
        if image.shape[1] == width:   # not a JPEG: decoded whole, shrunk here
            image = cv2.resize(image, None, fx=1 / factor, fy=1 / factor,
                               interpolation=cv2.INTER_AREA)
        return ReducedImage(image, width)

    def _read_checked(self, rec):
        """The image of `rec`, checked against the size its annotation gives
        (rec['image_size'] = (width, height), when known). A bad image is a
        DataError; under DATASET.SKIP_BAD_IMAGES a warning, and None."""
        try:
            image = self.read_image(rec['image'])
            expected = rec.get('image_size')
            if expected is not None and tuple(image.shape[1::-1]) != tuple(expected):
                raise DataError('image {} is {}x{} pixels but its annotation says {}x{} '
                                '(width x height)'.format(rec['image'], image.shape[1],
                                                          image.shape[0], *expected))
        except DataError as error:
            if not self.skip_bad_images or isinstance(error, ImageNotFoundError):
                raise
            if rec['image'] not in self._warned:
                self._warned.add(rec['image'])
                logger.warning('skipped (DATASET.SKIP_BAD_IMAGES): %s', error)
            return None
        return image

    def get_metric(self):
        """The metric of this set (an evaluation.* object with
        evaluate(PosePredictions, output_dir) -> (name_values, perf_indicator))."""
        raise NotImplementedError

    def evaluate(self, cfg, preds, output_dir, all_boxes=None, img_path=None):
        """The original's entry point: preds (N, J, 3) [x, y, maxval], all_boxes
        (N, 6) [cx, cy, sw, sh, area, score], img_path the N image paths; without
        boxes (the original's MPII callers) the predictions are taken to be in
        the dataset's order and its own boxes are used.
        Returns (name_values, perf_indicator)."""
        if all_boxes is None:
            if len(preds) != len(self.db):
                raise ValueError('evaluate: set {!r} holds {} persons but {} predictions were '
                                 'given'.format(self.image_set, len(self.db), len(preds)))
            predictions = PosePredictions(
                keypoints=preds, centers=[r['center'] for r in self.db],
                scales=[r['scale'] for r in self.db],
                box_scores=[r.get('score', 1.0) for r in self.db],
                images=[r['image'] for r in self.db])
        else:
            predictions = PosePredictions.from_columns(preds, all_boxes, img_path)
        return self.get_metric().evaluate(predictions, output_dir)

    def __len__(self):
        return len(self.db)

    def image_groups(self):
        """Indices into db grouped by image, in db order."""
        return group_indices([rec['image'] for rec in self.db])

    def _augmentation(self):
        """Random (scale multiplier, rotation in degrees, flip) of one training sample."""
        sf, rf = self.scale_factor, self.rotation_factor
        scale = np.clip(np.random.randn() * sf + 1, 1 - sf, 1 + sf)
        rotation = np.clip(np.random.randn() * rf, -2 * rf, 2 * rf) \
            if np.random.random() <= 0.6 else 0.0
        flip = self.flip and np.random.random() <= 0.5
        return float(scale), float(rotation), flip

    def __getitem__(self, idx):
        """The public item (input, target, target_weight, meta): the crop normalised
        and its Gaussian targets, per sample with numpy (the scripts instead batch
        `load_sample` items and do that work on the device, see data.batching)."""
        sample = self.load_sample(idx, encoded=False)
        if sample is None:   # a bad image under DATASET.SKIP_BAD_IMAGES
            return None
        crop = sample.pop('crop')
        if self.color_rgb:
            crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
        input = pixels_to_tensor(crop)
        if self.transform is not None:
            input = self.transform(input)
        target, target_weight = self.generate_target(sample['joints'], sample['joints_vis'])
        return input, torch.from_numpy(target), torch.from_numpy(target_weight), sample

    def _decode_factor(self, image):
        """1, 2, 4 or 8: how much smaller the JPEG `image` may be decoded
        (DATASET.REDUCED_DECODE) so that the crops of all its persons still shrink
        it, even at the largest zoom the augmentation can give (the crop's zoom is
        output width / box width). One factor per image: its persons share one
        decode, and the pixels depend on no order or cache."""
        if not self.reduced_decode:
            return 1
        if self._decode_factors is None:
            zoom_in = 1 - self.scale_factor if self.is_train else 1.0
            narrowest = {}
            for rec in self.db:
                width = float(rec['scale'][0])
                if self.half_body is not None:
                    width = min(width, self.half_body.narrowest(rec['joints_3d'],
                                                                rec['joints_3d_vis']))
                narrowest[rec['image']] = min(narrowest.get(rec['image'], width), width)
            self._decode_factors = {
                path: _largest_factor(width * zoom_in * PIXEL_STD / float(self.image_size[0]))
                for path, width in narrowest.items()}
        return self._decode_factors.get(image, 1)

    def load_sample(self, idx, encoded=None):
        """The worker's share of an item: decode, augment and crop. A dict with
        'crop' uint8 (H, W, 3) in the decoder's BGR order, and the meta fields
        'joints' (J, 3) in crop pixels, 'joints_vis', 'center', 'scale',
        'rotation', 'score', 'image', 'filename', 'imgnum'. With `encoded`
        (default: LOADER.GPU_DECODE where it is available) no decode: 'jpeg', the
        file's bytes (uint8), and 'warp', the 2x3 image -> crop matrix, instead of
        'crop' (data.gpu_decode cuts the crop on the GPU)."""
        rec = self.db[idx]
        joints, joints_vis = rec['joints_3d'].copy(), rec['joints_3d_vis'].copy()
        center, scale = rec['center'].copy(), rec['scale'].copy()
        rotation, flip = 0.0, False
        if self.is_train:
            scale_mult, rotation, flip = self._augmentation()
            # half-body: its draws come after those, which it leaves as they were
            half = self.half_body(joints, joints_vis) if self.half_body else None
            if half is not None:
                center, scale = half
            scale = scale * scale_mult
        encoded = self.gpu_decode if encoded is None else encoded
        factor = 1 if encoded else self._decode_factor(rec['image'])
        crop = None
        if encoded:
            jpeg = self.read_bytes(rec['image'])
            image_width = jpeg_width(rec['image'])
            if image_width is None:
                raise DataError('cannot decode image {} (LOADER.GPU_DECODE reads JPEG '
                                'files only)'.format(rec['image']))
        elif factor == 1:
            image = self._read_checked(rec)
            if image is None:   # skipped: the loaders' collate_skipping drops it
                return None
            image_width = image.shape[1]
        else:
            image, image_width = self.read_image((rec['image'], factor))
        if flip:
            joints, joints_vis = fliplr_joints(joints, joints_vis, image_width, self.flip_pairs)
            center[0] = image_width - center[0] - 1
        if encoded:   # the matrix of crop_image, applied on the GPU
            trans = get_affine_transform(center, scale, rotation, self.image_size, udp=self.udp)
            warp = trans @ np.array([[-1.0, 0.0, image_width - 1], [0.0, 1.0, 0.0],
                                     [0.0, 0.0, 1.0]]) if flip else trans
        elif factor == 1:
            crop, trans = crop_image(image, center, scale, rotation, self.image_size, flip,
                                     self.udp)
        else:
            crop, trans = reduced_crop(image, image_width, factor, center, scale, rotation,
                                       self.image_size, flip, self.udp)
        visible = joints_vis[:, :1] > 0.0
        joints[:, :2] = np.where(visible, affine_transform_points(joints[:, :2], trans),
                                 joints[:, :2])
        sample = {'crop': crop} if not encoded else {'jpeg': jpeg, 'warp': warp}
        return {
            **sample,
            'index': idx,
            'image': rec['image'],
            'filename': rec.get('filename', ''),
            'imgnum': rec.get('imgnum', 0),
            'joints': joints,
            'joints_vis': joints_vis,
            'center': center,
            'scale': scale,
            'rotation': rotation,
            'score': float(rec.get('score', 1.0)),
        }

    def generate_target(self, joints, joints_vis):
        """Gaussian heatmaps (J, H, W) float32 and target_weight (J, 1) of one
        person (the original's name for `HeatmapCodec.encode`)."""
        return self.codec.encode(joints, joints_vis)

    def select_data(self, db):
        """DATASET.SELECT_DATA (training): keep boxes whose visible joints are
        centred on the box, with a bar that rises with the number of joints."""
        vis = np.array([rec['joints_3d_vis'][:, 0] > 0 for rec in db])
        joints = np.array([rec['joints_3d'][:, :2] for rec in db])
        centers = np.array([rec['center'] for rec in db])
        areas = np.array([np.prod(rec['scale']) for rec in db]) * PIXEL_STD ** 2
        num_vis = vis.sum(axis=1)
        joints_center = (joints * vis[..., None]).sum(axis=1) / np.maximum(num_vis, 1)[:, None]
        dist2 = ((joints_center - centers) ** 2).sum(axis=1)
        ks = np.exp(-dist2 / (0.2 ** 2 * 2.0 * areas))
        bar = 0.2 / 16 * num_vis + 0.45 - 0.2 / 16
        selected = [rec for rec, ok in zip(db, (num_vis > 0) & (ks > bar)) if ok]
        logger.info('=> select_data kept %d of %d boxes', len(selected), len(db))
        return selected
