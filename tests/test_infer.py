"""The Python API (apps.estimator.PoseEstimator) and pose_estimation/infer.py.

A seeded random tiny network (tests/tiny_model.py) on a 4-image generated
sample: the API must give exactly valid.py's keypoints and scores for the same
boxes; infer.py must write pictures, an mp4 and a json pycocotools accepts, and
refuse bad input with one line.
"""
import contextlib
import io
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from conftest import ROOT
from tiny_model import DEMO_YAML, TINY_OPTS, save_tiny_checkpoint, tiny_config

sys.path.insert(0, os.path.join(ROOT, 'pose_estimation'))
import infer  # noqa: E402
from hsrnet.apps.estimator import PoseEstimator  # noqa: E402
from hsrnet.samples.synthetic import DETECTION_FILE, generate  # noqa: E402
from hsrnet.samples.synthetic_video import write_video  # noqa: E402

VAL_IMAGES = 4


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp('infer')
    sample = folder / 'sample'
    generate(str(sample), seed=1, train_images=1, val_images=VAL_IMAGES)
    ckpt = save_tiny_checkpoint(folder / 'tiny.pth.tar')
    video = folder / 'clip.mp4'
    info = write_video(video, seed=2, seconds=1.5, fps=10)
    return {'folder': folder, 'sample': sample, 'ckpt': ckpt, 'video': video,
            'video_info': info,
            'detections': sample / 'person_detection_results' / DETECTION_FILE,
            'annotations': sample / 'annotations' / 'person_keypoints_val2017.json',
            'images': sample / 'images' / 'val2017'}


def sample_opts(setup, out):
    return TINY_OPTS + ['DATASET.ROOT', str(setup['sample']),
                        'TEST.COCO_BBOX_FILE', str(setup['detections']),
                        'OUTPUT_DIR', str(out), 'LOG_DIR', str(out / 'log'),
                        'WORKERS', '0', 'TEST.BATCH_SIZE', '4']


def run_valid(setup, out, flags):
    command = [sys.executable, os.path.join(ROOT, 'pose_estimation', 'valid.py'),
               '--cfg', DEMO_YAML, '--model-file', setup['ckpt']] + flags + \
        sample_opts(setup, out)
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    path = out / 'coco' / 'pose_hsrnet_59' / 'hsrnet59_demo' / 'results' / \
        'keypoints_val2017_results.json'
    with open(path) as f:
        return json.load(f)


def gt_boxes(coco, image_id):
    """The ground-truth boxes valid.py crops (COCODataset: clipped to the
    image, non-crowd persons with keypoints)."""
    info = coco.imgs[image_id]
    boxes = []
    for ann in coco.imgToAnns.get(image_id, []):
        if ann['category_id'] != 1 or ann.get('iscrowd', 0):
            continue
        x, y, w, h = ann['bbox']
        x1, y1 = max(0, x), max(0, y)
        x2 = min(info['width'] - 1, x1 + max(0, w - 1))
        y2 = min(info['height'] - 1, y1 + max(0, h - 1))
        if ann['area'] > 0 and x2 >= x1 and y2 >= y1 and max(ann['keypoints']) > 0:
            boxes.append([x1, y1, x2 - x1, y2 - y1, 1.0])
    return np.array(boxes).reshape(-1, 5)


