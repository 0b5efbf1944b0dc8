"""Inputs and outputs of pose_estimation/infer.py: an image, a folder of images,
a video file or a webcam in; pictures, an mp4 and json out.

Every problem with an input is a ValueError (or FileNotFoundError) whose message
names the file and the problem, for a one-line report. Outputs are written under
temporary names and renamed when complete (`StagedOutput`), so an interrupted or
failed run never leaves a file that looks finished.
"""
import json
import os
import secrets
import shutil
from collections import Counter

import cv2
import numpy as np

from hsrnet.utils.errors import DataError
from hsrnet.utils.fileio import write_error
from hsrnet.utils.image_decode import decode_image

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg')
DEFAULT_FPS = 25.0


def read_image(path):
    """BGR uint8 image of `path`; ValueError naming the file when it cannot be read."""
    if not os.path.isfile(path):
        raise FileNotFoundError('{}: image not found'.format(path))
    with open(path, 'rb') as f:
        decoded = decode_image(f.read())
    if decoded is None:
        raise ValueError('{}: cannot read this image (corrupt or not an image file)'.format(path))
    return decoded[0]


def drawing_names(files):
    """{input picture: the name of its drawing}: <stem>_pose.jpg, or, for pictures
    that share a stem (x.jpg and x.png), <file name>_pose.jpg (x.jpg_pose.jpg,
    x.png_pose.jpg), so that each gets its own."""
    stems = [os.path.splitext(name)[0] for name in files]
    shared = Counter(stems)
    return {name: (name if shared[stem] > 1 else stem) + '_pose.jpg'
            for name, stem in zip(files, stems)}


def check_outputs(out_dir, planned, inputs):
    """ValueError when two of the `planned` outputs ({file name: what it is}, in
    `out_dir`) would share a name, or one would replace a file of `inputs` (paths:
    the pictures, the video, the boxes, the model, ...)."""
    names = list(planned)
    if len(set(names)) != len(names):
        twice = [name for name, count in Counter(names).items() if count > 1][0]
        raise ValueError('{}: two outputs would be named {}'.format(out_dir, twice))

    def identity(path):
        status = os.stat(path)
        return status.st_dev, status.st_ino
    taken = {identity(path): path for path in inputs if path and os.path.isfile(path)}
    for name, what in planned.items():
        target = os.path.join(out_dir, name)
        if os.path.isfile(target) and identity(target) in taken:
            raise ValueError('--out {}: {} ({}) would replace the input {}; choose another '
                             'output folder'.format(out_dir, name, what,
                                                    taken[identity(target)]))


def image_id_of(file_name, index):
    """COCO-style id of an input picture: its name's digits (000000900001.jpg ->
    900001) when the stem is a number, else its position in the input."""
    stem = os.path.splitext(os.path.basename(file_name))[0]
    return int(stem) if stem.isdigit() else index


class Frame:
    """One input picture: `image` (BGR uint8), `index` (0, 1, ...), `image_id`,
    and `file_name` (pictures) or `frame` (video)."""
    __slots__ = ('image', 'index', 'image_id', 'file_name', 'frame')

    def __init__(self, image, index, image_id, file_name=None, frame=None):
        self.image, self.index, self.image_id = image, index, image_id
        self.file_name, self.frame = file_name, frame


