"""One-Euro smoothing of tracked keypoints (apps.smoothing, infer.py --smooth).

On the synthetic video's moving figures at 30 frames/s with Gaussian noise
(sigma 2 px) on every joint of the true poses, the documented defaults must cut
the jitter at least 2x without raising the error against the truth, and on a
fast figure (about 5 person heights per second) the lag must stay under
LAG_BOUND_PX.

Jitter: the mean length of the second difference over frames of the error
(estimate - truth), i.e. the frame-to-frame jitter the noise adds on top of the
true motion. Lag: the largest distance of a smoothed joint from a noiseless
true joint (the filter fed the noiseless poses).
"""
import numpy as np
import pytest

from hsrnet.apps.smoothing import (DEFAULTS, KeypointSmoother, check_params, one_euro_step,
                                   smoothing_factor)
from hsrnet.samples.figures import background
from hsrnet.samples.synthetic_video import make_frames, render_frame

FPS = 30
NOISE_PX = 2.0
LAG_BOUND_PX = 15.0        # on the fast figure below, 141 px tall: about 0.1 of it


def with_scores(points, score=1.0):
    return np.concatenate([points, np.full(points.shape[:-1] + (1,), score)], -1)


def smooth_clip(joints, boxes, params=DEFAULTS, fps=FPS):
    """joints (T, F, J, 2) of F figures tracked as ids 0..F-1 -> smoothed (T, F, J, 2)."""
    smoother = KeypointSmoother(*params)
    out = np.empty_like(joints)
    for t in range(len(joints)):
        out[t] = smoother.update(np.arange(joints.shape[1]), with_scores(joints[t]),
                                 boxes[t], t / fps)[..., :2]
    return out


def jitter(estimate, truth):
    error = estimate - truth
    return np.linalg.norm(error[2:] - 2 * error[1:-1] + error[:-2], axis=-1).mean()


def mean_error(estimate, truth):
    return np.linalg.norm(estimate - truth, axis=-1).mean()


@pytest.fixture(scope='module')
def clip():
    frames = list(make_frames(seed=0, seconds=4.0, fps=FPS))
    return np.array([f[2] for f in frames]), np.array([f[3] for f in frames])


@pytest.fixture(scope='module')
def fast_figure():
    """One figure walking to and fro 220 px each way every 2 s (top speed about
    700 px/s, 5 of its heights per second) while doing jumping jacks."""
    rng = np.random.default_rng(1)
    backdrop = background(rng, 640, 288)
    figure = dict(shape_seed=1, paint_seed=2, height_px=130.0, lane=320.0, walk=220.0,
                  walk_period=2.0, jump_period=1.0, phase=0.0, pelvis_y=170.0)
    frames = [render_frame(backdrop, [figure], i / FPS, np.random.default_rng(i))
              for i in range(3 * FPS)]
    return np.array([f[1] for f in frames]), np.array([f[2] for f in frames])


def test_defaults_cut_jitter_without_raising_the_error(clip):
    truth, boxes = clip
    noisy = truth + np.random.default_rng(0).normal(0, NOISE_PX, truth.shape)
    smoothed = smooth_clip(noisy, boxes)
    before, after = jitter(noisy, truth), jitter(smoothed, truth)
    error_before, error_after = mean_error(noisy, truth), mean_error(smoothed, truth)
    print('jitter {:.2f} -> {:.2f} px (x{:.2f}); mean error {:.2f} -> {:.2f} px'.format(
        before, after, before / after, error_before, error_after))
    assert before / after >= 2.0
    assert error_after <= error_before
    # the true motion is kept: the smoothed joints still move as much as the truth
    true_path = np.linalg.norm(np.diff(truth, axis=0), axis=-1).sum()
    assert np.linalg.norm(np.diff(smoothed, axis=0), axis=-1).sum() > 0.9 * true_path


def test_lag_on_a_fast_figure_is_bounded(fast_figure):
    truth, boxes = fast_figure
    speed = np.linalg.norm(np.diff(truth, axis=0), axis=-1).max() * FPS
    assert speed > 4 * boxes[:, 0, 3].mean()               # > 4 heights a second
    lag = np.linalg.norm(smooth_clip(truth, boxes) - truth, axis=-1)
    print('fast figure: top speed {:.0f} px/s, lag max {:.1f} px, mean {:.2f} px'.format(
        speed, lag.max(), lag.mean()))
    assert lag.max() < LAG_BOUND_PX
    # a plain low-pass at the same resting cutoff (beta 0) trails far further
    plain = np.linalg.norm(smooth_clip(truth, boxes, (DEFAULTS[0], 0.0, DEFAULTS[2])) - truth,
                           axis=-1)
    assert plain.max() > 2 * LAG_BOUND_PX


@pytest.mark.parametrize('speed', [50.0, 400.0, 3000.0])
def test_steady_speed_lag_is_under_size_over_two_pi_beta(speed):
    """A point moving at a constant speed: the lag converges under both
    speed / (2 pi min_cutoff) and size / (2 pi beta)."""
    min_cutoff, beta, d_cutoff = DEFAULTS
    size = 100.0
    smoother = KeypointSmoother()
    for i in range(300):
        t = i / FPS
        point = np.array([[[speed * t, 10.0, 1.0]]])
        out = smoother.update([7], point, [[0, 0, 40, size]], t)
    lag = speed * t - out[0, 0, 0]
    assert 0 < lag < min(speed / (2 * np.pi * min_cutoff), size / (2 * np.pi * beta))
    assert out[0, 0, 1] == pytest.approx(10.0)


