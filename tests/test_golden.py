"""Golden outputs: the numbers the code gives today, pinned so that a restructure
(modules moved into the `hsrnet` package, the old names kept as shims) can be
checked to change none of them.

Everything runs on data generated here with fixed seeds (nothing downloaded):

- validation (test_valid_*): the validation pipeline of valid.py, run in-process
  as valid.py wires it (the seeded random network of tests/tiny_model.py, dataset,
  DeviceBatcher, Precision, core.function.validate_model), flip test on
  (TEST.SHIFT_HEATMAP, TEST.POST_PROCESS as the demo yaml), once with the
  detector boxes and once with the ground-truth boxes of a generated sample.
  Pinned: the results json (image ids, keypoints x, y, maxval per joint, person
  scores, in the order written), the COCO metrics (AP ... AR (L)) and the loss and
  heatmap accuracy of metrics_<set>.json. A random network's AP is 0, so
  test_oracle_ap_* pins non-zero COCO metrics too: heatmaps drawn at jittered
  ground-truth joints, decoded with each decoding option and scored by the
  dataset's metric (rescoring with TEST.IN_VIS_THRE, OKS-NMS with TEST.OKS_THRE,
  COCOeval, a near-duplicate pose for OKS-NMS to suppress).
- the generated sample (test_generated_sample_*): the sha256 of its files.
- person boxes (test_person_boxes_*): the centers, scales and scores of the boxes
  valid.py crops: ground truth, detector boxes at TEST.IMAGE_THRE 0 and 0.5.
- training (test_training_*): the losses of the first training steps (2 of epoch 0,
  1 of epoch 1, batches of 2 crops), float32, as train.py takes them: the tiny
  config with train.py's initial weights for SEED (seed_everything, then
  models.build_model(cfg, is_train=True); see compute_training for why not
  tiny_model's), runner.setup.get_optimizer (Adam as the yaml says, fused as its
  SPEED.FUSED_OPTIMIZER says), core.function's training step and train_one_epoch,
  EpochSeededLoader with DeviceBatcher (augmentation seeded from SEED); also the
  initial weights' sum of |w|, each batch's sample indices and the sums of its
  input, target and target_weight, so that a failure says whether the
  initialisation, the data or the step moved.
- decoding (test_decode_*): head.codec.HeatmapCodec / core.inference on seeded
  synthetic heatmaps (Gaussian peaks at sub-pixel positions, varied widths and
  heights, noise, peaks on and near the border, a joint whose maximum is not
  positive) with image-sized centers and scales: every decoding option of the
  config (argmax alone, TEST.POST_PROCESS's quarter offset, TEST.DARK, both) times
  the flip test's merge (none, flip-back, flip-back with TEST.SHIFT_HEATMAP), by the
  codec and by core.inference.get_final_preds(cfg, ...) from the config keys.

Each pinned quantity also has a check that a perturbed input (another weight seed,
another data seed, another box set, heatmaps moved by one pixel) does NOT match
it: the comparisons can fail. The network runs on one torch thread here
(one_torch_thread).

Tolerances (CI's x86 CPUs may have AVX2 where this one had AVX-512, and another
thread count: oneDNN's and numpy's SIMD kernels round differently in the last
bits): network outputs keypoints atol 1e-3 px (image coordinates of a few hundred
px), maxvals, person scores and valid.py's loss rtol 1e-4, training losses rtol
1e-5, COCO metrics abs 1e-6; pure numpy decoding rtol 1e-6. See TOL below.
Measured when the files were made (AMD EPYC with AVX-512), against them: on 2
threads, under AVX2 (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
NPY_DISABLE_CPU_FEATURES=X86_V4 OPENBLAS_CORETYPE=Haswell) and under
ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 (contiguous layout):
keypoint x, y and COCO metrics equal, maxvals within 5.5e-6 relative (2.4e-6 with
AVX2 or AVX-512), person scores 3.5e-6, valid.py's loss 6.6e-6, training losses
1.4e-7, decoding equal. The network's argmax is at least 8e-4 (relative) away from
a tie and its quarter-offset signs 1e-3 (make_golden.py prints these margins).
The generated sample itself is the same wherever OpenCV has AVX2; without it
(OPENCV_CPU_DISABLE=AVX512-SKX,AVX2) a few pixels of some images differ, which
test_generated_sample_matches_golden reports, and maxvals of one person then move
by 1.2e-4: CPUs without AVX2 are outside what these files pin.

Regenerating the stored files (tests/golden/*.json), only for a change meant to
move these numbers, saying why in its commit:

    .venv/bin/python tests/golden/make_golden.py

It prints which pinned values moved beyond the tolerances and rewrites only those
files (`--force` rewrites all, `--check` only compares, `--only valid train
oracle decode` picks files); review the json diff before committing it.
"""
import contextlib
import json
import os

import numpy as np
import pytest
import torch

from tiny_model import tiny_config, tiny_model