@pytest.mark.parametrize('use_detections', [False, True], ids=['gt-boxes', 'detector-boxes'])
@pytest.mark.parametrize('flip', [False, True], ids=['plain', 'flip-test'])
def test_api_equals_valid_results(setup, tmp_path, use_detections, flip):
    flags = (['--flip-test'] if flip else []) + (['--use-detect-bbox'] if use_detections else [])
    results = run_valid(setup, tmp_path, flags)
    coco = COCO(str(setup['annotations']))
    with open(setup['detections']) as f:
        detections = json.load(f)
    cfg = tiny_config(*sample_opts(setup, tmp_path)[len(TINY_OPTS):])
    estimator = PoseEstimator(cfg, setup['ckpt'], device='cpu', flip_test=flip, oks_nms=True)
    image_ids = sorted(coco.imgs)
    boxes = [np.array([d['bbox'] + [d['score']] for d in detections if d['image_id'] == i
                       and d['category_id'] == 1 and d['score'] >= cfg.TEST.IMAGE_THRE
                       ]).reshape(-1, 5) if use_detections else gt_boxes(coco, i)
             for i in image_ids]
    images = [str(setup['images'] / coco.imgs[i]['file_name']) for i in image_ids]
    persons = estimator.estimate_many(images, boxes)
    ours = [(i, p.keypoints.reshape(-1).tolist(), p.score)
            for i, frame in zip(image_ids, persons) for p in frame]
    theirs = [(r['image_id'], r['keypoints'], r['score']) for r in results]
    assert len(ours) == len(theirs) > 0
    assert ours == theirs                   # exactly: same path, same numbers


@pytest.fixture(scope='module')
def onnx_file(setup):
    pytest.importorskip('onnxruntime')
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    import export_onnx
    yaml_file = setup['folder'] / 'tiny.yaml'
    from hsrnet.config import dump_config
    yaml_file.write_text(dump_config(tiny_config()))
    out = setup['folder'] / 'tiny.onnx'
    assert export_onnx.main(['--cfg', str(yaml_file), '--model-file', setup['ckpt'],
                             '--out', str(out)]) == 0
    return out


@pytest.mark.parametrize('flip', [False, True], ids=['plain', 'flip-test'])
def test_onnx_estimator_gives_the_same_keypoints(setup, onnx_file, flip):
    cfg = tiny_config()
    image = cv2.imread(str(sorted(setup['images'].iterdir())[0]))
    boxes = [[20, 30, 120, 200, 0.9], [150, 40, 100, 180, 0.8]]
    torch_est = PoseEstimator(cfg, setup['ckpt'], device='cpu', flip_test=flip)
    onnx_est = PoseEstimator(cfg, str(onnx_file), flip_test=flip)
    assert onnx_est.backend == 'onnxruntime'
    crops = np.random.default_rng(0).standard_normal((3, 3, 64, 48), dtype=np.float32)
    assert np.abs(torch_est.heatmaps(crops) - onnx_est.heatmaps(crops)).max() < 1e-4
    for a, b in zip(torch_est.estimate(image, boxes), onnx_est.estimate(image, boxes)):
        np.testing.assert_allclose(a.keypoints[:, :2], b.keypoints[:, :2], atol=1e-6)
        np.testing.assert_allclose(a.keypoints[:, 2], b.keypoints[:, 2], atol=1e-4)
        assert a.score == pytest.approx(b.score, abs=1e-4)


def test_estimate_whole_image_and_batching(setup):
    estimator = PoseEstimator(tiny_config(), setup['ckpt'], device='cpu', batch_size=2)
    image = cv2.imread(str(sorted(setup['images'].iterdir())[0]))
    whole = estimator.estimate(image)
    assert len(whole) == 1 and whole[0].keypoints.shape == (17, 3)
    np.testing.assert_array_equal(whole[0].box, [0, 0, image.shape[1], image.shape[0]])
    boxes = np.array([[10, 10, 80, 160], [100, 20, 90, 150], [30, 50, 60, 100]], float)
    alone = [estimator.estimate(image, b[None])[0] for b in boxes]
    together = estimator.estimate(image, boxes)
    for a, b in zip(alone, together):
        np.testing.assert_allclose(a.keypoints, b.keypoints, rtol=0, atol=1e-5)
    assert estimator.estimate(image, np.zeros((0, 4))) == []
    with pytest.raises(ValueError, match='boxes must have shape'):
        estimator.estimate(image, [[1, 2, 3]])


