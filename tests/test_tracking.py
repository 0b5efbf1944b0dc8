"""Synthetic video, the pose tracker and the skeleton drawing."""
import cv2
import numpy as np
import pytest

from hsrnet.apps.tracking import PoseTracker, box_iou
from hsrnet.samples.synthetic_video import make_frames, write_video
from hsrnet.utils.vis import LEFT_COLOR, RIGHT_COLOR, draw_poses


@pytest.fixture(scope='module')
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp('video') / 'clip.mp4'
    return path, write_video(path, seed=3, seconds=2.0, fps=10)


def test_video_is_written_and_readable(video):
    path, info = video
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == info['frames'] == 20
    assert frames[0].shape == (288, 384, 3)
    assert info['joints'].shape == (20, 3, 17, 2)
    assert not list(path.parent.glob('.*tmp*'))          # no temporary files left
    # the figures move: their boxes and their limbs change from frame to frame
    assert np.abs(np.diff(info['boxes'][:, :, 0], axis=0)).max() > 2
    assert np.abs(np.diff(info['joints'][:, :, 9], axis=0)).max() > 5     # left wrist


def test_video_frames_are_deterministic():
    first = [f[1] for f in make_frames(seed=5, seconds=0.3, fps=10)]
    again = [f[1] for f in make_frames(seed=5, seconds=0.3, fps=10)]
    other = [f[1] for f in make_frames(seed=6, seconds=0.3, fps=10)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], other[0])


def poses_of(info, rng, drop=0.0, noise=2.0):
    """Per frame: shuffled noisy poses (N, 17, 3), boxes and the true figure ids."""
    for joints, boxes in zip(info['joints'], info['boxes']):
        keep = np.flatnonzero(rng.random(len(boxes)) >= drop)
        order = rng.permutation(keep)
        kps = joints[order] + rng.normal(0, noise, joints[order].shape)
        kps = np.concatenate([kps, np.ones(kps.shape[:2] + (1,))], 2)
        yield kps, boxes[order] + rng.normal(0, noise, (len(order), 4)), order


@pytest.mark.parametrize('method', ['oks', 'iou'])
def test_tracker_keeps_each_figure_on_one_track(video, method):
    info = video[1]
    tracker = PoseTracker(method=method)
    seen = {}
    rng = np.random.default_rng(0)
    for kps, boxes, figures in poses_of(info, rng, drop=0.15):
        ids = tracker.update(kps, boxes)
        assert len(set(ids.tolist())) == len(ids)
        for figure, track in zip(figures, ids):
            seen.setdefault(figure, []).append(int(track))
    for figure, tracks in seen.items():
        switches = sum(a != b for a, b in zip(tracks, tracks[1:]))
        assert switches == 0, (figure, tracks)
    assert tracker.next_id == info['figures']


def test_tracker_starts_new_tracks_for_new_people_and_forgets_old():
    tracker = PoseTracker(method='iou', max_age=1)
    box = np.array([[10, 10, 50, 100]], float)
    kps = np.zeros((1, 17, 3))
    assert tracker.update(kps, box).tolist() == [0]
    assert tracker.update(kps, box + [200, 0, 0, 0]).tolist() == [1]     # elsewhere: new
    assert tracker.update(np.zeros((0, 17, 3)), np.zeros((0, 4))).tolist() == []
    assert tracker.update(kps, box).tolist() == [2]        # track 0 was forgotten
    with pytest.raises(ValueError, match='tracking method'):
        PoseTracker(method='colour')


def test_box_iou():
    iou = box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5]])
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0]])


def test_draw_poses_uses_side_colours_and_threshold():
    image = np.zeros((100, 100, 3), np.uint8)
    kps = np.zeros((17, 3))
    kps[:, :2] = 50
    kps[7] = [20, 20, 0.9]       # left elbow
    kps[9] = [20, 80, 0.9]       # left wrist: a left limb, drawn
    kps[8] = [80, 20, 0.9]       # right elbow
    kps[10] = [80, 80, 0.1]      # right wrist below the threshold: no limb
    draw_poses(image, [kps], boxes=[[5, 5, 90, 90]], threshold=0.2, track_ids=[4])
    assert tuple(image[50, 20]) == LEFT_COLOR
    assert tuple(image[50, 80]) != RIGHT_COLOR
    assert image[5, 50].any()                        # the box


def test_make_sample_data_writes_the_video(tmp_path, capsys):
    from conftest import load_tool
    tool = load_tool('make_sample_data')
    out = tmp_path / 'sub' / 'clip.mp4'
    assert tool.main(['--video', str(out), '--seconds', '0.4', '--fps', '5']) == 0
    assert out.is_file() and (tmp_path / 'sub' / 'clip_boxes.json').is_file()
    assert 'Wrote 2 frames with 3 figures' in capsys.readouterr().out
    assert tool.main(['--video', str(out), '--fps', '0']) == 2
