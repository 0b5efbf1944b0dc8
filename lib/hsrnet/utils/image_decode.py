"""Image files to BGR uint8 arrays: the one place where the datasets and infer.py
decode pictures.

A JPEG goes through simplejpeg when it is installed: the libjpeg-turbo that OpenCV
also uses, with the same settings (accurate integer IDCT, smooth chroma upsampling),
so the same pixels, about 10% faster, from the bytes already read (the file is read
once: the completeness check and the header come from the same bytes). Anything
else, and a JPEG simplejpeg refuses (CMYK), goes through OpenCV. EXIF orientation
is ignored either way: COCO's annotations refer to the stored pixels.

`factor` 2, 4 or 8 decodes a JPEG at that fraction of its size with libjpeg's DCT
scaling (DATASET.REDUCED_DECODE); other files are decoded whole.
"""
import logging

import cv2
import numpy as np

from hsrnet.utils.errors import DataError

try:
    import simplejpeg
except ImportError:   # optional: OpenCV decodes the same pixels, a little slower
    simplejpeg = None

logger = logging.getLogger(__name__)
_warned = set()   # files already warned about, in this process

OPENCV_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
                4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}

# The first bytes of a file, and the last bytes of a complete one: JPEG's
# end-of-image marker, PNG's IEND chunk.
JPEG_START, JPEG_END = b'\xff\xd8', b'\xff\xd9'
PNG_START, PNG_END = b'\x89PNG', b'IEND\xaeB`\x82'
TAIL_BYTES = 1024   # a JPEG's marker may be followed by a little padding
_SOF_MARKERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _missing_end(head, tail):
    """'JPEG' or 'PNG' when the file whose first bytes are `head` and last
    TAIL_BYTES bytes are `tail` lacks its end marker, else None."""
    if head.startswith(JPEG_START):
        return 'JPEG' if JPEG_END not in tail else None
    if head.startswith(PNG_START):
        return 'PNG' if PNG_END not in tail else None
    return None


def _truncated(path, kind, size):
    return DataError('truncated or corrupt image {}: no {} end marker ({} bytes; the file '
                     'was cut short?)'.format(path, kind, size))


def jpeg_size(data):
    """(width, height) from a JPEG's frame header in `data` (bytes), or None when
    `data` does not start like a JPEG one can read that way."""
    if data[:2] != JPEG_START:
        return None
    pos = 2
    while pos + 9 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], 'big')
        if marker in _SOF_MARKERS:
            return (int.from_bytes(data[pos + 7:pos + 9], 'big'),
                    int.from_bytes(data[pos + 5:pos + 7], 'big'))
        pos += 2 + length
    return None


def jpeg_width(path):
    """Width in pixels from a JPEG file's frame header, or None when the file is
    not a JPEG one can read that way (or cannot be read)."""
    try:
        with open(path, 'rb') as f:
            size = jpeg_size(f.read(1 << 16))
    except OSError:
        return None
    return None if size is None else size[0]


def decode_image(data, factor=1, name='image'):
    """(image, full width) of the encoded file `data` (bytes): image BGR uint8
    (H, W, 3), at 1/factor size for a JPEG (factor 1, 2, 4 or 8), whole for any other
    format; full width, the width of the stored picture (which the flip needs).
    None when the bytes cannot be decoded. A JPEG whose data libjpeg finds corrupt
    is decoded as OpenCV decodes it (as before), with a warning naming `name`."""
    size = jpeg_size(data)
    if size is not None and simplejpeg is not None:
        width, height = size
        try:
            image = simplejpeg.decode_jpeg(data, colorspace='BGR', min_width=-(-width // factor),
                                           min_height=-(-height // factor))
            return image, width
        except ValueError as error:   # CMYK (OpenCV converts it), or damaged data
            if str(error).startswith('Corrupt JPEG data') and name not in _warned:
                _warned.add(name)
                logger.warning('%s: %s (libjpeg); decoded anyway, parts of it may be grey or '
                               'garbled', name, error)
    flags = OPENCV_FLAGS[factor if size is not None else 1] | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags) if len(data) else None
    if image is None:
        return None
    return image, size[0] if size is not None else image.shape[1]


def read_image_file(path, factor=1):
    """decode_image of the file `path`, checked first (DataError for a file cut
    short); DataError when it cannot be decoded. FileNotFoundError when missing."""
    with open(path, 'rb') as f:
        data = f.read()
    kind = _missing_end(data[:8], data[-TAIL_BYTES:])
    if kind:
        raise _truncated(path, kind, len(data))
    decoded = decode_image(data, factor, name=path)
    if decoded is None:
        raise DataError('cannot decode image {} (corrupt or not an image file)'.format(path))
    return decoded
