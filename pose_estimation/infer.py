"""Run a trained pose network on your own pictures, folders, videos or a webcam.

    python pose_estimation/infer.py --cfg EXPERIMENT.yaml --model-file CKPT|MODEL.onnx \\
        --input PATH --out DIR [--boxes DETECTIONS.json | --whole-image | --detector D.onnx] \\
        [--flip-test] [--smooth] [opts KEY VALUE ...]

PATH is an image, a folder of images, a video file or a webcam index (0, 1, ...).
Person boxes come from --boxes (a COCO results json matched by "file_name" or
"image_id"; for a video image_id is the frame index), --whole-image (one box per
picture), --detector (a person detector in a local ONNX file: post-NMS rows,
raw YOLOv8/YOLO11 output or mmdeploy's dets + labels; docs/infer.md), or by
default OpenCV's HOG people detector (when the installed OpenCV has it). On
video, --smooth runs a One-Euro filter over each tracked person's joints.
Writes into DIR the pictures (<name>_pose.jpg) or the video (<name>_pose.mp4)
with the skeletons drawn, and DIR/keypoints.json: COCO results records
(image_id, category_id, keypoints, score, bbox) with "file_name" (pictures) or
"frame" and "track_id" (video; persons are tracked across frames). Pictures
that share a name stem (x.jpg, x.png) are drawn as x.jpg_pose.jpg and
x.png_pose.jpg. Everything is written under temporary names and renamed at the
end: a failed or stopped run (Ctrl-C, SIGTERM: status 130 / 143) leaves nothing
that looks complete, and a run whose outputs would replace one of its inputs
(--out the input folder, with a <name>_pose.jpg there) is refused before any work.
"""
import dataclasses
import os
import signal
import sys
import time

import _init_paths  # noqa: F401  (puts lib/ on sys.path)

import numpy as np

from hsrnet.apps.estimator import PoseEstimator
from hsrnet.apps.detector_layouts import LAYOUT_CHOICES
from hsrnet.apps.person_boxes import BoxesFile, HogPeopleDetector, OnnxPersonDetector, WholeImage
from hsrnet.apps.smoothing import DEFAULTS as SMOOTH_DEFAULTS, KeypointSmoother, check_params
from hsrnet.apps.tracking import PoseTracker
from hsrnet.runner.cli import add_opts, base_parser, load_fresh_config
from hsrnet.utils.errors import ConfigError, DataError, NonFinitePredictionError
from hsrnet.apps.media import Source, StagedOutput, check_outputs, drawing_names, image_id_of
from hsrnet.utils.preemption import exit_status, interrupt_at_once
from hsrnet.utils.vis import draw_poses

INFER_FLAGS = {
    'flip_test': ('TEST.FLIP_TEST', bool),
    'post_process': ('TEST.POST_PROCESS', bool),
}
KEYPOINTS_FILE = 'keypoints.json'
SETUP_STATUS, RUN_STATUS = 2, 1


