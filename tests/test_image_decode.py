"""utils.image_decode: the pixels are OpenCV's whichever decoder runs."""
import cv2
import numpy as np
import pytest

from hsrnet.utils import image_decode
from hsrnet.utils.errors import DataError

ENCODINGS = {
    'baseline 4:2:0': ('.jpg', [cv2.IMWRITE_JPEG_QUALITY, 90]),
    'progressive': ('.jpg', [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
    '4:4:4': ('.jpg', [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]),
    '4:2:2': ('.jpg', [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422]),
    'grey': ('.jpg', []),
    'png': ('.png', []),
}


def encoded(kind, width=83, height=61, seed=0):
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (5, 5), 0)
    if kind == 'grey':
        image = image[:, :, 0]
    ext, params = ENCODINGS[kind]
    ok, data = cv2.imencode(ext, image, params)
    assert ok
    return data.tobytes()


def opencv(data, factor, is_jpeg):
    flags = image_decode.OPENCV_FLAGS[factor if is_jpeg else 1] | cv2.IMREAD_IGNORE_ORIENTATION
    return cv2.imdecode(np.frombuffer(data, np.uint8), flags)


@pytest.mark.parametrize('with_simplejpeg', [True, False])
@pytest.mark.parametrize('kind', sorted(ENCODINGS))
def test_decoded_pixels_are_opencvs(kind, with_simplejpeg, monkeypatch):
    if with_simplejpeg and image_decode.simplejpeg is None:
        pytest.skip('simplejpeg is not installed')
    if not with_simplejpeg:
        monkeypatch.setattr(image_decode, 'simplejpeg', None)
    for width, height in ((83, 61), (64, 48), (17, 9)):
        data = encoded(kind, width, height)
        for factor in (1, 2, 4, 8):
            image, full_width = image_decode.decode_image(data, factor)
            expected = opencv(data, factor, kind != 'png')
            assert full_width == width
            assert image.dtype == np.uint8 and image.shape == expected.shape
            assert np.array_equal(image, expected), (kind, width, height, factor)


def test_jpeg_size_and_undecodable_bytes():
    assert image_decode.jpeg_size(encoded('progressive', 83, 61)) == (83, 61)
    assert image_decode.jpeg_size(encoded('png')) is None
    assert image_decode.decode_image(b'not an image') is None
    assert image_decode.decode_image(b'') is None
    garbage = image_decode.JPEG_START + bytes(200)
    assert image_decode.decode_image(garbage) is None


def test_a_file_cut_short_is_a_data_error(tmp_path):
    data = encoded('baseline 4:2:0', 200, 150)
    path = tmp_path / 'cut.jpg'
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError, match='truncated or corrupt image .*cut.jpg'):
        image_decode.read_image_file(str(path))
    path.write_bytes(data)
    image, width = image_decode.read_image_file(str(path), 2)
    assert width == 200 and image.shape == (75, 100, 3)


def test_corrupt_jpeg_data_is_decoded_as_before_with_a_warning(tmp_path, caplog):
    if image_decode.simplejpeg is None:
        pytest.skip('simplejpeg is not installed (it is what tells)')
    data = bytearray(encoded('baseline 4:2:0', 320, 240))
    data[len(data) // 2:len(data) // 2 + 40] = bytes(40)   # damaged, end marker kept
    path = tmp_path / 'damaged.jpg'
    path.write_bytes(bytes(data))
    with caplog.at_level('WARNING'):
        image, width = image_decode.read_image_file(str(path))
        image_decode.read_image_file(str(path))
    assert np.array_equal(image, opencv(bytes(data), 1, True)) and width == 320
    warnings = [r.getMessage() for r in caplog.records if 'damaged.jpg' in r.getMessage()]
    assert len(warnings) == 1 and 'Corrupt JPEG data' in warnings[0]


def test_a_header_beyond_64_kb_is_still_read():
    """Big metadata segments (EXIF thumbnails, ICC profiles) before the frame header."""
    data = encoded('baseline 4:2:0', 200, 150)
    segment = b'\xff\xe1' + (40000).to_bytes(2, 'big') + bytes(39998)
    padded = data[:2] + segment + segment + data[2:]
    assert image_decode.jpeg_size(padded) == (200, 150)
    image, width = image_decode.decode_image(padded, 2)
    assert width == 200 and np.array_equal(image, opencv(data, 2, True))
