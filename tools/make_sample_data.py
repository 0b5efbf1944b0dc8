"""Generate the project's small synthetic person-keypoint dataset in COCO's layout.

    python tools/make_sample_data.py [--out data/sample] [--seed 0]
                                     [--train-images N] [--val-images N]
                                     [--layout coco|crowdpose|ochuman]
    python tools/make_sample_data.py --video data/sample/video.mp4 [--seconds 3] [--fps 10]

Writes annotations/person_keypoints_{train,val}2017.json,
images/{train2017,val2017}/<12-digit id>.jpg and
person_detection_results/COCO_val2017_detections_AP_H_56_person.json under
--out, so a COCO experiment yaml trains on it with `DATASET.ROOT <out>`.
The same arguments always give the same bytes. See lib/hsrnet/samples/synthetic.py
for what the images show. --layout crowdpose / ochuman writes the same scenes as
those datasets' files instead (annotations/crowdpose_{trainval,test}.json with 14 joints
and a crowd index per image, or annotations/ochuman_coco_format_{val,test}_range_0.00_1.00.json;
images/<file_name>; no detector boxes; lib/hsrnet/samples/crowd_layouts.py), for
experiments/crowdpose and experiments/ochuman.

With --video FILE.mp4 it writes instead a short video of moving figures (and
FILE_boxes.json, their boxes per frame) for the video path and the tracker:
see lib/hsrnet/samples/synthetic_video.py.
"""
import argparse
import logging
import sys
import time

import _paths  # noqa: F401,E402  (first: this clone's lib/ on sys.path)

from hsrnet.samples.crowd_layouts import SAMPLE_LAYOUTS  # noqa: E402
from hsrnet.samples.synthetic import (DEFAULT_TRAIN_IMAGES, DEFAULT_VAL_IMAGES,  # noqa: E402
                               generate)
from hsrnet.samples.synthetic_video import (DEFAULT_FIGURES, DEFAULT_FPS, DEFAULT_SECONDS,  # noqa: E402
                                write_video)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default='data/sample', help='dataset root to write')
    parser.add_argument('--seed', type=int, default=0, help='random seed (>= 0)')
    parser.add_argument('--train-images', type=int, default=DEFAULT_TRAIN_IMAGES,
                        help='number of training images')
    parser.add_argument('--val-images', type=int, default=DEFAULT_VAL_IMAGES,
                        help='number of validation images')
    parser.add_argument('--jpeg-quality', type=int, default=90, help='JPEG quality, 1-100')
    parser.add_argument('--layout', choices=sorted(SAMPLE_LAYOUTS), default='coco',
                        help="the files' layout: COCO's (default), CrowdPose's (splits "
                             "trainval and test) or OCHuman's (val and test: --train-images "
                             "gives val's count, --val-images test's)")
    parser.add_argument('--video', metavar='FILE.mp4',
                        help='write a synthetic video (moving figures) instead of the dataset')
    parser.add_argument('--seconds', type=float, default=DEFAULT_SECONDS,
                        help='video length (default %(default)s)')
    parser.add_argument('--fps', type=int, default=DEFAULT_FPS,
                        help='video frames per second (default %(default)s)')
    parser.add_argument('--figures', type=int, default=DEFAULT_FIGURES,
                        help='people in the video (default %(default)s)')
    return parser.parse_args(argv)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    args = parse_args(argv)
    start = time.time()
    if args.video:
        try:
            info = write_video(args.video, seed=args.seed, seconds=args.seconds, fps=args.fps,
                               figures=args.figures)
        except (ValueError, OSError) as err:
            print('make_sample_data: error: {}'.format(err), file=sys.stderr)
            return 2
        print('Wrote {} frames with {} figures to {} and their boxes to {} ({:.1f} s)'.format(
            info['frames'], info['figures'], args.video, info['boxes_file'],
            time.time() - start))
        return 0
    try:
        summary = generate(args.out, seed=args.seed, train_images=args.train_images,
                           val_images=args.val_images, jpeg_quality=args.jpeg_quality,
                           layout=SAMPLE_LAYOUTS[args.layout]())
    except (ValueError, OSError) as err:
        print('make_sample_data: error: {}'.format(err), file=sys.stderr)
        return 2
    total = sum(s['persons'] for s in summary.values())
    print('Wrote {} persons with keypoints in {} images to {} ({:.1f} s)'.format(
        total, sum(s['images'] for s in summary.values()), args.out, time.time() - start))
    return 0


if __name__ == '__main__':
    sys.exit(main())
