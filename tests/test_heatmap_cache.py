"""The heatmap cache (engine.heatmap_cache), valid.py --save-heatmaps and
tools/redecode.py: re-decoding saved float32 heatmaps with valid.py's settings
gives valid.py's results exactly, float16 ones within 0.001 AP; bad files and
configs are one line."""
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import (DEMO_CFG, ROOT, TIMEOUT, check_ok, load_script, load_tool,
                      output_dir_of, run_script, tiny_opts, valid_args)
from hsrnet.head.codec import HeatmapCodec
from hsrnet.config import get_default_config, update_config_from_list
from hsrnet.engine import heatmap_cache
from hsrnet.engine.heatmap_cache import HeatmapCacheError, load_heatmaps, save_heatmaps
from hsrnet.evaluation import PosePredictions

REDECODE = os.path.join(ROOT, 'tools', 'redecode.py')
SET = 'val2017'


def load_redecode_module():
    return load_tool('redecode')


def fake_run(n=7, joints=17, size=(12, 16), dtype='float32', seed=0):
    """Heatmaps (n, joints, h, w) with a bump per joint, boxes and a config."""
    rng = np.random.default_rng(seed)
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width]
    mu = rng.uniform([2, 2], [width - 3, height - 3], size=(n, joints, 2))
    heatmaps = np.exp(-((xs - mu[..., :1, None]) ** 2 + (ys - mu[..., 1:, None]) ** 2) / 8.0)
    heatmaps = (heatmaps * rng.uniform(0.3, 1.0, (n, joints, 1, 1))).astype(dtype)
    predictions = PosePredictions(
        keypoints=np.zeros((n, joints, 3)), centers=rng.uniform(50, 300, (n, 2)),
        scales=rng.uniform(0.5, 2.0, (n, 2)), box_scores=rng.uniform(0.2, 1.0, n),
        images=['/data/img_{}.jpg'.format(i // 3) for i in range(n)])
    cfg = get_default_config()
    update_config_from_list(['MODEL.NUM_JOINTS', joints, 'MODEL.IMAGE_SIZE', '[48, 64]',
                             'MODEL.EXTRA.HEATMAP_SIZE', '[{}, {}]'.format(*size),
                             'TEST.OKS_THRE', 0.8], cfg)
    return heatmaps, predictions, cfg


@pytest.mark.parametrize('dtype', ['float16', 'float32'])
def test_saved_heatmaps_and_boxes_read_back(tmp_path, dtype):
    heatmaps, predictions, cfg = fake_run(dtype=dtype)
    path = str(tmp_path / 'deep' / 'hm.npz')
    assert save_heatmaps(path, heatmaps, predictions, cfg) == path
    assert os.listdir(tmp_path / 'deep') == ['hm.npz']   # no temporary file left
    cache = load_heatmaps(path)
    assert len(cache) == 7 and cache.shape == heatmaps.shape and cache.dtype == dtype
    np.testing.assert_array_equal(cache.heatmaps(), heatmaps)
    for size in (1, 3, 100):
        chunks = list(cache.chunks(size))
        assert [start for start, _ in chunks] == list(range(0, 7, size))
        np.testing.assert_array_equal(np.concatenate([c for _, c in chunks]), heatmaps)
    for name in ('centers', 'scales', 'box_scores', 'areas'):
        np.testing.assert_array_equal(getattr(cache, name), getattr(predictions, name))
    assert cache.images == predictions.images
    assert cache.config['TEST.OKS_THRE'] == 0.8
    assert cache.config['MODEL.EXTRA.HEATMAP_SIZE'] == [12, 16]
    assert 'OKS_THRE: 0.8' in cache.config_yaml


def test_saving_over_a_file_is_atomic(tmp_path, monkeypatch):
    heatmaps, predictions, cfg = fake_run()
    path = str(tmp_path / 'hm.npz')
    save_heatmaps(path, heatmaps, predictions, cfg)
    before = open(path, 'rb').read()

    def fail(member, rows, shape, dtype):   # the disk fills up halfway through the heatmaps
        member.write(b'half of the heatmaps')
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(heatmap_cache, '_stream_npy', fail)
    with pytest.raises(HeatmapCacheError, match='cannot write heatmaps file .*hm.npz: .*No '
                       'space left'):
        save_heatmaps(path, heatmaps * 0, predictions, cfg)
    assert open(path, 'rb').read() == before and os.listdir(tmp_path) == ['hm.npz']


def test_save_rejects_other_dtypes_and_counts(tmp_path):
    heatmaps, predictions, cfg = fake_run()
    with pytest.raises(ValueError, match='float16, float32'):
        save_heatmaps(str(tmp_path / 'a.npz'), heatmaps.astype(np.float64), predictions, cfg)
    with pytest.raises(ValueError, match='N=7'):
        save_heatmaps(str(tmp_path / 'a.npz'), heatmaps[:5], predictions, cfg)


def _bad_file(kind, tmp_path):
    """A file of `kind` and the message load_heatmaps must give for it."""
    path = tmp_path / 'hm.npz'
    if kind == 'missing':
        return path, 'heatmaps file not found'
    if kind == 'not an archive':
        path.write_bytes(b'\x00garbage' * 100)
        return path, 'is not a heatmaps file of valid.py --save-heatmaps'
    if kind == 'foreign npz':
        np.savez(str(path), heatmaps=np.zeros((1, 2, 3, 4), np.float32))
        return path, "no 'meta' entry"
    if kind == 'other meta':
        np.savez(str(path), meta=np.array('{"format": "something else"}'))
        return path, "is not a heatmaps file.*meta"
    heatmaps, predictions, cfg = fake_run()
    save_heatmaps(str(path), heatmaps, predictions, cfg)
    data = path.read_bytes()
    if kind == 'truncated':
        path.write_bytes(data[:len(data) // 2])
        return path, 'corrupt or truncated'
    if kind == 'flipped bytes':   # inside the heatmaps: the zip checksum fails
        with zipfile.ZipFile(str(path)) as archive:
            info = archive.getinfo('heatmaps.npy')
        offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
        path.write_bytes(data[:offset] + bytes(b ^ 0xFF for b in data[offset:offset + 64])
                         + data[offset + 64:])
        return path, 'corrupt or truncated'
    if kind == 'missing array':
        with zipfile.ZipFile(str(path)) as src, zipfile.ZipFile(str(tmp_path / 'x.npz'),
                                                                 'w') as dst:
            for name in src.namelist():
                if name != 'areas.npy':
                    dst.writestr(name, src.read(name))
        os.replace(str(tmp_path / 'x.npz'), str(path))
        return path, 'corrupt or truncated .*missing: areas'
    raise AssertionError(kind)


BAD_KINDS = ['missing', 'not an archive', 'foreign npz', 'other meta', 'truncated',
             'flipped bytes', 'missing array']


@pytest.mark.parametrize('kind', BAD_KINDS)
def test_bad_heatmaps_files_are_named_in_one_line(tmp_path, kind):
    path, message = _bad_file(kind, tmp_path)
    with pytest.raises(HeatmapCacheError, match=message) as error:
        cache = load_heatmaps(str(path))
        cache.heatmaps()   # damage inside the heatmaps shows when they are read
    assert '\n' not in str(error.value) and str(path) in str(error.value)


@pytest.mark.parametrize('decode', ['argmax', 'quarter', 'dark'])
def test_chunked_decoding_equals_decoding_at_once(tmp_path, decode):
    redecode = load_redecode_module()
    heatmaps, predictions, cfg = fake_run(n=11, seed=4)
    path = str(tmp_path / 'hm.npz')
    save_heatmaps(path, heatmaps, predictions, cfg)
    codec = HeatmapCodec.from_config(cfg, **redecode.DECODES[decode])
    coords, maxvals = codec.decode(heatmaps, predictions.centers, predictions.scales)
    for chunk in (1, 4, 64):
        keypoints = redecode.decode_all(load_heatmaps(path), cfg, [decode], chunk)[decode]
        np.testing.assert_array_equal(keypoints[..., :2], coords)
        np.testing.assert_array_equal(keypoints[..., 2:], maxvals)


# -- end to end: valid.py --save-heatmaps, then tools/redecode.py --------------------

def run_redecode(args, timeout=TIMEOUT):
    return subprocess.run([sys.executable, REDECODE] + [str(a) for a in args], cwd=ROOT,
                          env=dict(os.environ, PYTHONUNBUFFERED='1'), capture_output=True,
                          text=True, timeout=timeout)


# valid.py with a stand-in network: the ground-truth heatmaps of the validation
# persons (GT boxes, in order) scaled and with seeded noise, so that AP is far from 0
# and the float16 rounding and the decodings make a difference.
ORACLE_WRAPPER = """
import os, runpy, sys
import numpy as np
import torch
sys.path[:0] = [{lib!r}, os.path.dirname({script!r})]
from hsrnet import data as dataset, models
from hsrnet.engine import preflight
from hsrnet.runner import cli
from hsrnet.utils import checkpoint


class NoisyGroundTruth(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        ds = dataset.build_dataset(cfg, cfg.DATASET.TEST_SET, False)
        targets = np.stack([ds[i][1].numpy() for i in range(len(ds))])
        rng = np.random.default_rng(5)
        peaks = rng.uniform(0.3, 1.0, targets.shape[:2] + (1, 1))
        noisy = targets * peaks + rng.normal(0, 0.05, targets.shape)
        self.heatmaps = torch.from_numpy(noisy.astype(np.float32))
        self.done = 0

    def forward(self, x):
        out = self.heatmaps[self.done:self.done + len(x)]
        self.done += len(x)
        return out + 0 * self.weight


models.build_model = lambda cfg, is_train=False: NoisyGroundTruth(cfg)
checkpoint.load_pose_checkpoint = lambda model, path: None
cli.read_recorded_config = lambda path: None   # no checkpoint: --model-file is a stand-in
preflight.check_model_output = lambda *args, **kwargs: None   # no blank forward
sys.argv = [{script!r}] + sys.argv[1:]
runpy.run_path({script!r}, run_name='__main__')
"""


def redecode_args(run, heatmaps, *flags):
    """The yaml and overrides valid.py ran with, for redecode."""
    return ['--cfg', DEMO_CFG, '--heatmaps', heatmaps] + list(flags) + run['opts']


def _valid_outputs(out_dir, result, opts):
    results_dir = os.path.join(output_dir_of(out_dir), 'results')
    with open(os.path.join(results_dir, 'keypoints_{}_results.json'.format(SET))) as f:
        results = json.load(f)
    with open(os.path.join(results_dir, 'metrics_{}.json'.format(SET))) as f:
        metrics = json.load(f)['metrics']
    return {'out_dir': out_dir, 'results_dir': results_dir, 'results': results,
            'metrics': metrics, 'stdout': result.stdout, 'opts': opts}


def _oracle_valid(sample, out_dir, tmp_path_factory, *flags):
    wrapper = tmp_path_factory.mktemp('oracle') / 'oracle_valid.py'
    wrapper.write_text(ORACLE_WRAPPER.format(lib=os.path.join(ROOT, 'lib'), script=os.path.join(
        ROOT, 'pose_estimation', 'valid.py')))
    opts = tiny_opts(sample, out_dir, **{'TEST.USE_GT_BBOX': 'true', 'TEST.FLIP_TEST': 'false'})
    result = subprocess.run(
        [sys.executable, str(wrapper), '--cfg', DEMO_CFG, '--model-file', DEMO_CFG]
        + list(flags) + [str(a) for a in opts],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT,
        env=dict(os.environ, OMP_NUM_THREADS='1'))
    check_ok(result)
    return _valid_outputs(out_dir, result, opts)


@pytest.fixture(scope='module')
def oracle32(sample, tmp_path_factory):
    """valid.py (noisy ground truth for a network) --save-heatmaps PATH --heatmaps-dtype
    float32."""
    out_dir = str(tmp_path_factory.mktemp('oracle32'))
    heatmaps = os.path.join(out_dir, 'cache', 'hm32.npz')
    run = _oracle_valid(sample, out_dir, tmp_path_factory, '--save-heatmaps', heatmaps,
                        '--heatmaps-dtype', 'float32')
    run['heatmaps'] = heatmaps
    return run


@pytest.fixture(scope='module')
def oracle16(sample, tmp_path_factory):
    """The same with --save-heatmaps (default place, float16)."""
    out_dir = str(tmp_path_factory.mktemp('oracle16'))
    run = _oracle_valid(sample, out_dir, tmp_path_factory, '--save-heatmaps')
    run['heatmaps'] = os.path.join(run['results_dir'], 'heatmaps_{}.npz'.format(SET))
    return run


@pytest.fixture(scope='module')
def trained32(sample, trained, tmp_path_factory):
    """valid.py of the trained tiny network (flip test, detector boxes) with
    --save-heatmaps PATH --heatmaps-dtype float32."""
    out_dir = str(tmp_path_factory.mktemp('trained32'))
    heatmaps = os.path.join(out_dir, 'hm32.npz')
    model_file = os.path.join(output_dir_of(trained[0]), 'final_state.pth.tar')
    result = check_ok(run_script('valid.py', valid_args(
        sample, out_dir, model_file, '--save-heatmaps', heatmaps, '--heatmaps-dtype', 'float32'),
        env={'OMP_NUM_THREADS': '1'}))
    run = _valid_outputs(out_dir, result, tiny_opts(
        sample, out_dir, **{'TEST.USE_GT_BBOX': 'false', 'TEST.FLIP_TEST': 'true'}))
    run['heatmaps'] = heatmaps
    return run


def test_valid_saves_heatmaps_without_changing_its_results(oracle32, oracle16):
    assert oracle16['results'] == oracle32['results']
    assert oracle16['metrics'] == oracle32['metrics'] and oracle32['metrics']['AP'] > 0.3
    cache16, cache32 = load_heatmaps(oracle16['heatmaps']), load_heatmaps(oracle32['heatmaps'])
    assert cache16.dtype == 'float16' and cache32.dtype == 'float32'
    assert cache32.shape == cache16.shape and cache32.shape[1:] == (17, 16, 12)
    assert len(cache32) > len({r['image_id'] for r in oracle32['results']})  # every person
    np.testing.assert_allclose(cache16.heatmaps(), cache32.heatmaps(), atol=1e-3, rtol=1e-3)
    np.testing.assert_array_equal(cache16.centers, cache32.centers)
    assert cache32.config['TEST.FLIP_TEST'] is False and cache32.config['TEST.USE_GT_BBOX']
    assert 'saved to {}'.format(oracle32['heatmaps']) in oracle32['stdout']


@pytest.mark.parametrize('run', ['oracle32', 'trained32'])
def test_redecode_of_float32_heatmaps_is_valid_exactly(request, tmp_path, run):
    """Noisy ground truth (GT boxes), and the trained tiny network (flip test,
    detector boxes: its AP is 0, but every keypoint must be valid.py's)."""
    run = request.getfixturevalue(run)
    out = str(tmp_path / 'redecoded')
    result = run_redecode(redecode_args(run, run['heatmaps'], '--output-dir', out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(os.path.join(out, 'results', 'keypoints_{}_results.json'.format(SET))) as f:
        assert json.load(f) == run['results']
    with open(os.path.join(out, 'redecode_{}.json'.format(SET))) as f:
        rows = json.load(f)['rows']
    assert len(rows) == 1 and rows[0]['metrics'] == run['metrics']
    decode = 'dark' if load_heatmaps(run['heatmaps']).config['TEST.DARK'] else 'quarter'
    assert (rows[0]['decode'], rows[0]['IN_VIS_THRE'], rows[0]['OKS_THRE']) == \
        (decode, 0.2, 0.9)   # the settings valid.py ran with (the demo yaml's)
    table = [line for line in result.stdout.splitlines() if line.startswith('| ')]
    assert table[0].startswith('| decode | IN_VIS_THRE | OKS_THRE | AP |')
    assert table[1].startswith('| {} * | 0.2 | 0.9 | {:.4f} |'.format(
        decode, run['metrics']['AP']))


def test_torchrun_valid_saves_the_heatmaps_of_one_process(sample, trained, trained32,
                                                         tmp_path):
    """Under torchrun the shards' heatmaps (written batch by batch to a part file
    per rank, never all held in memory) are merged in dataset order."""
    heatmaps = str(tmp_path / 'hm32.npz')
    model_file = os.path.join(output_dir_of(trained[0]), 'final_state.pth.tar')
    check_ok(run_script('valid.py', valid_args(
        sample, str(tmp_path / 'out'), model_file, '--save-heatmaps', heatmaps,
        '--heatmaps-dtype', 'float32'), nproc=2, env={'OMP_NUM_THREADS': '1'}))
    assert sorted(os.listdir(tmp_path)) == ['hm32.npz', 'out']   # the part files are gone
    two, one = load_heatmaps(heatmaps), load_heatmaps(trained32['heatmaps'])
    assert two.images == one.images and len(one) > 2 * 2   # more than one batch a rank
    for name in ('centers', 'scales', 'box_scores', 'areas'):
        np.testing.assert_array_equal(getattr(two, name), getattr(one, name))
    np.testing.assert_allclose(two.heatmaps(), one.heatmaps(), rtol=0, atol=1e-6)


def test_redecode_sweep_of_float16_heatmaps(oracle16, tmp_path):
    out = str(tmp_path / 'sweep')
    result = run_redecode(redecode_args(oracle16, oracle16['heatmaps'], '--output-dir', out,
                                        '--decode', 'quarter,dark,argmax',
                                        '--oks-thre', '0.9,0.5', '--chunk', '3'))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(os.path.join(out, 'redecode_{}.json'.format(SET))) as f:
        rows = json.load(f)['rows']
    assert [(r['decode'], r['OKS_THRE']) for r in rows] == [
        (d, o) for d in ('quarter', 'dark', 'argmax') for o in (0.9, 0.5)]
    table = [line for line in result.stdout.splitlines() if line.startswith('| ')]
    assert len(table) == 1 + 6 and sum(' * |' in line for line in table) == 1
    as_valid = rows[0]
    assert as_valid['output_dir'] == os.path.join(out, 'quarter_vis0.2_oks0.9')
    for name, value in oracle16['metrics'].items():
        assert abs(as_valid['metrics'][name] - value) <= 1e-3, name
    for row in rows:
        assert os.path.isfile(os.path.join(row['output_dir'], 'results',
                                           'keypoints_{}_results.json'.format(SET)))
    # the decodings are not all the same
    assert len({rows[i]['metrics']['AP'] for i in (0, 2, 4)}) > 1


@pytest.mark.parametrize('case', ['garbage file', 'missing file', 'other boxes',
                                  'other heatmap size'])
def test_redecode_errors_are_one_line(oracle32, tmp_path, case):
    heatmaps, extra, status = oracle32['heatmaps'], [], 2
    if case == 'garbage file':
        heatmaps, status = tmp_path / 'garbage.npz', 1
        heatmaps.write_bytes(os.urandom(1000))
    elif case == 'missing file':
        heatmaps, status = tmp_path / 'nothing.npz', 1
    elif case == 'other boxes':
        extra = ['TEST.USE_GT_BBOX', 'false']
    else:
        extra = ['MODEL.IMAGE_SIZE', '[96, 128]', 'MODEL.EXTRA.HEATMAP_SIZE', '[24, 32]']
    result = run_redecode(redecode_args(oracle32, heatmaps, '--output-dir', tmp_path / 'out')
                          + extra)
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
    assert str(heatmaps) in lines[0]
    assert not os.path.exists(tmp_path / 'out')


def test_save_heatmaps_needs_an_npz_path(sample, tmp_path):
    # checked before the model file is read
    result = run_script('valid.py', valid_args(sample, str(tmp_path), DEMO_CFG,
                                               '--save-heatmaps', 'heatmaps.txt'))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "must end in .npz, got 'heatmaps.txt'" in lines[0], \
        result.stderr


def test_save_heatmaps_before_the_overrides_takes_no_key(monkeypatch):
    valid = load_script(os.path.join(ROOT, 'pose_estimation', 'valid.py'))
    args = valid.parse_args(['--cfg', 'x.yaml', '--save-heatmaps', 'TEST.BATCH_SIZE', '8'])
    assert args.save_heatmaps == '' and args.opts == ['TEST.BATCH_SIZE', '8']
    args = valid.parse_args(['--cfg', 'x.yaml', '--save-heatmaps', 'opts', 'SEED', '1'])
    assert args.save_heatmaps == '' and args.opts == ['opts', 'SEED', '1']
    args = valid.parse_args(['--cfg', 'x.yaml', '--save-heatmaps', 'out/h.npz', 'SEED', '1'])
    assert args.save_heatmaps == 'out/h.npz' and args.opts == ['SEED', '1']
    assert valid.parse_args(['--cfg', 'x.yaml']).save_heatmaps is None


@pytest.mark.parametrize('with_yaml', [False, True])
def test_redecode_takes_boxes_and_decoding_from_the_file(trained32, tmp_path, with_yaml):
    """Heatmaps of detector boxes with the flip test: the file alone, or the yaml
    with no override saying so (the yaml says ground-truth boxes), gives valid.py's
    results: the file says how it was made."""
    out = str(tmp_path / 'redecoded')
    args = ['--heatmaps', trained32['heatmaps'], '--output-dir', out]
    if with_yaml:   # the run's overrides, but not its box source
        opts = trained32['opts']
        kept = [item for key, value in zip(opts[0::2], opts[1::2])
                if key not in ('TEST.USE_GT_BBOX', 'TEST.FLIP_TEST', 'TEST.COCO_BBOX_FILE')
                for item in (key, value)]
        args = ['--cfg', DEMO_CFG] + args + kept
    result = run_redecode(args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(os.path.join(out, 'results', 'keypoints_{}_results.json'.format(SET))) as f:
        assert json.load(f) == trained32['results']