def run_infer(*args):
    """infer.main in this process: (status, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = infer.main([str(a) for a in args])
    return status, err.getvalue()


def base_args(setup, out, model=None):
    return ['--cfg', DEMO_YAML, '--model-file', model or setup['ckpt'], '--out', out]


def check_coco_loadable(json_file, annotations):
    coco = COCO(str(annotations))
    with open(json_file) as f:
        records = json.load(f)
    assert records
    with contextlib.redirect_stdout(io.StringIO()):
        loaded = coco.loadRes(records)
    assert len(loaded.anns) == len(records)
    return records


def test_infer_on_an_image(setup, tmp_path):
    image = sorted(setup['images'].iterdir())[0]
    status, err = run_infer(*base_args(setup, tmp_path / 'out'), '--input', image,
                            '--whole-image', *TINY_OPTS)
    assert status == 0, err
    picture = cv2.imread(str(tmp_path / 'out' / (image.stem + '_pose.jpg')))
    assert picture.shape == cv2.imread(str(image)).shape
    records = check_coco_loadable(tmp_path / 'out' / 'keypoints.json', setup['annotations'])
    assert [r['file_name'] for r in records] == [image.name]
    assert records[0]['image_id'] == int(image.stem) and len(records[0]['keypoints']) == 51
    assert sorted(os.listdir(tmp_path / 'out')) == [image.stem + '_pose.jpg', 'keypoints.json']


def test_infer_on_a_folder_with_a_boxes_file(setup, tmp_path):
    status, err = run_infer(*base_args(setup, tmp_path / 'out'), '--input', setup['images'],
                            '--boxes', setup['detections'], '--flip-test', *TINY_OPTS)
    assert status == 0, err
    assert 'frames/s' in err
    records = check_coco_loadable(tmp_path / 'out' / 'keypoints.json', setup['annotations'])
    names = sorted(p.name for p in setup['images'].iterdir())
    assert {r['file_name'] for r in records} <= set(names)
    for name in names:
        assert (tmp_path / 'out' / name.replace('.jpg', '_pose.jpg')).is_file()


def test_infer_on_the_synthetic_video_tracks_the_figures(setup, tmp_path):
    info = setup['video_info']
    status, err = run_infer(*base_args(setup, tmp_path / 'out'), '--input', setup['video'],
                            '--boxes', info['boxes_file'], *TINY_OPTS)
    assert status == 0, err
    capture = cv2.VideoCapture(str(tmp_path / 'out' / 'clip_pose.mp4'))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == info['frames'] == 15
    with open(tmp_path / 'out' / 'keypoints.json') as f:
        records = json.load(f)
    assert len(records) == info['frames'] * info['figures']
    # pycocotools takes them as results for a COCO set whose images are the frames
    frames_set = {'images': [{'id': i, 'width': 384, 'height': 288}
                             for i in range(info['frames'])],
                  'annotations': [], 'categories': [{'id': 1, 'name': 'person'}]}
    coco = COCO()
    coco.dataset = frames_set
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        assert len(coco.loadRes(records).anns) == len(records)
    # each record's box is one figure's ground-truth box: its track must not switch
    tracks = {}
    for record in records:
        truth = info['boxes'][record['frame']]
        figure = int(np.argmin(np.abs(truth - np.array(record['bbox'])).sum(1)))
        tracks.setdefault(figure, []).append(record['track_id'])
    assert len(tracks) == info['figures']
    for figure, ids in tracks.items():
        assert sum(a != b for a, b in zip(ids, ids[1:])) <= 1, (figure, ids)


def test_infer_with_the_onnx_model(setup, onnx_file, tmp_path):
    image = sorted(setup['images'].iterdir())[1]
    outputs = {}
    for name, model in (('torch', setup['ckpt']), ('onnx', onnx_file)):
        status, err = run_infer(*base_args(setup, tmp_path / name, model), '--input', image,
                                '--whole-image', *TINY_OPTS)
        assert status == 0, err
        with open(tmp_path / name / 'keypoints.json') as f:
            outputs[name] = json.load(f)
    np.testing.assert_allclose(outputs['torch'][0]['keypoints'], outputs['onnx'][0]['keypoints'],
                               atol=1e-4)


def assert_one_line_error(status, err, *names):
    assert status != 0
    lines = [line for line in err.replace('\r', '\n').splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])


def assert_nothing_written(out):
    assert not os.path.exists(out) or not [
        f for f in os.listdir(out) if not f.startswith('.')], os.listdir(out)
    if os.path.exists(out):
        assert not os.listdir(out), 'staging folder left behind'


def test_unreadable_image_is_one_line(setup, tmp_path):
    bad = tmp_path / 'bad.jpg'
    bad.write_text('not a picture')
    out = tmp_path / 'out'
    status, err = run_infer(*base_args(setup, out), '--input', bad, '--whole-image', *TINY_OPTS)
    assert_one_line_error(status, err, bad, 'cannot read')
    assert_nothing_written(out)


def test_bad_image_in_a_folder_leaves_nothing(setup, tmp_path):
    folder = tmp_path / 'pictures'
    folder.mkdir()
    first = sorted(setup['images'].iterdir())[0]
    (folder / 'a.jpg').write_bytes(first.read_bytes())
    (folder / 'b.jpg').write_bytes(first.read_bytes()[:100])     # truncated
    out = tmp_path / 'out'
    status, err = run_infer(*base_args(setup, out), '--input', folder, '--whole-image',
                            '--quiet', *TINY_OPTS)
    assert_one_line_error(status, err, folder / 'b.jpg')
    assert_nothing_written(out)


def test_video_without_frames_is_one_line(setup, tmp_path):
    empty = tmp_path / 'empty.mp4'
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*'mp4v'), 10.0, (64, 48))
    writer.release()
    status, err = run_infer(*base_args(setup, tmp_path / 'out'), '--input', empty,
                            '--whole-image', *TINY_OPTS)
    assert_one_line_error(status, err, empty)
    assert 'no frames' in err or 'cannot open' in err
    assert_nothing_written(tmp_path / 'out')


def test_boxes_file_naming_no_input_is_one_line(setup, tmp_path):
    boxes = tmp_path / 'boxes.json'
    boxes.write_text(json.dumps([{'image_id': 12345, 'category_id': 1,
                                  'bbox': [0, 0, 10, 10], 'score': 1.0}]))
    status, err = run_infer(*base_args(setup, tmp_path / 'out'), '--input', setup['images'],
                            '--boxes', boxes, *TINY_OPTS)
    assert_one_line_error(status, err, boxes, 'names none of the inputs')
    assert_nothing_written(tmp_path / 'out')


@pytest.mark.filterwarnings('ignore::DeprecationWarning')
def test_onnx_of_another_model_is_one_line(setup, tmp_path):
    pytest.importorskip('onnxruntime')
    import torch
    other = tmp_path / 'other.onnx'
    torch.onnx.export(torch.nn.Conv2d(3, 16, 1), (torch.zeros(1, 3, 32, 32),), str(other),
                      dynamo=False, input_names=['images'], output_names=['heatmaps'])
    status, err = run_infer(*base_args(setup, tmp_path / 'out', other), '--input',
                            setup['images'], '--whole-image', *TINY_OPTS)
    assert_one_line_error(status, err, other, 'another network')
    assert_nothing_written(tmp_path / 'out')


def test_checkpoint_not_fitting_the_yaml_is_one_line(setup, tmp_path):
    status, err = run_infer(*base_args(setup, tmp_path / 'out'), '--input', setup['images'],
                            '--whole-image', *TINY_OPTS, 'MODEL.EXTRA.NUM_DECONV_FILTERS',
                            '[64, 64]')
    assert_one_line_error(status, err, setup['ckpt'], 'does not fit')
    assert_nothing_written(tmp_path / 'out')


def test_unwritable_output_is_one_line(setup, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    status, err = run_infer(*base_args(setup, blocker / 'out'), '--input', setup['images'],
                            '--whole-image', *TINY_OPTS)
    assert_one_line_error(status, err, blocker / 'out', 'cannot write')


def test_command_line_error_has_no_traceback(setup, tmp_path):
    """The real command, in its own process: status 2, one line."""
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'pose_estimation', 'infer.py')]
        + [str(a) for a in base_args(setup, tmp_path / 'out')]
        + ['--input', str(tmp_path / 'missing.jpg'), '--whole-image'] + TINY_OPTS,
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert_one_line_error(result.returncode, result.stderr, tmp_path / 'missing.jpg')


def test_default_detector_is_hog_or_a_clear_line(setup, tmp_path):
    from hsrnet.apps.person_boxes import _hog_class
    if _hog_class() is not None:
        pytest.skip('this OpenCV has the HOG detector (tested in test_person_boxes)')
    status, err = run_infer(*base_args(setup, tmp_path / 'out'), '--input', setup['images'],
                            *TINY_OPTS)
    assert_one_line_error(status, err, 'HOG', '--boxes')
    assert status == 2


def test_original_format_checkpoint_and_precision(setup, tmp_path):
    """A bare state_dict with DataParallel's 'module.' prefix (the original's
    files) gives the same poses; bf16 autocast runs and stays close."""
    import torch
    state = torch.load(setup['ckpt'], weights_only=True)['state_dict']
    original = tmp_path / 'original.pth'
    torch.save({'module.' + key: value for key, value in state.items()}, str(original))
    image = cv2.imread(str(sorted(setup['images'].iterdir())[0]))
    boxes = [[20, 30, 120, 200, 0.9]]
    ours = PoseEstimator(tiny_config(), setup['ckpt'], device='cpu').estimate(image, boxes)
    theirs = PoseEstimator(tiny_config(), original, device='cpu').estimate(image, boxes)
    np.testing.assert_array_equal(ours[0].keypoints, theirs[0].keypoints)
    bf16 = PoseEstimator(tiny_config(), setup['ckpt'], device='auto', precision='bf16')
    from hsrnet.engine.precision import cpu_features
    # Without native bf16 (an AVX2-only CPU) the CPU falls back to float32 by design.
    assert ('bfloat16' in bf16.describe()) == cpu_features()['native_bf16']
    assert bf16.estimate(image, boxes)[0].keypoints.shape == (17, 3)
    with pytest.raises(ValueError, match='precision must be one of'):
        PoseEstimator(tiny_config(), setup['ckpt'], precision='int8')


def read_records(out):
    with open(out / 'keypoints.json') as f:
        return {(r['frame'], r['track_id']): r for r in json.load(f)}


def second_differences(records):
    """Mean length of the keypoints' second difference over frames, per track."""
    tracks = {}
    for (frame, track), record in sorted(records.items()):
        tracks.setdefault(track, []).append(np.reshape(record['keypoints'], (-1, 3))[:, :2])
    d2 = [np.linalg.norm(np.diff(np.array(k), 2, axis=0), axis=-1).mean()
          for k in tracks.values() if len(k) > 2]
    return float(np.mean(d2))


