import numpy as np

from hsrnet.config import get_default_config
from hsrnet.head.inference import get_final_preds, get_max_preds
from hsrnet.utils.transforms import affine_transform, get_affine_transform


def reference_final_preds(heatmaps, center, scale, post_process):
    """Per person and joint, as the protocol words it."""
    n, j, h, w = heatmaps.shape
    preds = np.zeros((n, j, 2))
    maxvals = np.zeros((n, j, 1))
    for p in range(n):
        inv = get_affine_transform(center[p], scale[p], 0, (w, h), inv=1)
        for k in range(j):
            hm = heatmaps[p, k]
            y, x = np.unravel_index(np.argmax(hm), hm.shape)
            maxvals[p, k] = hm[y, x]
            coord = np.array([x, y], dtype=np.float64) if hm[y, x] > 0 else np.zeros(2)
            px, py = int(coord[0] + 0.5), int(coord[1] + 0.5)
            if post_process and 1 < px < w - 1 and 1 < py < h - 1:
                coord += 0.25 * np.sign([hm[py, px + 1] - hm[py, px - 1],
                                         hm[py + 1, px] - hm[py - 1, px]])
            preds[p, k] = affine_transform(coord, inv)
    return preds, maxvals


def test_get_max_preds():
    rng = np.random.default_rng(0)
    heatmaps = rng.normal(size=(3, 4, 10, 7)).astype(np.float32)
    heatmaps[1, 2] = -1.0
    heatmaps[1, 2, 3, 5] = -0.5  # maximum not positive -> (0, 0)
    preds, maxvals = get_max_preds(heatmaps)
    assert preds.shape == (3, 4, 2) and maxvals.shape == (3, 4, 1)
    y, x = np.unravel_index(np.argmax(heatmaps[0, 1]), (10, 7))
    assert tuple(preds[0, 1]) == (x, y)
    assert maxvals[0, 1, 0] == heatmaps[0, 1].max()
    assert tuple(preds[1, 2]) == (0, 0) and maxvals[1, 2, 0] == -0.5


def test_get_final_preds_matches_per_joint_reference():
    rng = np.random.default_rng(1)
    heatmaps = rng.uniform(0, 1, size=(4, 17, 64, 48)).astype(np.float32)
    heatmaps[0, 0] = 0.0
    heatmaps[0, 0, 1, 20] = 1.0  # peak on the second row: no quarter offset
    center = rng.uniform(100, 400, (4, 2))
    scale = rng.uniform(0.5, 2, (4, 2))
    cfg = get_default_config()
    for post_process in (True, False):
        cfg.TEST.POST_PROCESS = post_process
        preds, maxvals = get_final_preds(cfg, heatmaps, center, scale)
        ref_preds, ref_maxvals = reference_final_preds(heatmaps, center, scale, post_process)
        np.testing.assert_allclose(preds, ref_preds, atol=1e-9)
        np.testing.assert_allclose(maxvals, ref_maxvals)
    cfg.TEST.POST_PROCESS = True
    shifted, _ = get_final_preds(cfg, heatmaps, center, scale)
    cfg.TEST.POST_PROCESS = False
    plain, _ = get_final_preds(cfg, heatmaps, center, scale)
    pixel = scale[:, None, 0] * 200 / 48  # image pixels per heatmap pixel
    moved = np.abs(shifted - plain) / pixel[..., None]
    # within a float32 step of the stored image coordinates (rounded as the original)
    assert np.all(np.isclose(moved, 0, atol=1e-4) | np.isclose(moved, 0.25, atol=1e-4))
    assert moved[1:].mean() > 0.2 and np.all(moved[0, 0] == 0)


# -- the flip test's two forward passes side by side on the CPU (core.inference) ----

def _flip_test_model():
    import torch
    from tiny_model import tiny_model
    cfg, model = tiny_model(3)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():   # BN statistics of a trained network: no formula is trivial
        for name, buf in model.named_buffers():
            if name.endswith('running_mean'):
                buf.copy_(0.1 * torch.randn(buf.shape, generator=generator))
            elif name.endswith('running_var'):
                buf.copy_(0.5 + torch.rand(buf.shape, generator=generator))
    width, height = cfg.MODEL.IMAGE_SIZE
    images = torch.randn(20, 3, height, width, generator=generator)
    return model, images


def test_flip_test_side_by_side_is_bit_identical(monkeypatch):
    """The passes side by side (each on half of the threads) give the heatmaps of
    the passes one after the other on all of them, bit for bit, whatever the
    batch; the thread count is restored."""
    import torch
    from hsrnet.head import inference
    model, images = _flip_test_model()
    pairs = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]]
    before = torch.get_num_threads()
    try:
        for threads in (2, 4):
            torch.set_num_threads(threads)
            for n in (1, 2, 8, 16, 20):
                batch = images[:n]
                with torch.no_grad():
                    got = inference.predict_heatmaps(model, batch, pairs)
                    assert torch.get_num_threads() == threads
                    with monkeypatch.context() as m:
                        m.setattr(inference, '_side_by_side', lambda *args: False)
                        want = inference.predict_heatmaps(model, batch, pairs)
                assert not got.requires_grad
                assert torch.equal(got, want), (threads, n)
    finally:
        torch.set_num_threads(before)


def test_flip_test_side_by_side_when():
    """Side by side only where each pass runs its convolutions as one pass on all
    threads would: a 1x1 convolution on one thread takes ATen's own GEMM under a
    batch of 16 (other last bits); never under autocast or on one thread."""
    import types
    import torch
    from hsrnet.head.inference import _side_by_side
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert _side_by_side(torch.zeros(16, 3, 8, 8), None)
        assert not _side_by_side(torch.zeros(15, 3, 8, 8), None)
        assert not _side_by_side(torch.zeros(1, 3, 8, 8), None)
        assert not _side_by_side(torch.zeros(16, 3, 8, 8, dtype=torch.float64), None)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert not _side_by_side(torch.zeros(16, 3, 8, 8), None)
        autocast_on = types.SimpleNamespace(enabled=True)   # a Precision with AMP on
        assert not _side_by_side(torch.zeros(16, 3, 8, 8), autocast_on)
        assert _side_by_side(torch.zeros(16, 3, 8, 8), types.SimpleNamespace(enabled=False))
        torch.set_num_threads(4)
        assert _side_by_side(torch.zeros(2, 3, 8, 8), None)
        torch.set_num_threads(1)
        assert not _side_by_side(torch.zeros(16, 3, 8, 8), None)
    finally:
        torch.set_num_threads(before)


def test_flip_test_side_by_side_error_reaches_the_caller():
    import pytest
    import torch
    from hsrnet.head.inference import predict_heatmaps

    class Failing(torch.nn.Module):
        def forward(self, x):
            if x[0, 0, 0, 0] == 0:   # the mirrored pass fails (the plain one has 1 there)
                raise RuntimeError('mirrored pass failed')
            return x[:, :1]

    images = torch.zeros(16, 3, 4, 4)
    images[:, :, :, 0] = 1.0
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with pytest.raises(RuntimeError, match='mirrored pass failed'):
            predict_heatmaps(Failing(), images, [])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
