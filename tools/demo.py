"""`make demo`: the whole pipeline on the synthetic sample, on the CPU.

    python tools/demo.py [--cfg experiments/sample/hsrnet59_demo.yaml] [KEY VALUE ...]

1. generates the sample dataset (tools/make_sample_data.py) unless it is there
   and newer than its generator,
2. trains the yaml's network from scratch (pose_estimation/train.py),
3. validates the result with flip test on the sample's detector boxes
   (pose_estimation/valid.py --flip-test --use-detect-bbox), printing the COCO table,
4. draws the predicted skeletons on a few validation images
   (<output dir>/demo_predictions.jpg).
Each step is the ordinary command, printed before it runs; KEY VALUE config
overrides go to train.py and valid.py alike. The last line gives the time and the
CPU it ran on: what a report of the demo's speed needs.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections import defaultdict

import cv2
import numpy as np

from _paths import ROOT  # noqa: E402  (first: this clone's lib/ on sys.path)

from hsrnet.config import get_model_name  # noqa: E402
from hsrnet.runner.cli import add_opts, config_overrides, load_fresh_config  # noqa: E402
from hsrnet.runner.launch import SETUP_ERRORS, report_error  # noqa: E402
from hsrnet.runner.setup import output_dirs  # noqa: E402
from hsrnet.data import experiment_keypoints  # noqa: E402
from hsrnet.engine.precision import describe_cpu  # noqa: E402
from hsrnet.utils.vis import draw_skeleton, image_grid  # noqa: E402

DEFAULT_CFG = 'experiments/sample/hsrnet59_demo.yaml'
GENERATOR_FILES = ('tools/make_sample_data.py', 'lib/hsrnet/samples/synthetic.py',
                   'lib/hsrnet/samples/figures.py')
SAMPLE_FILES = ('annotations/person_keypoints_train2017.json',
                'annotations/person_keypoints_val2017.json')
PICTURE_IMAGES = 6
PICTURE_CELL = 320          # each image letterboxed into a square of this size
MIN_PERSON_SCORE = 0.5       # the picture shows confident poses only (--min-score)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--cfg', default=DEFAULT_CFG, help='experiment yaml')
    parser.add_argument('--min-score', type=float, default=MIN_PERSON_SCORE,
                        help='the picture draws persons scoring at least this '
                             '(default %(default)s)')
    add_opts(parser)
    return parser.parse_args()


def sample_is_current(cfg):
    """The sample exists and is newer than the code that generates it."""
    paths = [os.path.join(cfg.DATASET.ROOT, f) for f in SAMPLE_FILES] + [cfg.TEST.COCO_BBOX_FILE]
    if not all(os.path.isfile(p) for p in paths):
        return False
    generated = min(os.path.getmtime(p) for p in paths)
    return all(os.path.getmtime(os.path.join(ROOT, f)) < generated for f in GENERATOR_FILES)


STOPPED = (130, 143)   # a step stopped by SIGINT / SIGTERM (its checkpoint saved)


def run(command):
    """Run a step with this interpreter, its output going to the terminal. A stopped
    step ends the demo with the demo's own resume command."""
    print('\n$ ' + ' '.join(command), flush=True)
    step = subprocess.Popen([sys.executable] + command, cwd=ROOT)
    try:
        status = step.wait()
    except KeyboardInterrupt:   # Ctrl-C reached the step too: it saves and stops
        status = step.wait()
    if status in STOPPED:
        resume = [os.path.basename(sys.executable)] + [shlex.quote(a) for a in sys.argv]
        if 'TRAIN.RESUME' not in sys.argv:
            resume += ['TRAIN.RESUME', 'true']
        print('demo: stopped; the demo goes on from where it stopped with: {}'.format(
            ' '.join(resume)), file=sys.stderr)
        sys.exit(status)
    if status != 0:
        sys.exit('demo: step failed (exit status {}): {}'.format(status, ' '.join(command)))


def read_ap(output_dir, image_set):
    """AP from the metrics file valid.py writes beside the results."""
    with open(os.path.join(output_dir, 'results', 'metrics_{}.json'.format(image_set))) as f:
        return json.load(f)['metrics']['AP']


def letterbox(image, size):
    height, width = image.shape[:2]
    zoom = size / max(height, width)
    resized = cv2.resize(image, (round(width * zoom), round(height * zoom)))
    cell = np.zeros((size, size, 3), dtype=np.uint8)
    top, left = (size - resized.shape[0]) // 2, (size - resized.shape[1]) // 2
    cell[top:top + resized.shape[0], left:left + resized.shape[1]] = resized
    return cell


def draw_predictions(cfg, results_file, picture_file, min_score=MIN_PERSON_SCORE):
    """Skeletons of the kept poses on the first validation images that have any."""
    with open(results_file) as f:
        results = json.load(f)
    skeleton = experiment_keypoints(cfg).skeleton
    by_image = defaultdict(list)
    for person in results:
        if person['score'] >= min_score:
            by_image[person['image_id']].append(np.reshape(person['keypoints'], (-1, 3)))
    cells = []
    for image_id in sorted(by_image)[:PICTURE_IMAGES]:
        path = os.path.join(cfg.DATASET.ROOT, 'images', cfg.DATASET.TEST_SET,
                            '{:012d}.jpg'.format(image_id))
        image = cv2.imread(path)
        for keypoints in by_image[image_id]:
            draw_skeleton(image, keypoints, threshold=cfg.TEST.IN_VIS_THRE, skeleton=skeleton)
        cells.append(letterbox(image, PICTURE_CELL))
    if cells:
        cv2.imwrite(picture_file, image_grid(np.stack(cells), ncols=3))
    return len(cells)


def main():
    args = parse_args()
    start = time.time()
    os.chdir(ROOT)   # --cfg and the yaml's relative paths are the repository's
    try:
        cfg = load_fresh_config(args)
    except SETUP_ERRORS as error:
        return report_error(error, 2)
    overrides = config_overrides(args.opts)
    output_dir = output_dirs(cfg, args.cfg)[0]
    full_arch_name = get_model_name(cfg)[1]

    if sample_is_current(cfg):
        print('sample data in {} is up to date'.format(cfg.DATASET.ROOT))
    else:
        run(['tools/make_sample_data.py', '--out', cfg.DATASET.ROOT])
    run(['pose_estimation/train.py', '--cfg', args.cfg] + overrides)
    trained = time.time()
    run(['pose_estimation/valid.py', '--cfg', args.cfg,
         '--model-file', os.path.join(output_dir, 'final_state.pth.tar'),
         '--flip-test', '--use-detect-bbox',
         '--coco-bbox-file', cfg.TEST.COCO_BBOX_FILE] + overrides)
    results_file = os.path.join(output_dir, 'results',
                                'keypoints_{}_results.json'.format(cfg.DATASET.TEST_SET))
    picture_file = os.path.join(output_dir, 'demo_predictions.jpg')
    drawn = draw_predictions(cfg, results_file, picture_file, args.min_score)

    print('\ndemo: {} trained from scratch; AP {:.3f} on the sample {} with flip test and '
          'detector boxes'.format(full_arch_name, read_ap(output_dir, cfg.DATASET.TEST_SET),
                                  cfg.DATASET.TEST_SET))
    print('demo: results {}'.format(results_file))
    if drawn:
        print('demo: predicted skeletons on {} images: {}'.format(drawn, picture_file))
    print('demo: {:.0f} s in all ({:.0f} s up to the end of training) on {}'.format(
        time.time() - start, trained - start, describe_cpu()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