def test_infer_smooth_filters_the_tracked_keypoints(setup, tmp_path):
    info = setup['video_info']
    flags = ['--input', setup['video'], '--boxes', info['boxes_file'], '--kpt-thre', '-1',
             '--no-draw', '--quiet']
    runs = {}
    for name, extra in (('raw', []), ('smooth', ['--smooth']),
                        ('plain', ['--smooth-params', '1', '0', '1'])):
        status, err = run_infer(*base_args(setup, tmp_path / name), *flags, *extra, *TINY_OPTS)
        assert status == 0, err
        runs[name] = read_records(tmp_path / name)
    raw, smooth = runs['raw'], runs['smooth']
    assert raw.keys() == smooth.keys() and len(raw) == info['frames'] * info['figures']
    for key, record in raw.items():
        assert smooth[key]['bbox'] == record['bbox'] and smooth[key]['score'] == record['score']
        scores = np.reshape(record['keypoints'], (-1, 3))[:, 2]
        np.testing.assert_array_equal(np.reshape(smooth[key]['keypoints'], (-1, 3))[:, 2],
                                      scores)
    first = {track: min(f for f, t in raw if t == track) for _, track in raw}
    for (frame, track), record in raw.items():        # a track's first pose: unchanged
        same = record['keypoints'] == smooth[frame, track]['keypoints']
        assert same == (frame == first[track]), (frame, track)
    # the random network's joints leap about: the default filter, seeing speed, smooths
    # them less than a plain 1 Hz low-pass (beta 0) does
    assert second_differences(runs['plain']) < second_differences(smooth) < \
        second_differences(raw)