def parse_args(argv=None):
    parser = base_parser('Estimate poses on your own pictures or videos', common_flags=False,
                         cfg_from_checkpoint=True)
    parser.add_argument('--model-file', required=True,
                        help='checkpoint (.pth, .pth.tar; ours or the original\'s) or an '
                             '.onnx file from tools/export_onnx.py')
    parser.add_argument('--input', required=True,
                        help='an image, a folder of images, a video file or a webcam index')
    parser.add_argument('--out', required=True, help='output folder')
    boxes = parser.add_mutually_exclusive_group()
    boxes.add_argument('--boxes', help='person boxes: a COCO results json (bbox, score, '
                                       'image_id or file_name)')
    boxes.add_argument('--whole-image', action='store_true',
                       help='one box per picture: the whole picture (single persons)')
    boxes.add_argument('--detector', help='a person detector as an ONNX file: post-NMS rows '
                                          '(1, N, 6|5), raw YOLOv8/YOLO11 (1, 4+C, A) or '
                                          'dets (1, N, 5) + labels (1, N) (docs/infer.md)')
    parser.add_argument('--detector-layout', choices=LAYOUT_CHOICES, default='auto',
                        help="how to read --detector's outputs (default auto: dets + labels "
                             'when there is such a pair, else rows when the last dimension '
                             'is 5 or 6, else yolo; so (1, 6, 6) is read as rows)')
    parser.add_argument('--detector-size', type=int, nargs=2, default=[640, 640],
                        metavar=('W', 'H'), help='input size of a detector whose size is not '
                                                 'fixed in the file (default 640 640)')
    parser.add_argument('--box-thre', type=float, default=0.3,
                        help='keep boxes with at least this score (default %(default)s)')
    parser.add_argument('--flip-test', action='store_true', default=None,
                        help='average with the mirrored crops (TEST.FLIP_TEST)')
    parser.add_argument('--post-process', action='store_true', default=None,
                        help='quarter-pixel refinement (TEST.POST_PROCESS)')
    parser.add_argument('--no-oks-nms', action='store_true',
                        help='keep poses that duplicate a better one (OKS > TEST.OKS_THRE)')
    parser.add_argument('--kpt-thre', type=float, default=None,
                        help='draw (and --smooth) joints scoring above this (default '
                             'TEST.IN_VIS_THRE)')
    parser.add_argument('--person-thre', type=float, default=0.0,
                        help='draw persons scoring at least this (default %(default)s: all); '
                             'keypoints.json keeps every person')
    parser.add_argument('--track', choices=('oks', 'iou'), default='oks',
                        help='match video persons across frames by pose OKS or box IoU')
    parser.add_argument('--smooth', action='store_true',
                        help='video: One-Euro filter over each tracked person\'s joints '
                             '(joints scoring at most --kpt-thre pass through unfiltered)')
    parser.add_argument('--smooth-params', type=float, nargs=3, default=None,
                        metavar=('MIN_CUTOFF', 'BETA', 'D_CUTOFF'),
                        help='the filter\'s parameters, implying --smooth: resting cutoff (Hz), '
                             'cutoff rise per person size per second of speed (Hz), cutoff of '
                             'the speed (Hz) (default {} {} {})'.format(*SMOOTH_DEFAULTS))
    parser.add_argument('--device', default='auto', help="'auto', 'cpu', 'cuda:0', ...")
    parser.add_argument('--precision', choices=('fp32', 'bf16', 'fp16'),
                        help='torch only; default: the yaml\'s AMP settings')
    parser.add_argument('--threads', type=int,
                        help='CPU threads of torch / onnxruntime (default: theirs)')
    parser.add_argument('--frames-per-batch', type=int, default=4,
                        help='video frames whose boxes share one forward pass')
    parser.add_argument('--no-draw', action='store_true', help='write keypoints.json only')
    parser.add_argument('--quiet', action='store_true', help='no progress line')
    add_opts(parser)
    return parser.parse_args(argv)


def box_source(args, source):
    if args.boxes:
        boxes = BoxesFile(args.boxes, min_score=args.box_thre)
        if source.is_video:
            known = [(None, i) for i in range(source.count or 1)] if source.count else \
                [(None, i) for i in boxes.by_id if isinstance(i, int) and i >= 0]
        else:
            known = [(name, image_id_of(name, i)) for i, name in enumerate(source.files)]
        boxes.check_inputs(known, args.input)
        return boxes
    if args.whole_image:
        return WholeImage()
    if args.detector:
        return OnnxPersonDetector(args.detector, min_score=args.box_thre,
                                  size=tuple(args.detector_size), layout=args.detector_layout)
    return HogPeopleDetector(min_score=args.box_thre)


def smoothing_params(args, source):
    """The One-Euro parameters of --smooth / --smooth-params, or None (no smoothing);
    ValueError naming the option when they do not fit."""
    if not (args.smooth or args.smooth_params):
        return None
    option = '--smooth-params' if args.smooth_params else '--smooth'
    if not source.is_video:
        raise ValueError('{}: smooths tracked persons across video frames; {} is {}'.format(
            option, args.input, 'a folder of pictures' if source.kind == 'folder'
            else 'a picture'))
    try:
        return check_params(*(args.smooth_params or SMOOTH_DEFAULTS))
    except ValueError as err:
        raise ValueError('--smooth-params: {}'.format(err)) from None


