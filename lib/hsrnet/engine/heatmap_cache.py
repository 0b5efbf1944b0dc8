"""The heatmap cache: the network's heatmaps of a validation set with the boxes
they were cut from, so that decoding, rescoring and OKS-NMS can be re-run with
other settings without the network (tools/redecode.py).

`valid.py --save-heatmaps` writes one .npz (uncompressed zip of .npy members):

    meta        json text: format, version, the decode/evaluation settings of
                the run (`SAVED_KEYS`), the model name and the whole merged config
                as yaml text
    heatmaps    (N, J, H, W) float16 (default) or float32: what valid.py decoded
                (flip-averaged with TEST.FLIP_TEST)
    centers     (N, 2), scales (N, 2), box_scores (N,), areas (N,)  float64
    images      (N,) str: the image path of each person

in dataset order (valid.py's order, also under torchrun). The file is written
through a temporary file and a rename. `load_heatmaps` reads the small arrays
and checks the file; the heatmaps are read on demand, in chunks
(`HeatmapCache.chunks`), so that a large file never has to fit in memory twice.
"""
import json
import logging
import os
import tempfile
import zipfile
import zlib

import numpy as np

from hsrnet.config import dump_config, get_model_name
from hsrnet.utils.errors import HeatmapCacheError

logger = logging.getLogger(__name__)

__all__ = ['HeatmapCache', 'HeatmapCacheError', 'HeatmapParts', 'load_heatmaps',
           'save_heatmaps',
           'config_value', 'DTYPES', 'SAVED_KEYS']

FORMAT = 'hsrnet-heatmap-cache'
VERSION = 1
DTYPES = ('float16', 'float32')
BOX_ARRAYS = ('centers', 'scales', 'box_scores', 'areas')
# What decoding and evaluation read from the config (config key -> saved value).
SAVED_KEYS = ('MODEL.NUM_JOINTS', 'MODEL.IMAGE_SIZE', 'MODEL.EXTRA.HEATMAP_SIZE', 'MODEL.UDP',
              'MODEL.EXTRA.SIGMA', 'MODEL.EXTRA.TARGET_TYPE',
              'TEST.POST_PROCESS', 'TEST.DARK', 'TEST.IN_VIS_THRE', 'TEST.OKS_THRE',
              'TEST.FLIP_TEST', 'TEST.SHIFT_HEATMAP', 'TEST.MODEL_FILE',
              'TEST.USE_GT_BBOX', 'TEST.COCO_BBOX_FILE', 'TEST.IMAGE_THRE',
              'DATASET.DATASET', 'DATASET.ROOT', 'DATASET.TEST_SET')
# Reading a damaged zip member can fail in any of these.
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error)


def config_value(cfg, key):
    node = cfg
    for part in key.split('.'):
        node = node[part]
    return list(node) if isinstance(node, (list, tuple)) else node


def save_heatmaps(path, heatmaps, predictions, cfg):
    """Write `heatmaps` (N, J, H, W) float16/float32 with the boxes of
    `predictions` (evaluation.PosePredictions; its keypoints are not kept) and
    the settings of `cfg` to `path` (.npz), atomically. Returns `path`."""
    heatmaps = np.asarray(heatmaps)
    _check_dtype(heatmaps.dtype)
    if heatmaps.ndim != 4 or len(heatmaps) != len(predictions):
        raise ValueError('save_heatmaps: expected heatmaps (N={}, J, H, W), got shape {}'
                         .format(len(predictions), heatmaps.shape))
    rows = (heatmaps[i:i + CHUNK] for i in range(0, len(heatmaps), CHUNK))
    return _write_cache(path, rows, heatmaps.shape, heatmaps.dtype, predictions, cfg)


def _check_dtype(dtype):
    if np.dtype(dtype).name not in DTYPES:
        raise ValueError('save_heatmaps: heatmaps must be one of {}, got {}'.format(
            ', '.join(DTYPES), np.dtype(dtype)))


CHUNK = 256   # persons per read or write of heatmaps


