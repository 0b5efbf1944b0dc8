"""The keypoints of an experiment: a dataset's own, or the joints a yaml declares for
a COCO-format dataset of its own (the one place these config keys are read)."""
from hsrnet.utils.errors import ConfigError
from hsrnet.utils.keypoints import KeypointLayout


def keypoint_layout(cfg, native, accepts_custom=True):
    """The experiment's keypoints (a utils.keypoints.KeypointLayout): the dataset's own
    `native` ones unless it `accepts_custom` ones (COCO-format files) and the yaml
    declares its own joints
    (MODEL.NUM_JOINTS different from the dataset's count, or any of
    DATASET.FLIP_PAIRS / OKS_SIGMAS / SKELETON)."""
    if not accepts_custom:
        return native
    num_joints = cfg.MODEL.NUM_JOINTS
    pairs, sigmas, skeleton = (cfg.DATASET.FLIP_PAIRS, cfg.DATASET.OKS_SIGMAS,
                               cfg.DATASET.SKELETON)
    if num_joints == native.num_joints and not (pairs or sigmas or skeleton):
        return native
    custom = num_joints != native.num_joints
    need = 'MODEL.NUM_JOINTS is {} but the {} keypoints have {} joints: a dataset with its own ' \
           'joints needs '.format(num_joints, cfg.DATASET.DATASET, native.num_joints)
    if custom and native.sigmas is not None and not sigmas:
        raise ConfigError(need + 'DATASET.OKS_SIGMAS (one per joint)')
    if custom and not pairs and (cfg.DATASET.FLIP or cfg.TEST.FLIP_TEST):
        raise ConfigError(need + 'DATASET.FLIP_PAIRS ([[left, right], ...]) for flip '
                          'augmentation and the flip test (or set DATASET.FLIP and '
                          'TEST.FLIP_TEST false)')
    layout = KeypointLayout(
        names=native.names if not custom else ('',) * num_joints,
        flip_pairs=tuple(tuple(p) for p in pairs) if pairs or custom else native.flip_pairs,
        sigmas=tuple(float(s) for s in sigmas) if sigmas else (
            None if custom else native.sigmas),
        skeleton=tuple(tuple(limb) for limb in skeleton) if skeleton or custom
        else native.skeleton,
        upper_body=() if custom else native.upper_body)
    return layout.check('DATASET.FLIP_PAIRS / OKS_SIGMAS / SKELETON with MODEL.NUM_JOINTS '
                        '{}'.format(num_joints))