def test_a_new_track_starts_afresh_and_persons_are_independent():
    smoother = KeypointSmoother(score_threshold=0.5)
    rng = np.random.default_rng(3)
    a = rng.uniform(0, 300, (17, 2))
    box = [[0, 0, 100, 200]]
    smoother.update([0], with_scores(a[None]), box, 0.0)
    moved = smoother.update([0], with_scores(a[None] + 30), box, 1 / FPS)
    assert np.all(np.abs(moved[0, :, :2] - a) < 30) and np.all(moved[0, :, :2] > a)
    # a new id, even where track 0 was: its first pose is passed through exactly
    fresh = smoother.update([5, 0], with_scores(np.stack([a + 30, a + 60])),
                            box * 2, 2 / FPS)
    np.testing.assert_array_equal(fresh[0], with_scores(a + 30))
    # the same persons in another order give the same poses
    again = KeypointSmoother(score_threshold=0.5)
    again.update([0], with_scores(a[None]), box, 0.0)
    again.update([0], with_scores(a[None] + 30), box, 1 / FPS)
    swapped = again.update([0, 5], with_scores(np.stack([a + 60, a + 30])), box * 2, 2 / FPS)
    np.testing.assert_array_equal(swapped[::-1], fresh)
    assert not np.allclose(fresh[1], with_scores(a + 60))


def test_low_confidence_joints_pass_through_and_leave_the_state_alone():
    rng = np.random.default_rng(4)
    poses = rng.uniform(0, 300, (4, 1, 17, 2))
    box = [[0, 0, 120, 240]]
    skipping, without = KeypointSmoother(score_threshold=0.3), KeypointSmoother(
        score_threshold=0.3)
    for i in (0, 1):
        skipping.update([2], with_scores(poses[i]), box, i / FPS)
        without.update([2], with_scores(poses[i]), box, i / FPS)
    wild = with_scores(poses[2])
    wild[0, :5, :2] += 500                    # far off, but scored under the threshold
    wild[0, :5, 2] = 0.1
    out = skipping.update([2], wild, box, 2 / FPS)
    np.testing.assert_array_equal(out[0, :5], wild[0, :5])       # passed through
    assert not np.allclose(out[0, 5:, :2], poses[2, 0, 5:])      # the others smoothed
    last = with_scores(poses[3])
    a = skipping.update([2], last, box, 3 / FPS)
    b = without.update([2], last, box, 3 / FPS)      # never saw frame 2
    # joints 0-4: as if frame 2 had not happened (same state, same time step)
    np.testing.assert_allclose(a[0, :5], b[0, :5], rtol=0, atol=1e-9)
    assert not np.allclose(a[0, 5:], b[0, 5:])


def test_tracks_not_seen_are_forgotten():
    smoother = KeypointSmoother(forget_after=1.0)
    point = with_scores(np.zeros((1, 17, 2)))
    smoother.update([0], point, [[0, 0, 10, 10]], 0.0)
    smoother.update([1], point + [5, 5, 0], [[0, 0, 10, 10]], 0.5)
    assert sorted(smoother.ids.tolist()) == [0, 1]
    smoother.update([1], point + [5, 5, 0], [[0, 0, 10, 10]], 1.5)
    assert smoother.ids.tolist() == [1]
    back = smoother.update([0], point + [9, 9, 0], [[0, 0, 10, 10]], 1.6)
    np.testing.assert_array_equal(back, point + [9, 9, 0])       # started afresh
    assert smoother.update([], np.zeros((0, 17, 3)), np.zeros((0, 4)), 1.7).shape == (0, 17, 3)
    with pytest.raises(ValueError, match='track ids of one frame must differ'):
        smoother.update([3, 3], np.zeros((2, 17, 3)), np.zeros((2, 4)), 1.8)


def test_filter_math():
    # alpha = 1 / (1 + tau / dt): a cutoff of 1/(2 pi) Hz sampled every 1 s -> 1/2
    assert smoothing_factor(1 / (2 * np.pi), 1.0) == pytest.approx(0.5)
    state = (np.zeros((1, 2)), np.zeros((1, 2)), np.array([0.0]))
    out, (x, dx, t_last) = one_euro_step(state, np.array([[10.0, 0.0]]), np.array([True]),
                                         1.0, 1.0, (1 / (2 * np.pi), 0.0, 1 / (2 * np.pi)))
    np.testing.assert_allclose(out, [[5.0, 0.0]])          # beta 0: the plain EMA
    np.testing.assert_allclose(dx, [[5.0, 0.0]])           # EMA of the speed 10 px/s
    assert t_last.tolist() == [1.0]


@pytest.mark.parametrize('params, name', [((0, 4, 1), 'min_cutoff'), ((1, -1, 1), 'beta'),
                                          ((1, 4, float('inf')), 'd_cutoff')])
def test_bad_parameters_are_named(params, name):
    with pytest.raises(ValueError, match=name):
        check_params(*params)
    assert check_params(1, 0, 1) == (1.0, 0.0, 1.0)