GOLDEN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'golden')
FILES = {'valid': 'valid.json', 'train': 'train.json', 'decode': 'decode.json',
         'oracle': 'oracle_ap.json'}

# The generated sample (samples.synthetic.generate, as tools/make_sample_data.py).
SAMPLE = {'seed': 1, 'train_images': 2, 'val_images': 3}
MODEL_SEED = 0        # tests/tiny_model.py's seeded random weights
DATA_SEED = 3         # SEED: training order and augmentation
TRAIN_STEPS = ((0, 2), (1, 1))    # (epoch, steps): 3 steps of 2 crops, across an epoch
TRAIN_BATCH = 2
DECODE_SEED = 20240601
ORACLE_SEED = 7

TOL = {
    # went through the network
    'keypoint_xy_atol': 1e-3,     # px, image coordinates
    'maxval_rtol': 1e-4, 'maxval_atol': 1e-6,
    'score_rtol': 1e-4, 'score_atol': 1e-7,
    'metric_atol': 1e-6,          # COCO AP/AR, heatmap accuracy
    'loss_rtol': 1e-5,            # training losses
    'valid_loss_rtol': 1e-4,      # valid.py's loss: a mean of the heatmaps' errors, whose
                                  # float32 noise is the maxvals' (5e-6 seen without AVX2)
    'sum_rtol': 1e-6,             # batch sums (float32 data, float64 sums)
    # pure numpy decoding
    'decode_rtol': 1e-6, 'decode_atol': 1e-6,
}

# Every TEST.* key of the config, and where it is pinned (test_config_keys_are_covered
# fails on a new key: pin it, or say here why it needs no golden).
TEST_KEYS = {
    'FLIP_TEST': 'valid (on), decode (flip merge)',
    'SHIFT_HEATMAP': 'valid (on), decode (flip merge with and without the shift)',
    'POST_PROCESS': 'valid (on), decode and oracle AP (on/off)',
    'DARK': 'decode and oracle AP (on/off)',
    'USE_GT_BBOX': 'valid and person boxes (detector boxes and ground-truth boxes)',
    'COCO_BBOX_FILE': 'valid and person boxes (the sample\'s detector boxes)',
    'IMAGE_THRE': 'person boxes (0 and 0.5), valid (the demo yaml: 0)',
    'IN_VIS_THRE': 'oracle AP (rescoring with some joints below it: the demo yaml\'s 0.2),'
                   ' valid (the same, no maxval of the random network is below it)',
    'OKS_THRE': 'oracle AP (0.9, the demo yaml\'s: a near-duplicate pose suppressed, a '
                'farther one kept), valid (no pose suppressed)',
    'BATCH_SIZE': 'not a result (results do not depend on it)',
    'MODEL_FILE': 'not a result (the weights are given in-process)',
    'BBOX_THRE': 'unused by the code (the original\'s key)',
    'NMS_THRE': 'unused by the code (the original\'s key)',
}

BOX_SETS = {'ground_truth': ['TEST.USE_GT_BBOX', 'true'],
             'detector': ['TEST.USE_GT_BBOX', 'false', 'TEST.IMAGE_THRE', '0.0'],
             'detector_image_thre_0.5': ['TEST.USE_GT_BBOX', 'false', 'TEST.IMAGE_THRE', '0.5']}
DECODERS = {'argmax': {'POST_PROCESS': False, 'DARK': False},
            'quarter': {'POST_PROCESS': True, 'DARK': False},
            'dark': {'POST_PROCESS': False, 'DARK': True},
            'dark+quarter': {'POST_PROCESS': True, 'DARK': True}}
FLIP_MERGES = ('none', 'flip', 'flip+shift')
COCO_FLIP_PAIRS = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]]


# -- stored files -----------------------------------------------------------------------

def golden_path(name):
    return os.path.join(GOLDEN_DIR, FILES[name])


def load_golden(name):
    path = golden_path(name)
    if not os.path.isfile(path):
        pytest.fail('golden file {} missing: run tests/golden/make_golden.py'.format(path))
    with open(path) as f:
        return json.load(f)


def as_float32_if_exact(values):
    """`values` as a float32 array where that loses nothing (network outputs and
    decoded keypoints are float32 values), else float64."""
    values = np.asarray(values, dtype=np.float64)
    narrow = values.astype(np.float32)
    return narrow if np.array_equal(narrow, values) else values


def to_jsonable(value):
    """numpy arrays and scalars -> lists and floats for the json files: float32
    values as their shortest float32 repr (exact once read back as float32),
    anything else as float64's repr (exact)."""
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(list(value)) if value.ndim else to_jsonable(value[()])
    if isinstance(value, np.float32):
        return float(str(value))
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    return value


# -- comparisons --------------------------------------------------------------------------

