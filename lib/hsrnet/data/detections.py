"""Person detections in COCO's results format, read and checked in one place: the
detector boxes of validation (TEST.COCO_BBOX_FILE, data.coco) and infer.py's
`--boxes` file (apps.person_boxes) both come through `read_person_detections`.

A file is a json list of {"image_id": int, "category_id": int, "bbox": [x, y, w, h],
"score": float}. For validation every key is required; infer.py's boxes may name
their picture by "file_name" instead of "image_id", and default "category_id" to 1
(person) and "score" to 1.
"""
import json
import logging
import math
import numbers
import os
from dataclasses import dataclass, field

from hsrnet.evaluation.coco import PERSON_CATEGORY

logger = logging.getLogger(__name__)

DETECTION_FORMAT = ('a list of {"image_id": int, "category_id": int, '
                    '"bbox": [x, y, w, h], "score": float}')
BOXES_FORMAT = ('a COCO results list of {"image_id": int or "file_name": str, '
                '"category_id": 1, "bbox": [x, y, w, h], "score": float}')


@dataclass
class PersonDetections:
    """The person entries of a detection file, each a dict with float 'bbox' and
    'score', 'image_id' (None when named by 'file_name') and 'file_name' (None or a
    base name); `entries` counts every entry of the file."""
    path: str
    persons: list = field(default_factory=list)
    entries: int = 0


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _entry_problem(entry, strict):
    """What is wrong with one entry of the file (None: nothing)."""
    if not isinstance(entry, dict):
        return 'not an object'
    required = ('image_id', 'category_id', 'bbox', 'score') if strict else ('bbox',)
    missing = [key for key in required if key not in entry]
    if missing:
        return 'missing ' + ', '.join(missing)
    if not strict and 'image_id' not in entry and 'file_name' not in entry:
        return 'missing image_id or file_name'
    ids = [entry[key] for key in ('image_id', 'category_id') if key in entry]
    if any(isinstance(value, bool) or not isinstance(value, int) for value in ids):
        return 'image_id and category_id must be integers'
    bbox = entry['bbox']
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_is_number, bbox)):
        return 'bbox must be 4 numbers [x, y, w, h]'
    if 'score' in entry and not _is_number(entry['score']):
        return 'score must be a number'
    return None


def is_positive_box(bbox):
    """Whether bbox is [x, y, w, h] of finite numbers with w > 0 and h > 0 (also
    used for the annotations' boxes)."""
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError):
        return False
    return len(values) == 4 and all(map(math.isfinite, values)) \
        and values[2] > 0 and values[3] > 0


def _usable(entry):
    return is_positive_box(entry['bbox']) and math.isfinite(entry['score'])


def read_person_detections(path, source, strict=True):
    """The person boxes (category_id 1) of the detection file `path`.

    A file that is missing, not json or not a list, or an entry that is malformed, is a
    ValueError (FileNotFoundError) naming the file and the entry; boxes or scores that
    are not finite, or boxes of width or height <= 0, are skipped with one warning
    that counts them and names the first. `source`: where the path was given (a
    config key, a flag). `strict` False: infer.py's boxes files (see the module's
    docstring)."""
    form = DETECTION_FORMAT if strict else BOXES_FORMAT
    if not os.path.isfile(path):
        raise FileNotFoundError('detection file not found: {} ({}: {})'.format(path, source, form))
    try:
        with open(path, 'rb') as f:
            entries = json.loads(f.read().decode('utf-8'))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError('{}: not valid json ({})'.format(path, err)) from None
    if not isinstance(entries, list):
        raise ValueError('{}: expected {}, got a json {}'.format(
            path, form, type(entries).__name__.replace('dict', 'object')))
    for i, entry in enumerate(entries):
        problem = _entry_problem(entry, strict)
        if problem:
            raise ValueError('{}: detection entry {} is malformed ({}): {:.200}; expected {}'
                             .format(path, i, problem, repr(entry), form))
    persons, bad = [], []
    for i, entry in enumerate(entries):
        if entry.get('category_id', PERSON_CATEGORY) != PERSON_CATEGORY:
            continue
        name = entry.get('file_name')
        person = {'bbox': [float(v) for v in entry['bbox']],
                  'score': float(entry.get('score', 1.0)), 'image_id': entry.get('image_id'),
                  'file_name': None if name is None else os.path.basename(str(name))}
        (persons if _usable(person) else bad).append((i, person))
    if bad:
        i, first = bad[0]
        logger.warning('%s: skipped %d detection entries with a non-finite or non-positive '
                       'box or score (the first: entry %d, image %s, bbox %s, score %s)',
                       path, len(bad), i, first['image_id'] if first['file_name'] is None
                       else first['file_name'], entries[i]['bbox'], entries[i].get('score'))
    return PersonDetections(path, [person for _, person in persons], len(entries))