class Progress:
    """One line on stderr, rewritten: frames done, frames/s, persons."""

    def __init__(self, total, enabled):
        self.total, self.enabled = total, enabled
        self.start = time.time()
        self.frames = self.persons = 0
        self.last = 0.0
        self.shown = -1

    def update(self, frames, persons):
        self.frames += frames
        self.persons += persons
        now = time.time()
        if self.enabled and (now - self.last > 0.5 or self.frames == self.total):
            self.last = now
            self.shown = self.frames
            self._print(end='\r')

    def rates(self):
        elapsed = max(time.time() - self.start, 1e-9)
        return self.frames / elapsed, self.persons / elapsed

    def _print(self, end):
        fps, pps = self.rates()
        done = '{}/{}'.format(self.frames, self.total) if self.total else str(self.frames)
        bar = ''
        if self.total:
            filled = int(20 * self.frames / self.total)
            bar = '[' + '#' * filled + '.' * (20 - filled) + '] '
        print('{}{} frames  {:.1f} frames/s  {:.1f} persons/s'.format(bar, done, fps, pps),
              end=end, file=sys.stderr, flush=True)

    def close(self):
        if not self.enabled:
            return
        if self.shown != self.frames:
            self._print(end='')
        print(file=sys.stderr)

    def clear(self):
        """Wipe the progress line (before an error message)."""
        if self.enabled and self.last:
            print('\r' + ' ' * 79 + '\r', end='', file=sys.stderr, flush=True)