def mismatches(actual, golden, checks):
    """The failures of `checks` = [(key, rtol, atol, column slice or None)] between
    dicts of arrays: a list of readable lines, empty when everything matches."""
    problems = []
    for key, rtol, atol, columns in checks:
        a = np.asarray(actual[key])
        g = np.asarray(golden[key], dtype=np.float64)
        if a.dtype == np.float32:   # stored as float32's shortest repr: exact again
            g = g.astype(np.float32)
        a, g = a.astype(np.float64), g.astype(np.float64)
        if columns is not None:
            a, g = a[..., columns], g[..., columns]
        if a.shape != g.shape:
            problems.append('{}: shape {} != golden {}'.format(key, a.shape, g.shape))
            continue
        bad = ~np.isclose(a, g, rtol=rtol, atol=atol)
        if bad.any():
            where = np.argwhere(bad)[:3].tolist()
            problems.append('{}: {} of {} values differ (rtol {}, atol {}); first at {}: {} '
                            'vs golden {}'.format(key, int(bad.sum()), bad.size, rtol, atol,
                                                  where, a[bad][:3].tolist(),
                                                  g[bad][:3].tolist()))
    return problems


def assert_matches(actual, golden, checks, what):
    problems = mismatches(actual, golden, checks)
    assert not problems, '{} moved from the golden (tests/golden; see the module docstring)' \
        ':\n'.format(what) + '\n'.join(problems)


def assert_differs(actual, golden, checks, what):
    assert mismatches(actual, golden, checks), \
        '{}: a perturbed input matched the golden: the comparison has no teeth'.format(what)


VALID_CHECKS = [
    ('image_ids', 0, 0, None),
    ('keypoints', 0, TOL['keypoint_xy_atol'], slice(0, 2)),
    ('keypoints', TOL['maxval_rtol'], TOL['maxval_atol'], slice(2, 3)),
    ('scores', TOL['score_rtol'], TOL['score_atol'], None),
    ('metrics', 0, TOL['metric_atol'], None),
    ('loss', TOL['valid_loss_rtol'], 0, None),
    ('accuracy', 0, TOL['metric_atol'], None),
]
BOX_CHECKS = [('centers', 1e-9, 1e-9, None), ('scales', 1e-9, 1e-9, None),
              ('scores', 0, 0, None)]
TRAIN_CHECKS = [
    ('init_abs_sum', TOL['sum_rtol'], 0, None),
    ('indices', 0, 0, None),
    ('input_sum', TOL['sum_rtol'], 1e-6, None),
    ('target_sum', TOL['sum_rtol'], 1e-6, None),
    ('target_weight_sum', 0, 0, None),
    ('loss', TOL['loss_rtol'], 0, None),
    ('epoch_loss', TOL['loss_rtol'], 0, None),
]
DECODE_CHECKS = [('preds', TOL['decode_rtol'], TOL['decode_atol'], None),
                 ('maxvals', TOL['decode_rtol'], TOL['decode_atol'], None)]
ORACLE_CHECKS = [('keypoints', TOL['decode_rtol'], TOL['decode_atol'], None),
                 ('scores', TOL['decode_rtol'], 1e-9, None),
                 ('metrics', 0, TOL['metric_atol'], None)]


# -- the computations (tests/golden/make_golden.py stores their results) ------------------

@contextlib.contextmanager
def one_torch_thread():
    """The network runs on one thread here: the stored numbers then do not depend
    on the machine's core count (only on its SIMD kernels), and a CI machine that
    is busy with other jobs does not stall torch's thread pool (on a shared 2-core
    machine: 5 s for this file instead of 30)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def generate_sample(root):
    from hsrnet.samples.synthetic import generate
    generate(str(root), **SAMPLE)
    return str(root)


def sample_hashes(root):
    """sha256 of every file of the generated sample, by path under it."""
    import hashlib
    hashes = {}
    for folder, _, names in os.walk(str(root)):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, 'rb') as f:
                hashes[os.path.relpath(path, str(root)).replace(os.sep, '/')] = \
                    hashlib.sha256(f.read()).hexdigest()
    return dict(sorted(hashes.items()))


def sample_opts(root, out_dir):
    root = str(root)
    return ['DATASET.ROOT', root,
            'TEST.COCO_BBOX_FILE', os.path.join(root, 'person_detection_results',
                                                'COCO_val2017_detections_AP_H_56_person.json'),
            'OUTPUT_DIR', str(out_dir), 'LOG_DIR', os.path.join(str(out_dir), 'log'),
            'WORKERS', '0']


def valid_opts(root, out_dir, use_gt_bbox):
    """The tiny config (tests/tiny_model.py: 64x48 input, 16x12 heatmaps, DARK off)
    with valid.py's --flip-test [--use-detect-bbox]."""
    return sample_opts(root, out_dir) + ['TEST.FLIP_TEST', 'true', 'TEST.USE_GT_BBOX',
                                         'true' if use_gt_bbox else 'false',
                                         'TEST.BATCH_SIZE', '32']