def _write_cache(path, rows, shape, dtype, predictions, cfg):
    """Write the .npz of `save_heatmaps` with the heatmaps given as an iterable of
    row blocks (n, J, H, W) that add up to `shape`: a large set never has to be
    in memory at once."""
    meta = {'format': FORMAT, 'version': VERSION,
            'model': get_model_name(cfg)[1],
            'config': {key: config_value(cfg, key) for key in SAVED_KEYS},
            'config_yaml': dump_config(cfg)}
    arrays = {'meta': np.array(json.dumps(meta)),
              'images': np.array([str(p) for p in predictions.images], dtype=str)}
    for name in BOX_ARRAYS:
        arrays[name] = np.asarray(getattr(predictions, name), dtype=np.float64)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix='.tmp')
    except OSError as e:
        raise HeatmapCacheError('cannot write heatmaps file {}: {}'.format(path, e)) from None
    try:
        with os.fdopen(fd, 'wb') as f, zipfile.ZipFile(f, 'w', zipfile.ZIP_STORED,
                                                       allowZip64=True) as archive:
            # the members np.savez writes: <name>.npy, uncompressed
            for name in ('meta', 'heatmaps') + BOX_ARRAYS + ('images',):
                with archive.open(name + '.npy', 'w', force_zip64=True) as member:
                    if name == 'heatmaps':
                        _stream_npy(member, rows, shape, dtype)
                    else:
                        np.lib.format.write_array(member, arrays[name], allow_pickle=False)
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException as e:
        os.unlink(tmp)
        if isinstance(e, OSError):
            raise HeatmapCacheError('cannot write heatmaps file {}: {}'.format(path, e)) \
                from None
        raise
    logger.info('=> heatmaps of %d persons (%s, %.1f MB) saved to %s', shape[0],
                np.dtype(dtype), os.path.getsize(path) / 2 ** 20, path)
    return path


def _stream_npy(member, rows, shape, dtype):
    header = {'descr': np.lib.format.dtype_to_descr(np.dtype(dtype)),
              'fortran_order': False, 'shape': tuple(int(n) for n in shape)}
    np.lib.format.write_array_header_2_0(member, header)
    written = 0
    for block in rows:
        block = np.ascontiguousarray(block, dtype=dtype)
        member.write(block.tobytes())
        written += len(block)
    if written != shape[0]:
        raise ValueError('save_heatmaps: {} heatmaps written for {} persons'.format(
            written, shape[0]))


class HeatmapParts:
    """The heatmaps of one rank's validation shard, appended batch by batch to a
    raw file beside the cache file (`<path>.rank<R>.part`) instead of memory;
    `merge` (on rank 0) writes the cache in dataset order from every rank's
    part, `remove` deletes the parts. Under torchrun the ranks must share the output
    folder (one machine, or a shared filesystem)."""

    def __init__(self, path, rank, dtype):
        _check_dtype(dtype)
        self.dtype = np.dtype(dtype)
        self.part = '{}.rank{}.part'.format(path, rank)
        self.count = 0
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._file = open(self.part, 'wb')
        except OSError as e:
            raise HeatmapCacheError('cannot write heatmaps file {}: {}'.format(
                self.part, e)) from None

    def append(self, heatmaps):
        block = np.ascontiguousarray(heatmaps, dtype=self.dtype)
        try:
            self._file.write(block.tobytes())
        except OSError as e:
            self.discard()
            raise HeatmapCacheError('cannot write heatmaps file {}: {}'.format(
                self.part, e)) from None
        self.count += len(block)

    def close(self):
        """Finish this rank's part; returns what `merge` needs of it (picklable)."""
        self._file.close()
        return {'part': self.part, 'count': self.count}

    def discard(self):
        self._file.close()
        if os.path.exists(self.part):
            os.unlink(self.part)

    @staticmethod
    def merge(path, parts, order, row_shape, dtype, predictions, cfg):
        """Write the cache `path` from the ranks' parts: `order` lists, for each
        person of `predictions` in turn, (rank, row in that rank's part). The
        caller removes the parts (`remove`), also when this fails."""
        dtype = np.dtype(dtype)
        row_shape = tuple(row_shape)
        maps = []
        try:
            for part in parts:
                if part['count'] == 0:
                    maps.append(np.zeros((0,) + row_shape, dtype))
                    continue
                maps.append(np.memmap(part['part'], dtype=dtype, mode='r',
                                      shape=(part['count'],) + row_shape))
        except (OSError, ValueError) as e:
            raise HeatmapCacheError('cannot read the heatmaps of a rank ({}): {} (under '
                                    'torchrun the ranks must share the output folder)'
                                    .format(part['part'], e)) from None
        order = np.asarray(order, dtype=np.int64).reshape(-1, 2)

        def rows():
            for start in range(0, len(order), CHUNK):
                chunk = order[start:start + CHUNK]
                block = np.empty((len(chunk),) + row_shape, dtype)
                for rank in np.unique(chunk[:, 0]):
                    mine = chunk[:, 0] == rank
                    block[mine] = maps[rank][chunk[mine, 1]]
                yield block
        return _write_cache(path, rows(), (len(order),) + row_shape, dtype, predictions, cfg)

    @staticmethod
    def remove(parts):
        """Delete the part files that are still there (of `close()` results)."""
        for part in parts:
            if part is not None and os.path.exists(part['part']):
                os.unlink(part['part'])