class Inference:
    """One run of infer.py: set up in __init__ (bad setup: ValueError and friends),
    run by run() into the staged output folder."""

    def __init__(self, args):
        self.args = args
        cfg = load_fresh_config(args, INFER_FLAGS, weights=args.model_file)
        if args.detector_layout != 'auto' and not args.detector:
            raise ValueError('--detector-layout {}: reads the outputs of --detector FILE.onnx, '
                             'which is not given'.format(args.detector_layout))
        self.source = Source(args.input)
        self.smoothing = smoothing_params(args, self.source)
        self.boxes = box_source(args, self.source)
        self.estimator = PoseEstimator(cfg, args.model_file, device=args.device,
                                       precision=args.precision, oks_nms=not args.no_oks_nms,
                                       threads=args.threads)
        self.cfg = self.estimator.cfg
        self.kpt_thre = self.cfg.TEST.IN_VIS_THRE if args.kpt_thre is None else args.kpt_thre
        self.drawings = drawing_names(self.source.files) if not self.source.is_video else {}
        check_outputs(args.out, self._planned_outputs(),
                      self._input_files() + [args.boxes, args.model_file, args.cfg,
                                             args.detector])
        self.output = StagedOutput(args.out)    # last: nothing is created on bad setup

    def _planned_outputs(self):
        """{file name: what it is} of every file this run will write."""
        planned = {}
        if not self.args.no_draw and self.source.is_video:
            planned[self.source.name + '_pose.mp4'] = 'the video drawn'
        elif not self.args.no_draw:
            planned = {name: 'the drawing of {}'.format(picture)
                       for picture, name in self.drawings.items()}
        planned[KEYPOINTS_FILE] = 'the keypoints'
        return planned

    def _input_files(self):
        if self.source.kind == 'webcam':
            return []
        if self.source.is_video:
            return [self.source.path]
        folder = self.source.path if self.source.kind == 'folder' else \
            os.path.dirname(self.source.path)
        return [os.path.join(folder, name) for name in self.source.files]

    def run(self):
        source, args = self.source, self.args
        print('infer: {} on {} ({}{}), boxes: {}'.format(
            self.estimator.describe(), args.input, source.kind,
            ', {} frames'.format(source.count) if source.count else '', self.boxes.name),
            flush=True)
        progress = self.progress = Progress(source.count,
                                            not args.quiet and (source.count or 2) > 1)
        try:
            records = self._video(progress) if source.is_video else self._pictures(progress)
            self.output.write_json(KEYPOINTS_FILE, records)
            written = self.output.commit()
        except BaseException:
            self.output.discard()
            progress.clear()
            raise
        progress.close()
        fps, pps = progress.rates()
        print('infer: {} persons in {} frames ({:.1f} frames/s, {:.1f} persons/s); wrote {}'
              .format(len(records), progress.frames, fps, pps,
                      ', '.join(written) if len(written) <= 3 else '{} files in {}'.format(
                          len(written), args.out)))
        return records

    @property
    def frames_done(self):
        progress = getattr(self, 'progress', None)
        return progress.frames if progress is not None else 0

    def _pictures(self, progress):
        records = []
        for frame in self.source:
            boxes = self.boxes(frame)
            persons = self.estimator.estimate(frame.image, boxes)
            for person in persons:
                records.append(dict(person.to_coco(frame.image_id), file_name=frame.file_name))
            if not self.args.no_draw:
                self.output.write_image(self.drawings[frame.file_name],
                                        self._draw(frame.image, persons))
            progress.update(1, len(persons))
        return records

    def _video(self, progress):
        source, records = self.source, []
        sigmas = self.estimator.keypoints.sigmas
        # joints without OKS constants (MPII's): boxes are matched instead
        method = self.args.track if sigmas is not None else 'iou'
        tracker = PoseTracker(method=method, sigmas=sigmas, vis_thre=self.kpt_thre)
        smoother = None if self.smoothing is None else KeypointSmoother(
            *self.smoothing, score_threshold=self.kpt_thre)
        writer = None if self.args.no_draw else self.output.video_writer(
            source.name + '_pose.mp4', source.fps, source.frame_size())
        batch = []
        try:
            try:
                for frame in source:
                    batch.append(frame)
                    if len(batch) >= max(1, self.args.frames_per_batch):
                        records += self._video_batch(batch, (tracker, smoother), writer,
                                                     progress)
                        batch = []
            except KeyboardInterrupt:
                if source.kind != 'webcam':
                    raise
                batch = []      # Ctrl-C ends a webcam run; what was done is kept
            records += self._video_batch(batch, (tracker, smoother), writer, progress)
        finally:
            if writer is not None:
                writer.release()
        if progress.frames == 0:
            raise DataError('{}: the video has no frames that can be read'.format(
                self.args.input))
        return records

    def _video_batch(self, frames, tracking, writer, progress):
        if not frames:
            return []
        tracker, smoother = tracking
        persons_of = self.estimator.estimate_many([f.image for f in frames],
                                                  [self.boxes(f) for f in frames])
        records = []
        for frame, persons in zip(frames, persons_of):
            keypoints = np.array([p.keypoints for p in persons]).reshape(len(persons), -1, 3)
            boxes = np.array([p.box for p in persons]).reshape(-1, 4)
            ids = tracker.update(keypoints, boxes)
            if smoother is not None:
                smoothed = smoother.update(ids, keypoints, boxes, frame.frame / self.source.fps)
                persons = [dataclasses.replace(p, keypoints=k) for p, k in zip(persons, smoothed)]
            for person, track_id in zip(persons, ids):
                records.append(dict(person.to_coco(frame.image_id), frame=frame.frame,
                                    track_id=int(track_id)))
            if writer is not None:
                writer.write(self._draw(frame.image, persons, ids))
            progress.update(1, len(persons))
        return records

    def _draw(self, image, persons, track_ids=None):
        picture = image.copy()
        shown = [i for i, p in enumerate(persons) if p.score >= self.args.person_thre]
        persons = [persons[i] for i in shown]
        track_ids = None if track_ids is None else [track_ids[i] for i in shown]
        labels = None if track_ids is not None else ['{:.2f}'.format(p.score) for p in persons]
        return draw_poses(picture, [p.keypoints for p in persons], [p.box for p in persons],
                          self.kpt_thre, track_ids, labels, self.estimator.keypoints.skeleton)


def main(argv=None):
    args = parse_args(argv)
    job = None
    try:
        with interrupt_at_once():     # SIGTERM as Ctrl-C: the staged files are removed
            try:
                job = Inference(args)
            except (ConfigError, ValueError, FileNotFoundError, OSError) as err:
                print('error: {}'.format(err), file=sys.stderr)
                return SETUP_STATUS
            job.run()
    except (DataError, ValueError, OSError, NonFinitePredictionError) as err:
        print('error: {}'.format(err), file=sys.stderr)
        return RUN_STATUS
    except KeyboardInterrupt as interrupt:
        signum = getattr(interrupt, 'signum', signal.SIGINT)
        done = '' if job is None else ' after {} frames'.format(job.frames_done)
        print('stopped: {}: interrupted{}; nothing written{}'.format(
            signal.Signals(signum).name, done, '' if job is None else
            ' (the temporary folder in {} was removed)'.format(args.out)), file=sys.stderr)
        return exit_status(signum)
    return 0


if __name__ == '__main__':
    sys.exit(main())