def compute_valid(root, out_dir, use_gt_bbox, model_seed=MODEL_SEED):
    """valid.py's evaluation (its Validator's wiring, in this process) of the tiny
    seeded network: {'image_ids', 'keypoints' (P, J, 3), 'scores' (P,), 'metrics'
    (the ten COCO numbers), 'metric_names', 'loss', 'accuracy'}."""
    from hsrnet import data as dataset
    from hsrnet.engine.loops import validate_model
    from hsrnet.head.loss import JointsMSELoss
    from hsrnet.data.batching import DeviceBatcher
    from hsrnet.utils.distributed import DistContext
    from hsrnet.data.loaders import build_val_loader, loader_options
    from hsrnet.engine.precision import Precision

    cfg = tiny_config(*valid_opts(root, out_dir, use_gt_bbox))
    _, model = tiny_model(model_seed)
    device = torch.device('cpu')
    precision = Precision(cfg, device)
    model = precision.prepare_model(model).to(device)
    criterion = JointsMSELoss(cfg.LOSS.USE_TARGET_WEIGHT).to(device)
    val_dataset = dataset.build_dataset(cfg, cfg.DATASET.TEST_SET, False)
    val_loader = build_val_loader(
        val_dataset, cfg.TEST.BATCH_SIZE, cfg.WORKERS, DistContext(),
        batcher=DeviceBatcher(cfg, device, precision.memory_format),
        **loader_options(cfg, device))
    with one_torch_thread():
        validate_model(cfg, val_loader, val_dataset, model, criterion, str(out_dir),
                       precision=precision)
    results_dir = os.path.join(str(out_dir), 'results')
    with open(os.path.join(results_dir, 'keypoints_val2017_results.json')) as f:
        results = json.load(f)
    with open(os.path.join(results_dir, 'metrics_val2017.json')) as f:
        metrics = json.load(f)
    joints = cfg.MODEL.NUM_JOINTS
    return {
        'image_ids': [r['image_id'] for r in results],
        'keypoints': as_float32_if_exact([r['keypoints'] for r in results]).reshape(
            -1, joints, 3),
        'scores': np.array([r['score'] for r in results]),
        'metric_names': list(metrics['metrics']),
        'metrics': [metrics['metrics'][k] for k in metrics['metrics']],
        'loss': metrics['loss'],
        'accuracy': metrics['accuracy'],
    }


def compute_boxes(root, out_dir):
    """The person boxes valid.py crops (no network): the val dataset's records with
    the ground-truth boxes, and with the detector boxes at TEST.IMAGE_THRE 0 (the
    demo yaml's) and 0.5. {'<boxes>': {'images' (file names), 'centers', 'scales',
    'scores'}}."""
    from hsrnet import data as dataset
    out = {}
    for name, opts in BOX_SETS.items():
        cfg = tiny_config(*sample_opts(root, out_dir) + opts)
        db = dataset.build_dataset(cfg, cfg.DATASET.TEST_SET, False).db
        out[name] = {'images': [os.path.basename(rec['image']) for rec in db],
                     'centers': np.array([rec['center'] for rec in db], dtype=np.float64),
                     'scales': np.array([rec['scale'] for rec in db], dtype=np.float64),
                     'scores': np.array([rec.get('score', 1.0) for rec in db], np.float64)}
    return out