def test_smooth_options_are_checked(setup, tmp_path):
    status, err = run_infer(*base_args(setup, tmp_path / 'out'), '--input', setup['images'],
                            '--whole-image', '--smooth', *TINY_OPTS)
    assert_one_line_error(status, err, '--smooth', setup['images'], 'video')
    assert status == 2
    status, err = run_infer(*base_args(setup, tmp_path / 'out'), '--input', setup['video'],
                            '--whole-image', '--smooth-params', '0', '4', '1', *TINY_OPTS)
    assert_one_line_error(status, err, '--smooth-params', 'min_cutoff')
    assert status == 2
    assert_nothing_written(tmp_path / 'out')


def test_detector_layout_flag(setup, tmp_path):
    pytest.importorskip('onnxruntime')
    from tiny_detectors import (AMBIGUOUS_AS_ROWS, AMBIGUOUS_AS_YOLO, ambiguous_detector,
                                unknown_detector)
    detector = ambiguous_detector(tmp_path / 'ambiguous.onnx')
    picture = tmp_path / 'square.jpg'
    cv2.imwrite(str(picture), cv2.imread(str(sorted(setup['images'].iterdir())[0]))[:256, :256])
    assert cv2.imread(str(picture)).shape == (256, 256, 3)     # letterboxed at zoom 1
    for layout, expected in (([], AMBIGUOUS_AS_ROWS),
                             (['--detector-layout', 'yolo'], AMBIGUOUS_AS_YOLO)):
        out = tmp_path / ('out' + ''.join(layout))
        status, err = run_infer(*base_args(setup, out), '--input', picture, '--detector',
                                detector, *layout, '--no-oks-nms', '--no-draw', *TINY_OPTS)
        assert status == 0, err
        with open(out / 'keypoints.json') as f:
            boxes = sorted(r['bbox'] for r in json.load(f))
        np.testing.assert_allclose(boxes, sorted(np.array(expected)[:, :4].tolist()), atol=0.01)
    unknown = unknown_detector(tmp_path / 'unknown.onnx')
    status, err = run_infer(*base_args(setup, tmp_path / 'bad'), '--input', picture,
                            '--detector', unknown, *TINY_OPTS)
    assert_one_line_error(status, err, unknown, 'weird (1, 3, 2)', 'accepted: rows')
    assert status == 2
    status, err = run_infer(*base_args(setup, tmp_path / 'bad'), '--input', picture,
                            '--whole-image', '--detector-layout', 'yolo', *TINY_OPTS)
    assert_one_line_error(status, err, '--detector-layout yolo', '--detector')
    assert status == 2


