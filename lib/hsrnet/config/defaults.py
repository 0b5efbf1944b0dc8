"""Every key of the experiment config with its default (`_build_defaults`, the only
place defaults live), the value ranges checked for them (`RANGES`), and the keys kept
only so that the original's yaml files load (`UNUSED_KEYS`)."""
from hsrnet.utils.errors import ConfigError


class CfgNode(dict):
    """A dict whose keys can also be read and written as attributes. `freeze()`
    makes it a value: writing to it (or to any group in it) is then a ConfigError
    naming the key; `clone()` gives a writable copy."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def _check_writable(self, key):
        if self.__dict__.get('_frozen'):
            raise ConfigError('{}{}: the config is frozen once checked; set it in the yaml or '
                              'as a KEY VALUE override instead'.format(
                                  self.__dict__.get('_prefix', ''), key))

    def __setitem__(self, key, value):
        self._check_writable(key)
        super().__setitem__(key, value)

    def __delitem__(self, key):
        self._check_writable(key)
        super().__delitem__(key)

    def _refuse(name):   # noqa: N805  (builds the blocked dict methods below)
        def method(self, *args, **kwargs):
            self._check_writable('({})'.format(name))
            return getattr(super(CfgNode, self), name)(*args, **kwargs)
        return method

    update = _refuse('update')
    pop = _refuse('pop')
    popitem = _refuse('popitem')
    clear = _refuse('clear')
    setdefault = _refuse('setdefault')
    del _refuse

    def freeze(self, prefix=''):
        """Make this node and every group in it read-only; returns it."""
        for key, value in self.items():
            if isinstance(value, CfgNode):
                value.freeze('{}{}.'.format(prefix, key))
        self.__dict__.update(_frozen=True, _prefix=prefix)
        return self

    @property
    def frozen(self):
        return bool(self.__dict__.get('_frozen'))

    def clone(self):
        """A writable deep copy."""
        return CfgNode({k: v.clone() if isinstance(v, CfgNode) else _copy(v)
                        for k, v in self.items()})

    def to_dict(self):
        return {k: v.to_dict() if isinstance(v, CfgNode) else _copy(v)
                for k, v in self.items()}


def _copy(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _build_defaults():
    """The original's config tree and defaults, plus a few opt-in additions
    (marked 'new'), all off or neutral by default."""
    C = CfgNode
    return C(
        # new: the experiment's name: the yaml file's stem unless set; names the output
        # folders and is recorded, with the whole config, in every checkpoint
        EXPERIMENT='',
        OUTPUT_DIR='',
        LOG_DIR='',
        DATA_DIR='',
        GPUS='0',
        WORKERS=4,
        PRINT_FREQ=20,
        SEED=-1,              # new: >= 0 seeds python/numpy/torch and data order
        CHANNELS_LAST=False,  # new: channels_last memory format for model and input
        CPU_AUTO=False,       # new: on the CPU, channels_last from the CPU's ISA (precision.py)
        CUDNN=C(BENCHMARK=True, DETERMINISTIC=False, ENABLED=True),
        AMP=C(ENABLED=False,  # new: autocast; bfloat16 is used on the CPU
              DTYPE='float16'),
        MODEL=C(
            NAME='pose_resnet',
            INIT_WEIGHTS=True,
            PRETRAINED='',
            # new: training from scratch, the last BN of every residual branch starts at
            # zero (each block starts as its shortcut; Goyal et al. 2017), which trains
            # much faster from scratch. No effect with ImageNet weights.
            ZERO_INIT_RESIDUAL=False,
            NUM_JOINTS=16,
            # new: UDP (Huang et al. 2020): crops, targets, decoding and the flip test
            # in unbiased coordinates (sizes in pixel intervals); TEST.SHIFT_HEATMAP unused
            UDP=False,
            IMAGE_SIZE=[256, 256],  # [width, height]
            EXTRA=C(
                NUM_LAYERS=50,
                TARGET_TYPE='gaussian',
                HEATMAP_SIZE=[64, 64],  # [width, height]
                SIGMA=2.0,
                FINAL_CONV_KERNEL=1,
                DECONV_WITH_BIAS=False,
                NUM_DECONV_LAYERS=3,
                NUM_DECONV_FILTERS=[256, 256, 256],
                NUM_DECONV_KERNELS=[4, 4, 4],
            ),
        ),
        LOSS=C(USE_TARGET_WEIGHT=True),
        DATASET=C(
            ROOT='',
            DATASET='mpii',
            TRAIN_SET='train',
            TEST_SET='valid',
            DATA_FORMAT='jpg',
            HYBRID_JOINTS_TYPE='',
            SELECT_DATA=False,
            FLIP=True,
            SCALE_FACTOR=0.25,
            ROT_FACTOR=30.0,
            COLOR_RGB=False,  # new: the original feeds BGR pixels
            SKIP_BAD_IMAGES=False,  # new: skip (warn, count) truncated images and images
                                    # whose size differs from the annotation's
            # new: a COCO-format dataset with its own joints (MODEL.NUM_JOINTS):
            FLIP_PAIRS=[],    # [[left, right], ...] 0-based joint ids
            OKS_SIGMAS=[],    # one OKS constant per joint (COCOeval, OKS-NMS)
            SKELETON=[],      # [[a, b], ...] limbs for drawing
            # new, speed (off: the original's behaviour). GROUP_BY_IMAGE: training order
            # shuffles images, the persons of one image follow each other (one decode);
            # REDUCED_DECODE: JPEGs decoded at 1/2, 1/4, 1/8 size when the crop shrinks
            # the image that much (changes pixels slightly).
            GROUP_BY_IMAGE=False,
            REDUCED_DECODE=False,
            # new: half-body augmentation (HRNet's defaults): in training, with
            # probability PROB_HALF_BODY a person with more than NUM_JOINTS_HALF_BODY
            # visible joints is cropped around its upper or lower body's visible
            # joints; UPPER_BODY_IDS: that body's joints, for a dataset with its own
            # (COCO's, MPII's and CrowdPose's are built in)
            HALF_BODY=False,
            PROB_HALF_BODY=0.3,
            NUM_JOINTS_HALF_BODY=8,
            UPPER_BODY_IDS=[],
        ),
        # new: how batches reach the device. PIN_MEMORY: pinned batches when on
        # CUDA (as before); PREFETCH_FACTOR 0 = PyTorch's default; GPU_DECODE: JPEG
        # decode and crops on the GPU (needs CUDA and torchvision; data/gpu_decode.py).
        LOADER=C(PIN_MEMORY=True, PERSISTENT_WORKERS=False, PREFETCH_FACTOR=0,
                 GPU_DECODE=False),
        # new: GPU speed settings (off: as the original). FUSED_OPTIMIZER: fused Adam
        # (also on the CPU); COMPILE: torch.compile the model; CUDA_GRAPHS: the
        # training step captured as a CUDA graph and replayed (engine/cuda_graph.py),
        # the compiled model's kernels too when both are on.
        # CPU_MALLOC_CACHE (on: results unchanged): on the CPU, freed memory is kept
        # for the next batch instead of being faulted in again (utils/cpu_memory.py).
        SPEED=C(FUSED_OPTIMIZER=False, COMPILE=False, CUDA_GRAPHS=False, CPU_MALLOC_CACHE=True,
                CPU_BLOCKED_LAYOUT=True),
        TRAIN=C(
            LR_FACTOR=0.1,
            LR_STEP=[90, 110],
            LR=0.001,
            OPTIMIZER='adam',
            MOMENTUM=0.9,
            WD=0.0001,
            NESTEROV=False,
            GAMMA1=0.99,
            GAMMA2=0.0,
            BEGIN_EPOCH=0,
            END_EPOCH=140,
            RESUME=False,
            CHECKPOINT='',
            SAVE_EVERY=0,     # new: also save checkpoint.pth.tar every N iterations (0: off)
            VALIDATE_EVERY=1,  # new: validate after every Nth epoch and the last (1: each,
                               # as the original)
            BATCH_SIZE=32,
            SHUFFLE=True,
        ),
        TEST=C(
            BATCH_SIZE=32,
            FLIP_TEST=False,
            POST_PROCESS=True,
            DARK=False,       # new: DARK decoding (replaces POST_PROCESS's quarter offset)
            SHIFT_HEATMAP=True,
            USE_GT_BBOX=False,
            OKS_THRE=0.5,
            IN_VIS_THRE=0.0,
            COCO_BBOX_FILE='',
            BBOX_THRE=1.0,
            MODEL_FILE='',
            IMAGE_THRE=0.0,
            NMS_THRE=1.0,
        ),
        DEBUG=C(
            DEBUG=False,
            SAVE_BATCH_IMAGES_GT=False,
            SAVE_BATCH_IMAGES_PRED=False,
            SAVE_HEATMAPS_GT=False,
            SAVE_HEATMAPS_PRED=False,
        ),
    )


def get_default_config():
    """A fresh copy of the defaults (tests and tools that must not touch `config`)."""
    return _build_defaults()


# The numeric keys that have a range: (key, lowest, highest, whether the lowest is
# allowed); None: no bound. check_config refuses a value outside with one line.
RANGES = (
    ('WORKERS', 0, None, True),
    ('PRINT_FREQ', 1, None, True),
    ('MODEL.NUM_JOINTS', 1, None, True),
    ('MODEL.EXTRA.SIGMA', 0, None, False),
    ('DATASET.SCALE_FACTOR', 0, None, True),
    ('DATASET.ROT_FACTOR', 0, None, True),
    ('DATASET.PROB_HALF_BODY', 0, 1, True),
    ('DATASET.NUM_JOINTS_HALF_BODY', 0, None, True),
    ('LOADER.PREFETCH_FACTOR', 0, None, True),
    ('TRAIN.LR', 0, None, False),
    ('TRAIN.LR_FACTOR', 0, None, False),
    ('TRAIN.MOMENTUM', 0, 1, True),
    ('TRAIN.WD', 0, None, True),
    ('TRAIN.BEGIN_EPOCH', 0, None, True),
    ('TRAIN.END_EPOCH', 1, None, True),
    ('TRAIN.BATCH_SIZE', 1, None, True),
    ('TRAIN.SAVE_EVERY', 0, None, True),
    ('TRAIN.VALIDATE_EVERY', 1, None, True),
    ('TEST.BATCH_SIZE', 1, None, True),
    ('TEST.OKS_THRE', 0, 1, True),
    ('TEST.IN_VIS_THRE', 0, 1, True),
    ('TEST.IMAGE_THRE', 0, 1, True),
)

# Keys the original's yaml files set and nothing here reads (the original did not
# either); a value other than the default gets one warning naming the key.
UNUSED_KEYS = ('TRAIN.GAMMA1', 'TRAIN.GAMMA2', 'TEST.BBOX_THRE', 'TEST.NMS_THRE')


def lookup(cfg, key):
    """cfg['A']['B'] for 'A.B'."""
    node = cfg
    for part in key.split('.'):
        node = node[part]
    return node
