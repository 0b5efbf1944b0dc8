import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
LIB = os.path.join(ROOT, 'lib')
if LIB not in sys.path:
    sys.path.insert(0, LIB)

def on_setup_torch():
    """Whether this is the PyTorch that `make setup` installs (Makefile's
    TORCH_VERSION): what the project's CPU-specific numerics were measured on."""
    import re
    import torch
    with open(os.path.join(ROOT, 'Makefile')) as f:
        version = re.search(r'^TORCH_VERSION\s*[:?]?=\s*(\S+)', f.read(), re.M).group(1)
    return torch.__version__.split('+')[0] == version


def load_script(path, name=None):
    """A script of pose_estimation/ or tools/ as a module: its folder goes on sys.path
    first, since each imports its path helper (_init_paths, _paths) from there."""
    import importlib.util
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = name or '{}_script'.format(os.path.splitext(os.path.basename(path))[0])
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_tool(name):
    """tools/<name>.py as a module."""
    return load_script(os.path.join(ROOT, 'tools', name + '.py'), name + '_tool')


def evaluate_targets(cfg, ds, out_dir):
    """The dataset's own target heatmaps taken as the network's, decoded (in the
    dataset's order, ground-truth boxes) and scored by its metric: (values, AP)."""
    import numpy as np
    from hsrnet.head.inference import get_final_preds
    targets = np.stack([ds[i][1].numpy() for i in range(len(ds))])
    centers = np.stack([r['center'] for r in ds.db])
    scales = np.stack([r['scale'] for r in ds.db])
    coords, maxvals = get_final_preds(cfg, targets, centers, scales)
    boxes = np.concatenate([centers, scales, np.prod(scales * 200, 1)[:, None],
                            np.ones((len(ds), 1))], axis=1)
    return ds.evaluate(cfg, np.concatenate([coords, maxvals], 2), str(out_dir), boxes,
                       [r['image'] for r in ds.db])


SHARED = os.path.abspath(os.path.join(ROOT, '..', 'shared'))
SPEC = os.path.join(SHARED, 'spec')
SHARED_DATA = os.path.join(SHARED, 'data')

COCO_YAML = os.path.join(ROOT, 'experiments', 'coco', 'hsrnet59',
                         '256x192_d256x3_adam_lr1e-3.yaml')
DETECTIONS = 'COCO_val2017_detections_AP_H_56_person.json'


def coco_config(root, *opts):
    """The HSRNet-59 256x192 experiment pointed at the COCO-layout data in `root`
    (its detector boxes included), with `opts` KEY VALUE overrides."""
    from hsrnet.config import get_default_config, update_config, update_config_from_list
    cfg = update_config(COCO_YAML, get_default_config())
    update_config_from_list(['DATASET.ROOT', str(root), 'TEST.COCO_BBOX_FILE',
                             os.path.join(str(root), 'person_detection_results', DETECTIONS)]
                            + list(opts), cfg)
    return cfg


# -- end to end: the scripts on a tiny generated sample (tests/test_train_valid.py,
#    tests/test_heatmap_cache.py, ...) -----------------------------------------------

DEMO_CFG = os.path.join(ROOT, 'experiments', 'sample', 'hsrnet59_demo.yaml')
CFG_STEM = 'hsrnet59_demo'
DETECTIONS_FILE = os.path.join('person_detection_results', DETECTIONS)
RESULTS = os.path.join('results', 'keypoints_val2017_results.json')
TIMEOUT = 120


def run_script(script, args, nproc=1, env=None, timeout=TIMEOUT, torchrun=False):
    """Run pose_estimation/<script> (under torchrun for nproc > 1 or `torchrun`)."""
    path = os.path.join(ROOT, 'pose_estimation', script)
    if nproc > 1 or torchrun:
        command = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
                   '--nproc_per_node', str(nproc), path]
    else:
        command = [sys.executable, path]
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    return subprocess.run(command + [str(a) for a in args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def check_ok(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def tiny_opts(sample, out_dir, **extra):
    """The demo yaml shrunk to seconds: 64x48 input, 2 epochs, no workers."""
    opts = {
        'DATASET.ROOT': sample,
        'TEST.COCO_BBOX_FILE': os.path.join(sample, DETECTIONS_FILE),
        'OUTPUT_DIR': out_dir,
        'LOG_DIR': os.path.join(out_dir, 'log'),
        'MODEL.IMAGE_SIZE': '[48, 64]',
        'MODEL.EXTRA.HEATMAP_SIZE': '[12, 16]',
        'TRAIN.BATCH_SIZE': 8,
        'TEST.BATCH_SIZE': 4,
        'TRAIN.END_EPOCH': 2,
        'TRAIN.LR_STEP': '[1]',
        'WORKERS': 0,
        'PRINT_FREQ': 1,
        'SEED': 3,
        # the paper's decoding: DARK (the demo's) turns the 1e-7 heatmap differences
        # between backends and batch sizes into 1e-4 px; tests that need it say so
        'TEST.DARK': 'false',
    }
    opts.update(extra)
    return [item for pair in opts.items() for item in pair]


def output_dir_of(out_dir):
    return os.path.join(out_dir, 'coco', 'pose_hsrnet_59', CFG_STEM)


def train_args(sample, out_dir, **extra):
    return ['--cfg', DEMO_CFG] + tiny_opts(sample, out_dir, **extra)


def valid_args(sample, out_dir, model_file, *flags, **extra):
    return (['--cfg', DEMO_CFG, '--model-file', model_file, '--flip-test',
             '--use-detect-bbox'] + list(flags) + tiny_opts(sample, out_dir, **extra))


def load_results(out_dir):
    with open(os.path.join(output_dir_of(out_dir), RESULTS)) as f:
        return json.load(f)


def generate_sample(root, seed, train_images, val_images):
    """tools/make_sample_data.py into `root`: a COCO-layout sample with detector
    boxes. Returns str(root)."""
    subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'make_sample_data.py'),
                    '--out', str(root), '--seed', str(seed), '--train-images',
                    str(train_images), '--val-images', str(val_images)],
                   check=True, capture_output=True, timeout=TIMEOUT)
    return str(root)


@pytest.fixture(scope='session')
def sample(tmp_path_factory):
    """A generated COCO-layout sample (6 train, 4 val images, detector boxes)."""
    return generate_sample(tmp_path_factory.mktemp('sample'), 1, 6, 4)


@pytest.fixture(scope='session')
def trained(sample, tmp_path_factory):
    """(output folder, CompletedProcess) of an uninterrupted 2-epoch train.py run
    on `sample` (debug images on); tests only read it."""
    out_dir = str(tmp_path_factory.mktemp('train'))
    result = check_ok(run_script('train.py', train_args(sample, out_dir, **{'DEBUG.DEBUG': 'true'})))
    return out_dir, result