def compute_training(root, out_dir, data_seed=DATA_SEED, steps=TRAIN_STEPS):
    """The first training steps as train.py takes them, in this process: the tiny
    config, train.py's initial weights (seed_everything(SEED), then
    models.build_model(cfg, is_train=True)), its optimizer, step and loader, and
    core.function.train_one_epoch. Per step: 'loss', the batch's sample 'indices'
    and the sums of 'input', 'target', 'target_weight'; per epoch 'epoch_loss'
    (train_one_epoch's average). The process's global random generators are put
    back as they were.

    Not tests/tiny_model.py's weights: made for clear heatmaps in eval mode, they
    are so badly conditioned in train mode (batch statistics) that the gradients of
    1 and 2 threads differ by up to 40%, and Adam's first step (about lr times the
    gradient's sign) turns that into 3e-3 in the second loss; from the usual
    initialisation they agree to 1e-5."""
    import random

    from hsrnet import models
    from hsrnet.engine.precision import Precision
    from hsrnet.utils.seeding import seed_everything

    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        cfg = tiny_config(*sample_opts(root, out_dir) + ['SEED', str(data_seed),
                                                         'TRAIN.BATCH_SIZE', str(TRAIN_BATCH)])
        device = torch.device('cpu')
        precision = Precision(cfg, device)
        with one_torch_thread():
            seed_everything(cfg.SEED)   # as train.py: the initial weights of SEED
            model = models.build_model(cfg, is_train=True)
            init_abs_sum = sum(float(p.detach().double().abs().sum())
                               for p in model.parameters())
            model = precision.prepare_model(model).to(device)
            record = _train_steps(cfg, model, device, precision, out_dir, steps)
        record['init_abs_sum'] = init_abs_sum
        return record
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def _train_steps(cfg, model, device, precision, out_dir, steps):
    from hsrnet import data as dataset
    from hsrnet.engine.loops import make_training_step, train_one_epoch
    from hsrnet.head.loss import JointsMSELoss
    from hsrnet.data.batching import DeviceBatcher
    from hsrnet.engine.optim import get_optimizer
    from hsrnet.utils.distributed import DistContext
    from hsrnet.data.loaders import EpochSeededLoader, loader_options

    criterion = JointsMSELoss(cfg.LOSS.USE_TARGET_WEIGHT).to(device)
    optimizer = get_optimizer(cfg, model)
    train_step = make_training_step(cfg, model, criterion, optimizer, precision)
    train_dataset = dataset.build_dataset(cfg, cfg.DATASET.TRAIN_SET, True)
    loader = EpochSeededLoader(
        train_dataset, cfg.TRAIN.BATCH_SIZE, cfg.WORKERS, cfg.TRAIN.SHUFFLE, cfg.SEED,
        DistContext(), batcher=DeviceBatcher(cfg, device, precision.memory_format),
        group_by_image=cfg.DATASET.GROUP_BY_IMAGE, **loader_options(cfg, device))
    record = {'loss': [], 'input_sum': [], 'target_sum': [], 'target_weight_sum': [],
              'indices': [], 'epoch_loss': []}

    def step(input, target, target_weight):
        record['input_sum'].append(float(input.double().sum()))
        record['target_sum'].append(float(target.double().sum()))
        record['target_weight_sum'].append(float(target_weight.double().sum()))
        output, loss = train_step(input, target, target_weight)
        record['loss'].append(loss.detach().numpy().astype(np.float32))
        return output, loss

    for epoch, count in steps:
        loader.set_epoch(epoch)
        order = [index for index, _ in loader.sampler]
        size = cfg.TRAIN.BATCH_SIZE
        record['indices'].extend(order[i * size:(i + 1) * size] for i in range(count))
        loss, _ = train_one_epoch(cfg, loader, model, criterion, optimizer, epoch, str(out_dir),
                                  precision=precision, after_step=lambda done: done >= count,
                                  step=step)
        record['epoch_loss'].append(float(loss))
    return record


def _gaussians(centres, sigmas, amplitudes, size):
    """float64 maps (..., H, W) of Gaussians at centres (..., 2) (x, y)."""
    width, height = size
    xs = np.arange(width, dtype=np.float64)
    ys = np.arange(height, dtype=np.float64)
    dx = xs - centres[..., 0:1]                      # (..., W)
    dy = ys - centres[..., 1:2]                      # (..., H)
    s2 = 2.0 * sigmas[..., None, None] ** 2
    return amplitudes[..., None, None] * np.exp(-(dy[..., :, None] ** 2 + dx[..., None, :] ** 2)
                                                / s2)


def synthetic_heatmaps(seed, persons=4, joints=17, size=(48, 64)):
    """Seeded float32 heatmaps (plain, of the mirrored crop) of `persons` x `joints`
    at heatmap `size` (w, h), and image-sized centers (N, 2) and scales (N, 2).

    Peaks at sub-pixel positions with varied widths and heights and noise, made in
    float64 and rounded once to float32 (so that SIMD differences of exp do not
    reach the stored maps); person 0 holds the edge cases: peaks on and next to the
    border, an all-zero map and one whose maximum is negative."""
    rng = np.random.default_rng(seed)
    width, height = size
    centres = np.stack([rng.uniform(0.5, width - 1.5, (persons, joints)),
                        rng.uniform(0.5, height - 1.5, (persons, joints))], axis=-1)
    centres[0, 0:6] = [[0.2, 20.3], [width - 1.1, 30.6], [17.4, 0.7], [25.6, height - 1.4],
                       [1.6, 2.45], [width - 2.4, height - 2.6]]
    sigmas = rng.uniform(1.6, 2.6, (persons, joints))
    amplitudes = rng.uniform(0.3, 1.0, (persons, joints))
    plain = _gaussians(centres, sigmas, amplitudes, size)
    plain += rng.normal(0, 0.01, plain.shape)
    # the mirrored crop's output: the mirrored person (left and right swapped), its
    # peaks one pixel off as the network's (TEST.SHIFT_HEATMAP), own jitter and noise
    mirrored_centres = centres.copy()
    mirrored_centres[..., 0] = width - 1 - centres[..., 0] - 1.0
    mirrored_centres += rng.normal(0, 0.3, mirrored_centres.shape)
    swap = np.arange(joints)
    for a, b in COCO_FLIP_PAIRS:
        swap[a], swap[b] = b, a
    mirrored = _gaussians(mirrored_centres[:, swap], sigmas[:, swap] * rng.uniform(
        0.9, 1.1, (persons, joints)), amplitudes[:, swap] * rng.uniform(
        0.8, 1.2, (persons, joints)), size)
    mirrored += rng.normal(0, 0.01, mirrored.shape)
    for maps in (plain, mirrored):
        maps[0, 6] = 0.0                                          # all zero
        maps[0, 7] = -np.abs(rng.normal(0, 0.05, (height, width))) - 0.01   # negative
    centers = np.stack([rng.uniform(80, 600, persons), rng.uniform(60, 450, persons)], -1)
    box_w = rng.uniform(0.4, 3.0, persons)                       # scale: box size / 200
    scales = np.stack([box_w, box_w * height / width], axis=-1)
    return plain.astype(np.float32), mirrored.astype(np.float32), centers, scales


