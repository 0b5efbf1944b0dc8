import importlib
import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest

from hsrnet.nms import nms as nms_module
from conftest import LIB
from hsrnet.nms.nms import COCO_SIGMAS, nms, oks_iou, oks_nms


@pytest.fixture(scope='module')
def compiled():
    """The Cython kernels, built in place first if needed (as `cd lib && make` does)."""
    global nms_module
    if nms_module.compiled_kernels is None:
        if shutil.which('make') is None:
            pytest.skip('make is not installed: cannot build the Cython extension')
        build = subprocess.run(['make', '-C', LIB, 'PYTHON=' + sys.executable],
                               capture_output=True, text=True)
        if build.returncode != 0:
            pytest.skip('cannot build the Cython extension: ' + build.stderr[-500:])
        nms_module = importlib.reload(nms_module)
    return nms_module.compiled_kernels


def random_poses(rng, n, people=4, noise=None):
    """Poses scattered around a few people: many near-duplicates, some distinct."""
    bases = rng.uniform(0, 300, (people, 17, 2))
    who = rng.integers(0, people, n)
    noise = rng.uniform(0.5, 15, (n, 1, 1)) if noise is None else noise
    xy = bases[who] + rng.normal(size=(n, 17, 2)) * noise
    kpts = np.concatenate([xy, rng.uniform(0, 1, (n, 17, 1))], axis=2)
    return [{'keypoints': kpts[i], 'score': float(rng.uniform()),
             'area': float(rng.uniform(2e3, 4e4))} for i in range(n)]


def test_cython_and_numpy_oks_nms_keep_the_same(compiled):
    rng = np.random.default_rng(0)
    kept_some = dropped_some = False
    for trial in range(200):
        db = random_poses(rng, int(rng.integers(1, 40)))
        if trial % 10 == 0:  # exact score ties
            for d in db:
                d['score'] = 0.5
        for thresh, vis in ((0.9, None), (0.5, 0.2), (0.3, None)):
            a = nms_module.oks_nms(db, thresh, in_vis_thre=vis, backend='cython')
            b = nms_module.oks_nms(db, thresh, in_vis_thre=vis, backend='numpy')
            assert a == b
            kept_some |= len(a) > 1
            dropped_some |= len(a) < len(db)
    assert kept_some and dropped_some


def test_cython_and_numpy_box_nms_keep_the_same(compiled):
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        xy = rng.uniform(0, 200, (n, 2))
        wh = rng.uniform(5, 80, (n, 2))
        dets = np.concatenate([xy, xy + wh, rng.uniform(size=(n, 1))], axis=1)
        for thresh in (0.3, 0.7):
            assert nms_module.nms(dets, thresh, backend='cython') == \
                nms_module.nms(dets, thresh, backend='numpy')


def test_box_nms_small_case():
    dets = np.array([[0, 0, 9, 9, 0.9], [1, 1, 10, 10, 0.8], [50, 50, 60, 60, 0.7],
                     [0, 0, 9, 9, 0.95]])
    assert nms(dets, 0.5) == [3, 2]
    assert nms(dets, 0.99) == [3, 1, 2]  # 0 is a copy of 3
    assert nms(np.zeros((0, 5)), 0.5) == []


def test_oks_iou_values():
    rng = np.random.default_rng(2)
    g = np.concatenate([rng.uniform(0, 100, (17, 2)), np.ones((17, 1))], axis=1)
    d = np.stack([g, g + [[3.0, 4.0, 0.0]]])
    area = 1000.0
    ious = oks_iou(g.ravel(), d.reshape(2, -1), area, np.array([area, area]))
    expected = np.mean(np.exp(-25.0 / (2 * COCO_SIGMAS) ** 2 / (area + np.spacing(1)) / 2))
    np.testing.assert_allclose(ious, [1.0, expected])
    d[1, :, 2] = 0.1  # no joint above the threshold in d -> 0
    assert oks_iou(g, d, area, [area, area], in_vis_thre=0.2)[1] == 0.0


def test_duplicates_of_one_person_merge():
    rng = np.random.default_rng(3)
    person = np.concatenate([rng.uniform(100, 300, (17, 2)), np.full((17, 1), 0.9)], axis=1)
    other = person + [[150.0, 0.0, 0.0]]
    db = [{'keypoints': person + [[0.5, -0.5, 0.0]], 'score': 0.7, 'area': 9000.0},
          {'keypoints': other, 'score': 0.6, 'area': 9000.0},
          {'keypoints': person, 'score': 0.8, 'area': 9000.0}]
    assert oks_nms(db, 0.9) == [2, 1]
    assert oks_nms([], 0.9) == []


def test_numpy_fallback_warns_once(monkeypatch, caplog):
    monkeypatch.setattr(nms_module, 'compiled_kernels', None)
    monkeypatch.setattr(nms_module, '_warned_fallback', False)
    db = random_poses(np.random.default_rng(4), 10)
    with caplog.at_level(logging.WARNING, logger='hsrnet.nms.nms'):
        first = nms_module.oks_nms(db, 0.9)
        nms_module.oks_nms(db, 0.9)
        nms_module.nms(np.array([[0, 0, 5, 5, 1.0]]), 0.5)
    warnings = [r for r in caplog.records if 'not built' in r.getMessage()]
    assert len(warnings) == 1 and 'make' in warnings[0].getMessage()
    assert first == nms_module.oks_nms(db, 0.9, backend='numpy')
    with pytest.raises(ImportError, match='make'):
        nms_module.oks_nms(db, 0.9, backend='cython')