def test_estimator_uses_the_blocked_layout_with_the_same_heatmaps(setup):
    """In the contiguous layout on the CPU, the API's network runs in oneDNN's
    blocked layout (SPEED.CPU_BLOCKED_LAYOUT) and its heatmaps are those of the
    contiguous pass, bit for bit."""
    from conftest import on_setup_torch
    from hsrnet.models.blocked_layout import BlockedLayoutNet
    contiguous = ['CPU_AUTO', 'false']
    blocked = PoseEstimator(tiny_config(), setup['ckpt'], device='cpu', flip_test=True,
                            opts=contiguous)
    plain = PoseEstimator(tiny_config(), setup['ckpt'], device='cpu', flip_test=True,
                          opts=contiguous + ['SPEED.CPU_BLOCKED_LAYOUT', 'false'])
    if not isinstance(blocked.model, BlockedLayoutNet) and not on_setup_torch():
        pytest.skip('the probe keeps the contiguous pass on this PyTorch')
    assert isinstance(blocked.model, BlockedLayoutNet)
    assert not isinstance(plain.model, BlockedLayoutNet)
    width, height = blocked.image_size
    crops = np.random.default_rng(3).standard_normal((18, 3, height, width)).astype(np.float32)
    np.testing.assert_array_equal(blocked.heatmaps(crops), plain.heatmaps(crops))