def flip_merged(plain, mirrored, merge):
    """The flip test's merge of the plain and the mirrored crop's heatmaps."""
    from hsrnet.head.codec import HeatmapCodec
    if merge == 'none':
        return plain
    back = HeatmapCodec.flip_back(mirrored.copy(), COCO_FLIP_PAIRS, shift=merge == 'flip+shift')
    return (plain + back) * np.float32(0.5)


def decode_config(decoder, size=(48, 64), image_size=(192, 256)):
    from hsrnet.config import get_default_config
    cfg = get_default_config()
    cfg.MODEL.IMAGE_SIZE = list(image_size)
    cfg.MODEL.EXTRA.HEATMAP_SIZE = list(size)
    cfg.MODEL.EXTRA.SIGMA = 2
    cfg.TEST.POST_PROCESS = DECODERS[decoder]['POST_PROCESS']
    cfg.TEST.DARK = DECODERS[decoder]['DARK']
    return cfg


def compute_decode(seed=DECODE_SEED, shift_pixels=0):
    """{'<decoder>/<merge>': {'preds' (N, J, 2), 'maxvals' (N, J, 1)}} of the codec
    (HeatmapCodec.from_config), and the same by core.inference.get_final_preds,
    which must agree bit for bit. `shift_pixels` moves the heatmaps right (teeth)."""
    from hsrnet.head.codec import HeatmapCodec
    from hsrnet.head.inference import get_final_preds
    plain, mirrored, centers, scales = synthetic_heatmaps(seed)
    if shift_pixels:
        plain = np.roll(plain, shift_pixels, axis=3)
        mirrored = np.roll(mirrored, shift_pixels, axis=3)
    out = {}
    for merge in FLIP_MERGES:
        heatmaps = flip_merged(plain, mirrored, merge)
        for decoder in DECODERS:
            cfg = decode_config(decoder)
            preds, maxvals = HeatmapCodec.from_config(cfg).decode(heatmaps, centers, scales)
            preds_cfg, maxvals_cfg = get_final_preds(cfg, heatmaps, centers, scales)
            np.testing.assert_array_equal(preds_cfg, preds)
            np.testing.assert_array_equal(maxvals_cfg, maxvals)
            out['{}/{}'.format(decoder, merge)] = {'preds': preds, 'maxvals': maxvals}
    return out