class HeatmapCache:
    """A heatmaps file opened by `load_heatmaps`: `meta`, `config` (the saved
    settings, SAVED_KEYS), the boxes (centers, scales, box_scores, areas, images)
    in memory; `shape` and `dtype` of the heatmaps, read by `chunks`/`heatmaps`."""

    def __init__(self, path, meta, arrays, shape, dtype, header_end):
        self.path = path
        self.meta = meta
        self.config = meta['config']
        self.config_yaml = meta.get('config_yaml', '')
        self.centers = arrays['centers']
        self.scales = arrays['scales']
        self.box_scores = arrays['box_scores']
        self.areas = arrays['areas']
        self.images = [str(p) for p in arrays['images']]
        self.shape = shape
        self.dtype = dtype
        self._header_end = header_end

    def __len__(self):
        return self.shape[0]

    def chunks(self, size=256):
        """Yield (start, heatmaps (n, J, H, W) in the saved dtype) through the file."""
        per_person = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        try:
            with zipfile.ZipFile(self.path) as archive, archive.open('heatmaps.npy') as f:
                f.read(self._header_end)
                for start in range(0, len(self), size):
                    count = min(size, len(self) - start)
                    data = f.read(count * per_person)
                    if len(data) != count * per_person:
                        raise EOFError('heatmaps end after {} of {} persons'.format(
                            start + len(data) // per_person, len(self)))
                    yield start, np.frombuffer(data, self.dtype).reshape(
                        (count,) + tuple(self.shape[1:]))
                f.read()  # to the end: the zip's checksum is verified there
        except _READ_ERRORS as e:
            raise _corrupt(self.path, e) from None

    def heatmaps(self):
        """All heatmaps (N, J, H, W) in the saved dtype."""
        parts = [chunk for _, chunk in self.chunks(max(len(self), 1))]
        return np.concatenate(parts) if parts else np.zeros(self.shape, self.dtype)


def _corrupt(path, error):
    reason = str(error) or type(error).__name__
    return HeatmapCacheError('heatmaps file {} is corrupt or truncated ({})'.format(
        path, reason))


def _read_header(archive):
    """(shape, dtype, header length) of the archive's heatmaps.npy."""
    with archive.open('heatmaps.npy') as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        return shape, fortran, dtype, f.tell()


def load_heatmaps(path):
    """Open a file of `save_heatmaps`; HeatmapCacheError (one line) for a missing,
    corrupt or foreign file."""
    if not os.path.isfile(path):
        raise HeatmapCacheError('heatmaps file not found: {} (write one with valid.py '
                                '--save-heatmaps)'.format(path))
    foreign = 'file {} is not a heatmaps file of valid.py --save-heatmaps ({})'
    if not zipfile.is_zipfile(path):
        with open(path, 'rb') as f:
            zip_start = f.read(4) == b'PK\x03\x04'
        if zip_start:  # a zip whose end (the central directory) is missing
            raise _corrupt(path, 'no zip directory at the end')
        raise HeatmapCacheError(foreign.format(path, 'not an .npz archive'))
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if 'meta.npy' not in names:
                raise HeatmapCacheError(foreign.format(path, "no 'meta' entry"))
            with np.load(path, allow_pickle=False) as npz:
                try:
                    meta = json.loads(str(npz['meta']))
                except (ValueError, TypeError):
                    meta = None
                if not isinstance(meta, dict) or meta.get('format') != FORMAT:
                    raise HeatmapCacheError(foreign.format(path, "its 'meta' entry is not "
                                                           "this format's"))
                if meta.get('version') != VERSION:
                    raise HeatmapCacheError(
                        'heatmaps file {} has format version {}; this code reads version {} '
                        '(save it again with valid.py --save-heatmaps)'.format(
                            path, meta.get('version'), VERSION))
                missing = [n for n in ('heatmaps',) + BOX_ARRAYS + ('images',)
                           if n + '.npy' not in names]
                if missing or not isinstance(meta.get('config'), dict):
                    raise _corrupt(path, 'missing: {}'.format(', '.join(missing or ['config'])))
                arrays = {name: npz[name] for name in BOX_ARRAYS + ('images',)}
            shape, fortran, dtype, header_end = _read_header(archive)
    except HeatmapCacheError:
        raise
    except _READ_ERRORS as e:
        raise _corrupt(path, e) from None
    n = len(arrays['images'])
    problems = []
    if dtype.name not in DTYPES or fortran or len(shape) != 4:
        problems.append('heatmaps are {} {}{}'.format(dtype, shape, ' (Fortran order)'
                                                      if fortran else ''))
    elif shape[0] != n:
        problems.append('{} heatmaps for {} persons'.format(shape[0], n))
    expected = {'centers': (n, 2), 'scales': (n, 2), 'box_scores': (n,), 'areas': (n,)}
    problems += ['{} has shape {}'.format(name, arrays[name].shape)
                 for name, want in expected.items() if arrays[name].shape != want]
    if problems:
        raise _corrupt(path, '; '.join(problems))
    return HeatmapCache(path, meta, arrays, tuple(shape), dtype, header_end)
