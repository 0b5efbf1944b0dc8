"""COCO keypoint AP: rescoring, OKS-NMS per image, the results json and COCOeval."""
import contextlib
import io
import logging
import os
from collections import OrderedDict

import numpy as np
from pycocotools.cocoeval import COCOeval

from hsrnet.nms.nms import oks_nms
from hsrnet.utils.arrays import group_indices
from hsrnet.utils.fileio import write_json_atomically

from .predictions import format_name_values

logger = logging.getLogger(__name__)

STATS_NAMES = ['AP', 'AP .5', 'AP .75', 'AP (M)', 'AP (L)',
               'AR', 'AR .5', 'AR .75', 'AR (M)', 'AR (L)']
PERSON_CATEGORY = 1


@contextlib.contextmanager
def stdout_to_log(level):
    """pycocotools prints its progress; send it to the log instead."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            yield
    finally:
        for line in captured.getvalue().splitlines():
            if line.strip():
                logger.log(level, line)


def rescore(maxvals, box_scores, in_vis_thre):
    """Person score = box score x mean of the joint maxvals above in_vis_thre
    (0 when no joint is above). maxvals (N, J), box_scores (N,).

    In the original's dtypes, step by step: its maxvals are float32, summed joint
    after joint into a float32 score and divided in float32 (numpy's promotion of
    a float32 scalar with Python numbers), then multiplied by the float64 box
    score. A cumulative sum is that sequential order, vectorised over persons."""
    maxvals = np.asarray(maxvals, dtype=np.float32)
    above = maxvals > np.float32(in_vis_thre)
    count = above.sum(axis=1)
    total = np.cumsum(np.where(above, maxvals, np.float32(0)), axis=1, dtype=np.float32)
    total = total[:, -1] if maxvals.shape[1] else np.zeros(len(maxvals), np.float32)
    mean = np.where(count > 0, total / np.maximum(count, 1).astype(np.float32), np.float32(0))
    return mean.astype(np.float64) * np.asarray(box_scores, dtype=np.float64)


def oks_nms_per_image(keypoints, areas, scores, image_ids, oks_thre, sigmas=None):
    """Indices of the poses (N, J, 3) that survive OKS-NMS within their image,
    image by image in order of first appearance, best first within an image."""
    kept = []
    for members in group_indices(image_ids):
        kpts_db = [{'keypoints': keypoints[i], 'score': scores[i], 'area': areas[i]}
                   for i in members]
        kept.extend(members[oks_nms(kpts_db, oks_thre, sigmas=sigmas)])
    return np.asarray(kept, dtype=np.int64)


class COCOKeypointMetric:
    """COCO keypoint evaluation of one image set.

    coco: the pycocotools COCO object of the annotation file; image_ids: a
    mapping from image path (as in `PosePredictions.images`) to image id;
    sigmas: the per-joint OKS constants (None: COCO's 17).
    """

    stats_names = STATS_NAMES
    title = 'COCO keypoints'

    def __init__(self, coco, image_ids, image_set, oks_thre, in_vis_thre, sigmas=None,
                 annotation_file=''):
        self.coco = coco
        self.image_ids = image_ids
        self.image_set = image_set
        self.oks_thre = oks_thre
        self.in_vis_thre = in_vis_thre
        self.sigmas = None if sigmas is None else np.asarray(sigmas, dtype=np.float64)
        self.annotation_file = annotation_file

    def results_file(self, output_dir):
        return os.path.join(output_dir, 'results',
                            'keypoints_{}_results.json'.format(self.image_set))

    def ids_of(self, images):
        try:
            return np.array([self.image_ids[p] for p in images], dtype=np.int64)
        except KeyError as e:
            raise ValueError('evaluate: {} is not an image of set {!r} (image paths must be '
                             'those given in meta["image"])'.format(e.args[0], self.image_set)
                             ) from None

    def results(self, predictions):
        """The COCO results records of the poses kept after rescoring and OKS-NMS."""
        image_ids = self.ids_of(predictions.images)
        keypoints = predictions.keypoints
        scores = rescore(keypoints[:, :, 2], predictions.box_scores, self.in_vis_thre)
        kept = oks_nms_per_image(keypoints, predictions.areas, scores, image_ids,
                                 self.oks_thre, self.sigmas)
        return [{'image_id': int(image_ids[i]), 'category_id': PERSON_CATEGORY,
                 'keypoints': keypoints[i].reshape(-1).tolist(), 'score': float(scores[i])}
                for i in kept]

    def evaluate(self, predictions, output_dir):
        """Write <output_dir>/results/keypoints_<set>_results.json and score it.
        Returns (name_values, AP); a set without annotations (test-dev) is only
        written: ({'Null': 0}, 0)."""
        predictions.check_finite()   # the results json never holds NaN or infinity
        results = self.results(predictions)
        res_file = self.results_file(output_dir)
        os.makedirs(os.path.dirname(res_file), exist_ok=True)
        write_json_atomically(results, res_file)
        logger.info('=> %d of %d poses kept after OKS-NMS, written to %s',
                    len(results), len(predictions), res_file)
        if 'annotations' not in self.coco.dataset:
            logger.info('%s has no annotations: results written, no evaluation',
                        self.annotation_file)
            return {'Null': 0}, 0
        name_values = self.score(results)
        logger.info('%s, %s:\n%s', self.title, self.image_set, format_name_values(name_values))
        return name_values, name_values['AP']

    def score(self, results):
        """COCOeval of results records -> OrderedDict of `stats_names`."""
        if not results:
            logger.warning('no predictions to evaluate; every metric is 0')
            return OrderedDict((name, 0.0) for name in self.stats_names)
        with stdout_to_log(logging.DEBUG):
            detections = self.coco.loadRes(results)
        return self.summarize(detections)

    def summarize(self, detections):
        """The named numbers of loaded detections (COCO's ten)."""
        coco_eval = keypoint_cocoeval(self.coco, detections, self.sigmas, summary=logging.INFO)
        return OrderedDict(zip(self.stats_names, (float(v) for v in coco_eval.stats)))


def keypoint_cocoeval(coco, detections, sigmas=None, image_ids=None, summary=logging.DEBUG):
    """pycocotools' keypoint COCOeval of `detections` (coco.loadRes) against `coco`,
    evaluated, accumulated and summarised (its `stats`: AP, AP .5, AP .75, AP (M),
    AP (L), AR, ... at maxDets 20): with the per-joint OKS `sigmas` (None: COCO's),
    on the images `image_ids` only when given. Its printout goes to the log, the
    summary table at level `summary`."""
    with stdout_to_log(logging.DEBUG):
        coco_eval = COCOeval(coco, detections, 'keypoints')
        if sigmas is not None:
            coco_eval.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        if image_ids is not None:
            coco_eval.params.imgIds = sorted(image_ids)
        coco_eval.evaluate()
        coco_eval.accumulate()
    with stdout_to_log(summary):
        coco_eval.summarize()
    return coco_eval