class Source:
    """What --input names. kind: 'image', 'folder', 'video' or 'webcam'.
    Iterating yields Frames; `count` is the number of frames when known."""

    def __init__(self, spec):
        self.spec = spec = str(spec)
        self.fps = DEFAULT_FPS
        self.count = None
        if spec.isdigit() and not os.path.exists(spec):
            self.kind, self.path = 'webcam', int(spec)
            self._open_capture()
        elif os.path.isdir(spec):
            self.kind, self.path = 'folder', spec
            self.files = sorted(f for f in os.listdir(spec)
                                if f.lower().endswith(IMAGE_EXTENSIONS)
                                and os.path.isfile(os.path.join(spec, f)))
            if not self.files:
                raise ValueError('{}: no image files in this folder (looked for {})'.format(
                    spec, ' '.join(IMAGE_EXTENSIONS)))
            self.count = len(self.files)
        elif not os.path.exists(spec):
            raise FileNotFoundError('{}: no such file or folder'.format(spec))
        elif spec.lower().endswith(VIDEO_EXTENSIONS):
            self.kind, self.path = 'video', spec
            self._open_capture()
        else:
            self.kind, self.path = 'image', spec
            self.files = [os.path.basename(spec)]
            self.count = 1

    @property
    def is_video(self):
        return self.kind in ('video', 'webcam')

    @property
    def name(self):
        """A name for outputs: the file's stem, or webcam<N>."""
        if self.kind == 'webcam':
            return 'webcam{}'.format(self.path)
        return os.path.splitext(os.path.basename(os.path.normpath(self.path)))[0]

    def _open_capture(self):
        capture = cv2.VideoCapture(self.path)
        what = 'webcam {}'.format(self.path) if self.kind == 'webcam' else self.path
        if not capture.isOpened():
            raise ValueError('{}: cannot open this {}'.format(
                what, 'webcam' if self.kind == 'webcam' else 'video (corrupt or unknown format)'))
        ok, first = capture.read()
        if not ok or first is None:
            capture.release()
            raise ValueError('{}: the video has no frames that can be read'.format(what))
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and np.isfinite(fps) and 0 < fps < 1000 else DEFAULT_FPS
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.count = count if count > 0 and self.kind == 'video' else None
        self._capture, self._first = capture, first

    def frame_size(self):
        """(width, height) of a video's frames."""
        return self._first.shape[1], self._first.shape[0]

    def __iter__(self):
        if self.is_video:
            yield from self._frames()
            return
        folder = self.path if self.kind == 'folder' else os.path.dirname(self.path)
        for index, name in enumerate(self.files):
            image = read_image(os.path.join(folder, name))
            yield Frame(image, index, image_id_of(name, index), file_name=name)

    def _frames(self):
        """The video's frames; a video file that ends before the frame count its
        header announces (cut short: a truncated AVI still opens) is a DataError
        after its last readable frame, as a truncated mp4, which does not open."""
        capture, image = self._capture, self._first
        index = 0
        try:
            while image is not None:
                yield Frame(image, index, index, frame=index)
                index += 1
                ok, image = capture.read()
                if not ok:
                    image = None
        finally:
            capture.release()
        if self.count and index < self.count:
            raise DataError('{}: truncated video: only {} of the {} frames its header announces '
                            'could be read (the file was cut short?)'.format(
                                self.path, index, self.count))


class StagedOutput:
    """Files written into a hidden staging folder inside `out_dir`, moved to
    their final names by `commit()`; `discard()` removes them all. The folder is
    created and tested for writing at once, so an unwritable output is reported
    before any work is done."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        try:
            os.makedirs(out_dir, exist_ok=True)
            self.stage = os.path.join(out_dir, '.infer-{}.tmp'.format(secrets.token_hex(4)))
            os.mkdir(self.stage)
        except OSError as err:
            raise ValueError('{}: cannot write the output folder ({})'.format(
                out_dir, err.strerror or err)) from None
        self.names = []

    def path(self, name):
        """Where to write the file that will become out_dir/name (each name once)."""
        if name in self.names:
            raise ValueError('{}: written twice in one run'.format(
                os.path.join(self.out_dir, name)))
        self.names.append(name)
        return os.path.join(self.stage, name)

    def _write(self, name, data):
        """Bytes to the staged file of `name`; a failed write (a full disk) is a
        WriteError naming the output file and the OS error."""
        try:
            with open(self.path(name), 'wb') as f:
                f.write(data)
        except OSError as error:
            raise write_error(os.path.join(self.out_dir, name), error) from None

    def write_image(self, name, image):
        ext = os.path.splitext(name)[1] or '.jpg'
        ok, data = cv2.imencode(ext, image)
        if not ok:
            raise ValueError('{}: OpenCV cannot encode a {} picture'.format(name, ext))
        self._write(name, data.tobytes())

    def write_json(self, name, obj):
        """json of `obj`; NaN or infinity in it is a ValueError (json has neither)."""
        try:
            text = json.dumps(obj, allow_nan=False)
        except ValueError as error:
            raise ValueError('{}: not written: {}'.format(
                os.path.join(self.out_dir, name), error)) from None
        self._write(name, text.encode('utf-8'))

    def video_writer(self, name, fps, size):
        writer = cv2.VideoWriter(self.path(name), cv2.VideoWriter_fourcc(*'mp4v'), float(fps),
                                 tuple(int(v) for v in size))
        if not writer.isOpened():
            raise ValueError('{}: OpenCV cannot write an mp4 video'.format(
                os.path.join(self.out_dir, name)))
        return writer

    def commit(self):
        """Move every staged file to its final name (json last: it marks the end)."""
        ordered = sorted(self.names, key=lambda n: n.endswith('.json'))
        for name in ordered:
            os.replace(os.path.join(self.stage, name), os.path.join(self.out_dir, name))
        self.discard()
        return [os.path.join(self.out_dir, n) for n in ordered]

    def discard(self):
        shutil.rmtree(self.stage, ignore_errors=True)