def compute_oracle(root, out_dir, seed=ORACLE_SEED, shift_pixels=0):
    """COCO metrics of 'oracle' heatmaps of the ground-truth boxes of the val set:
    sigma-2 Gaussians of heights 0.1 to 1 at the ground-truth joints (in heatmap
    coordinates of the tiny config's 16x12 heatmaps) jittered by 0.35 px, weak peaks
    anywhere for unlabelled joints, noise; plus two second poses of the first
    persons' boxes (box score 0.9), one 0.05 px and one 1.5 px away from the first,
    for OKS-NMS to suppress and to keep. Decoded with each decoder
    (core.inference.get_final_preds) and scored by the dataset's metric with the
    demo yaml's IN_VIS_THRE and OKS_THRE.
    {'<decoder>': {'keypoints', 'scores', 'metrics', 'metric_names', 'kept'}}."""
    from hsrnet import data as dataset
    from hsrnet.head.inference import get_final_preds
    from hsrnet.evaluation import PosePredictions
    from hsrnet.utils.transforms import affine_transform_points, get_affine_transform

    cfg = tiny_config(*sample_opts(root, out_dir) + ['TEST.USE_GT_BBOX', 'true'])
    val_dataset = dataset.build_dataset(cfg, cfg.DATASET.TEST_SET, False)
    size = tuple(int(v) for v in cfg.MODEL.EXTRA.HEATMAP_SIZE)
    rng = np.random.default_rng(seed)
    db = list(val_dataset.db)
    centers = np.array([rec['center'] for rec in db], dtype=np.float64)
    scales = np.array([rec['scale'] for rec in db], dtype=np.float64)
    joints = np.array([rec['joints_3d'][:, :2] for rec in db], dtype=np.float64)
    visible = np.array([rec['joints_3d_vis'][:, 0] for rec in db]) > 0
    hm_joints = np.stack([affine_transform_points(j, get_affine_transform(c, s, 0, size))
                          for j, c, s in zip(joints, centers, scales)])
    hm_joints += rng.normal(0, 0.35, hm_joints.shape)
    anywhere = np.stack([rng.uniform(0, size[0] - 1, visible.shape),
                         rng.uniform(0, size[1] - 1, visible.shape)], axis=-1)
    hm_joints = np.where(visible[..., None], hm_joints, anywhere)
    # peak heights from 0.1: some joints fall under TEST.IN_VIS_THRE (0.2) in rescoring
    amplitudes = np.where(visible, rng.uniform(0.1, 1.0, visible.shape),
                          rng.uniform(0.05, 0.3, visible.shape))
    # the near-duplicates (OKS-NMS): persons 0 and 1 again, moved by 0.05 and 1.5 px
    twins = [0, 1]
    moved = hm_joints[twins] + rng.normal(0, 1.0, hm_joints[twins].shape) * np.array(
        [0.05, 1.5])[:, None, None]
    hm_joints = np.concatenate([hm_joints, moved])
    amplitudes = np.concatenate([amplitudes, amplitudes[twins] * 0.95])
    centers, scales = np.concatenate([centers, centers[twins]]), np.concatenate(
        [scales, scales[twins]])
    box_scores = [rec.get('score', 1.0) for rec in db] + [0.9] * len(twins)
    images = [rec['image'] for rec in db] + [db[i]['image'] for i in twins]
    heatmaps = _gaussians(hm_joints, np.full(amplitudes.shape, 2.0), amplitudes, size)
    heatmaps = (heatmaps + rng.normal(0, 0.01, heatmaps.shape)).astype(np.float32)
    if shift_pixels:
        heatmaps = np.roll(heatmaps, shift_pixels, axis=3)
    metric = val_dataset.get_metric()
    out = {}
    for decoder in DECODERS:
        cfg.TEST.POST_PROCESS = DECODERS[decoder]['POST_PROCESS']
        cfg.TEST.DARK = DECODERS[decoder]['DARK']
        preds, maxvals = get_final_preds(cfg, heatmaps, centers, scales)
        predictions = PosePredictions(
            keypoints=np.concatenate([preds, maxvals], axis=2), centers=centers, scales=scales,
            box_scores=box_scores, images=images)
        name_values, _ = metric.evaluate(predictions, os.path.join(str(out_dir), decoder))
        with open(metric.results_file(os.path.join(str(out_dir), decoder))) as f:
            results = json.load(f)
        out[decoder] = {
            'keypoints': as_float32_if_exact([r['keypoints'] for r in results]).reshape(
                len(results), -1, 3),
            'scores': np.array([r['score'] for r in results]),
            'metric_names': list(name_values),
            'metrics': [float(v) for v in name_values.values()],
            'kept': len(results)}
    return out


# -- the tests ----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def golden_sample(tmp_path_factory):
    """The generated sample of SAMPLE (in this process: about half a second)."""
    return generate_sample(tmp_path_factory.mktemp('golden_sample'))


def test_generated_sample_matches_golden(golden_sample):
    """The data every network golden starts from. Where only this fails (or it and
    the valid goldens' maxvals by ~1e-4), the machine draws the sample differently:
    OpenCV without AVX2 renders a few pixels of some images otherwise (seen with
    OPENCV_CPU_DISABLE=AVX512-SKX,AVX2), as may another OpenCV version."""
    actual, golden = sample_hashes(golden_sample), load_golden('valid')['sample_sha256']
    differ = sorted(k for k in set(actual) | set(golden) if actual.get(k) != golden.get(k))
    assert not differ, 'the generated sample is not the one the goldens were made from ' \
        '(files {}); if the generator did not change, this machine draws or encodes ' \
        'images otherwise (see this test\'s docstring)'.format(differ)


@pytest.mark.parametrize('boxes', ['detector', 'ground_truth'])
def test_valid_matches_golden(golden_sample, tmp_path, boxes):
    golden = load_golden('valid')[boxes]
    actual = compute_valid(golden_sample, tmp_path, use_gt_bbox=boxes == 'ground_truth')
    assert actual['metric_names'] == golden['metric_names']
    assert len(actual['image_ids']) == len(golden['image_ids']) > 0
    assert_matches(actual, golden, VALID_CHECKS, 'valid ({} boxes)'.format(boxes))


def test_person_boxes_match_golden(golden_sample, tmp_path):
    golden = load_golden('valid')['boxes']
    actual = compute_boxes(golden_sample, tmp_path)
    assert sorted(actual) == sorted(golden) == sorted(BOX_SETS)
    for name in BOX_SETS:
        assert actual[name]['images'] == golden[name]['images'], name
        assert_matches(actual[name], golden[name], BOX_CHECKS, 'person boxes ' + name)
    # the threshold takes boxes away; the other sets differ in the boxes themselves
    assert 0 < len(golden['detector_image_thre_0.5']['scores']) < len(
        golden['detector']['scores'])
    assert_differs(actual['detector'], golden['ground_truth'], BOX_CHECKS[:1], 'person boxes')


