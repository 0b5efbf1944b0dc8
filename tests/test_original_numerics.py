"""The original's dtypes, step by step, at image-sized coordinates where one
float32 step (~6e-5 px at 1,000 px) is visible: keypoints are mapped back in
float64 and stored as float32; the rescored person score is a float32 mean of
float32 maxvals times a float64 box score (spec/PROTOCOL.md, "Test time")."""
import numpy as np

from hsrnet.head.codec import HeatmapCodec
from hsrnet.evaluation.coco import rescore
from hsrnet.utils.transforms import get_affine_transform, transform_preds


def original_transform_preds(coords, center, scale, output_size):
    """The original's loop: one float64 point at a time through the inverse crop
    affine, stored into a float32 array (its `preds`)."""
    trans = get_affine_transform(center, scale, 0, output_size, inv=1)
    preds = np.zeros(coords.shape, dtype=np.float32)
    for p in range(coords.shape[0]):
        point = np.array([coords[p, 0], coords[p, 1], 1.0])
        preds[p, :2] = np.dot(trans, point)[:2]
    return preds


def original_rescore(maxvals, box_score, in_vis_thre):
    """The original's per-person loop, with float32 maxvals as it stores them."""
    kpt_score = np.float32(0)
    valid_num = 0
    for t_s in maxvals.astype(np.float32):
        if t_s > np.float32(in_vis_thre):
            kpt_score = np.float32(kpt_score + t_s)
            valid_num += 1
    if valid_num:
        kpt_score = np.float32(kpt_score / np.float32(valid_num))
    return np.float64(kpt_score) * np.float64(box_score)


def test_decoded_keypoints_are_the_originals_float32_values():
    rng = np.random.default_rng(0)
    n, joints, height, width = 12, 17, 64, 48
    heatmaps = rng.random((n, joints, height, width)).astype(np.float32)
    # Boxes far into large images: centres near 1,000-4,000 px, scales of big persons.
    center = rng.uniform(1000, 4000, size=(n, 2))
    scale = rng.uniform(0.5, 4.0, size=(n, 2))
    codec = HeatmapCodec(image_size=[192, 256], heatmap_size=[width, height], sigma=2,
                         post_process=True)
    preds, maxvals = codec.decode(heatmaps, center, scale)
    assert preds.dtype == np.float32 and maxvals.dtype == np.float32
    coords, _ = codec.decode_heatmap_coords(heatmaps)
    expected = np.stack([original_transform_preds(coords[i], center[i], scale[i],
                                                  [width, height]) for i in range(n)])
    np.testing.assert_array_equal(preds, expected)
    # The float64 result, kept unrounded, would differ: the rounding is what matters here.
    unrounded = transform_preds(coords, center, scale, [width, height])
    assert not np.array_equal(expected.astype(np.float64), unrounded)
    np.testing.assert_allclose(expected, unrounded, rtol=0, atol=1e-3)


def test_rescored_scores_are_the_originals():
    rng = np.random.default_rng(1)
    maxvals = rng.uniform(0, 1, size=(200, 17)).astype(np.float32)
    maxvals[3] = 0.1                                    # no joint above the threshold
    maxvals[4, :] = np.float32(0.2)                     # exactly at it, in float32
    box_scores = rng.uniform(0.1, 1.0, size=200)
    scores = rescore(maxvals, box_scores, 0.2)
    expected = np.array([original_rescore(m, b, 0.2) for m, b in zip(maxvals, box_scores)])
    assert scores.dtype == np.float64
    np.testing.assert_array_equal(scores, expected)
    assert scores[3] == 0 and scores[4] == 0
    # A float64 mean of the same float32 values differs in the last bits for some.
    above = maxvals > np.float32(0.2)
    mean64 = np.where(above.any(1), (maxvals.astype(np.float64) * above).sum(1)
                      / np.maximum(above.sum(1), 1), 0) * box_scores
    assert not np.array_equal(mean64, expected)
