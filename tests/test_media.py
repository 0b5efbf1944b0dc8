"""infer.py's inputs (apps.media.Source) and staged outputs."""
import os

import cv2
import numpy as np
import pytest

from hsrnet.samples.synthetic_video import write_video
from hsrnet.apps.media import Source, StagedOutput, image_id_of


def test_folder_image_and_video_sources(tmp_path):
    for name in ('000000000042.jpg', 'b.png'):
        cv2.imwrite(str(tmp_path / name), np.full((20, 30, 3), 128, np.uint8))
    (tmp_path / 'notes.txt').write_text('not a picture')
    folder = Source(str(tmp_path))
    assert folder.kind == 'folder' and folder.count == 2
    frames = list(folder)
    assert [f.file_name for f in frames] == ['000000000042.jpg', 'b.png']
    assert [f.image_id for f in frames] == [42, 1]
    single = Source(str(tmp_path / 'b.png'))
    assert single.kind == 'image' and [f.image.shape for f in single] == [(20, 30, 3)]
    write_video(tmp_path / 'v.mp4', seconds=0.5, fps=10)
    video = Source(str(tmp_path / 'v.mp4'))
    assert video.kind == 'video' and video.count == 5 and video.fps == pytest.approx(10)
    assert [f.frame for f in video] == [0, 1, 2, 3, 4]
    assert image_id_of('x/000123.jpg', 5) == 123 and image_id_of('x/a.jpg', 5) == 5


@pytest.mark.parametrize('make, message', [
    (lambda p: p / 'missing.jpg', 'no such file or folder'),
    (lambda p: (p / 'empty').mkdir() or p / 'empty', 'no image files'),
    (lambda p: (p / 'bad.mp4').write_bytes(b'\0' * 100) and p / 'bad.mp4', 'cannot open'),
    (lambda p: '9', 'webcam 9'),
])
def test_bad_sources_name_the_input(tmp_path, make, message):
    spec = str(make(tmp_path))
    with pytest.raises((ValueError, FileNotFoundError), match=message) as info:
        Source(spec)
    assert spec in str(info.value)


def test_staged_output_commits_or_leaves_nothing(tmp_path):
    out = tmp_path / 'out'
    staged = StagedOutput(str(out))
    staged.write_json('a.json', [1])
    staged.write_image('a.jpg', np.zeros((4, 4, 3), np.uint8))
    assert os.listdir(out) == [os.path.basename(staged.stage)]       # nothing final yet
    staged.commit()
    assert sorted(os.listdir(out)) == ['a.jpg', 'a.json']
    again = StagedOutput(str(out))
    again.write_json('b.json', [2])
    again.discard()
    assert sorted(os.listdir(out)) == ['a.jpg', 'a.json']
    (tmp_path / 'file').write_text('x')
    with pytest.raises(ValueError, match='cannot write the output folder'):
        StagedOutput(str(tmp_path / 'file' / 'out'))