def test_valid_with_other_weights_does_not_match(golden_sample, tmp_path):
    golden = load_golden('valid')['ground_truth']
    actual = compute_valid(golden_sample, tmp_path, use_gt_bbox=True, model_seed=MODEL_SEED + 1)
    assert_differs(actual, golden, VALID_CHECKS[1:3], 'valid keypoints')
    assert_differs(actual, golden, VALID_CHECKS[3:4], 'valid scores')


def test_oracle_ap_matches_golden(golden_sample, tmp_path):
    golden = load_golden('oracle')
    actual = compute_oracle(golden_sample, tmp_path)
    assert sorted(actual) == sorted(DECODERS) == sorted(k for k in golden if k != '_about')
    for decoder in DECODERS:
        assert actual[decoder]['metric_names'] == golden[decoder]['metric_names']
        assert actual[decoder]['kept'] == golden[decoder]['kept']
        assert_matches(actual[decoder], golden[decoder], ORACLE_CHECKS,
                       'oracle COCO metrics ({})'.format(decoder))
    # the decoders are told apart: AP differs between them
    assert len({tuple(golden[d]['metrics']) for d in DECODERS}) >= 3


def test_oracle_ap_of_shifted_heatmaps_does_not_match(golden_sample, tmp_path):
    golden = load_golden('oracle')
    actual = compute_oracle(golden_sample, tmp_path, shift_pixels=1)
    for decoder in DECODERS:
        assert_differs(actual[decoder], golden[decoder], ORACLE_CHECKS[:1],
                       'oracle keypoints ({})'.format(decoder))
        assert_differs(actual[decoder], golden[decoder], ORACLE_CHECKS[2:],
                       'oracle metrics ({})'.format(decoder))


def test_training_losses_match_golden(golden_sample, tmp_path):
    golden = load_golden('train')
    actual = compute_training(golden_sample, tmp_path)
    assert len(actual['loss']) == sum(count for _, count in TRAIN_STEPS)
    assert_matches(actual, golden, TRAIN_CHECKS, 'training steps')


def test_training_losses_with_another_data_seed_do_not_match(golden_sample, tmp_path):
    golden = load_golden('train')
    actual = compute_training(golden_sample, tmp_path, data_seed=DATA_SEED + 1,
                              steps=((0, 1),))
    first = {k: np.asarray(v)[:1] for k, v in golden.items() if k in ('loss', 'input_sum')}
    assert_differs({k: actual[k] for k in first}, first, [('loss', TOL['loss_rtol'], 0, None)],
                   'training loss')
    assert_differs({k: actual[k] for k in first}, first,
                   [('input_sum', TOL['sum_rtol'], 1e-6, None)], 'training batch')


@pytest.fixture(scope='module')
def decoded():
    return compute_decode()


@pytest.mark.parametrize('merge', FLIP_MERGES)
@pytest.mark.parametrize('decoder', list(DECODERS))
def test_decode_matches_golden(decoded, decoder, merge):
    key = '{}/{}'.format(decoder, merge)
    golden = load_golden('decode')['cases']
    assert sorted(golden) == sorted(decoded)
    assert_matches(decoded[key], golden[key], DECODE_CHECKS, 'decode ' + key)


def test_decode_options_are_told_apart(decoded):
    """Each option moves some joint: the goldens pin the options, not one decoding."""
    golden = load_golden('decode')['cases']
    keys = sorted(golden)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            same_decoding = a.split('/')[0] in ('dark', 'dark+quarter') and \
                b.split('/')[0] in ('dark', 'dark+quarter') and a.split('/')[1] == b.split('/')[1]
            differs = bool(mismatches(golden[a], golden[b], DECODE_CHECKS))
            # TEST.DARK replaces POST_PROCESS's quarter offset: those two agree
            assert differs != same_decoding, (a, b)


def test_decode_of_shifted_heatmaps_does_not_match(decoded):
    golden = load_golden('decode')['cases']
    shifted = compute_decode(shift_pixels=1)
    for key in golden:
        assert_differs(shifted[key], golden[key], DECODE_CHECKS[:1], 'decode ' + key)


def test_decode_with_another_seed_does_not_match():
    golden = load_golden('decode')['cases']
    other = compute_decode(seed=DECODE_SEED + 1)
    for key in golden:
        assert_differs(other[key], golden[key], DECODE_CHECKS[:1], 'decode ' + key)
        assert_differs(other[key], golden[key], DECODE_CHECKS[1:], 'decode maxvals ' + key)


def test_config_test_keys_are_covered():
    """Every TEST.* key of the config is pinned here or said not to need it: a key
    added later fails this until it is."""
    from hsrnet.config import get_default_config
    assert sorted(get_default_config().TEST) == sorted(TEST_KEYS)
