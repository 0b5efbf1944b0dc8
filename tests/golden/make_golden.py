"""Regenerate the golden outputs of tests/test_golden.py (tests/golden/*.json).

    .venv/bin/python tests/golden/make_golden.py            # compare, rewrite what moved
    .venv/bin/python tests/golden/make_golden.py --check    # compare only (exit 1 on change)
    .venv/bin/python tests/golden/make_golden.py --force    # rewrite every file
    .venv/bin/python tests/golden/make_golden.py --only decode valid

Run it only for a change that is meant to move the pinned numbers, and say in the
commit why they moved. The computations are tests/test_golden.py's own
(compute_valid, compute_training, compute_decode, compute_oracle), so the files
hold exactly what the tests recompute; this script prints which pinned values
differ from the stored ones under the tests' tolerances (a file where none does is
not rewritten, so that another CPU's last bits make no diff without --force), and how
far the network's heatmaps are from a tie (an argmax or a quarter-offset sign that
a last-bit difference between CPUs could flip: the stored keypoints would then not
be portable; change a seed in test_golden.py if a margin is tiny).
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, TESTS)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import test_golden as tg  # noqa: E402  (puts lib/ on sys.path through conftest)


def about():
    """Where the stored numbers came from (for reviewers; not compared)."""
    from hsrnet.engine.precision import cpu_features, cpu_name
    try:
        commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=TESTS, capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = 'unknown'
    return {'made_by': 'tests/golden/make_golden.py', 'commit': commit,
            'cpu': '{} ({})'.format(cpu_name(), cpu_features()['capability']),
            'torch': torch.__version__, 'numpy': np.__version__,
            'opencv': __import__('cv2').__version__,
            'python': platform.python_version()}


def network_margins(root, out_dir, use_gt_bbox):
    """Smallest distances from a tie in the flip-averaged heatmaps of the valid golden:
    (top - second value) / top, over joints with a positive maximum, and the
    smallest |neighbour difference| / top of the quarter offset where it applies."""
    from hsrnet import data as dataset
    from hsrnet.head.inference import predict_heatmaps
    from hsrnet.data.batching import DeviceBatcher
    from hsrnet.utils.distributed import DistContext
    from hsrnet.data.loaders import build_val_loader, loader_options
    from hsrnet.engine.precision import Precision

    cfg = tg.tiny_config(*tg.valid_opts(root, out_dir, use_gt_bbox))
    _, model = tg.tiny_model(tg.MODEL_SEED)
    device = torch.device('cpu')
    precision = Precision(cfg, device)
    model = precision.prepare_model(model)
    val_dataset = dataset.build_dataset(cfg, cfg.DATASET.TEST_SET, False)
    loader = build_val_loader(val_dataset, cfg.TEST.BATCH_SIZE, 0, DistContext(),
                              batcher=DeviceBatcher(cfg, device, precision.memory_format),
                              **loader_options(cfg, device))
    gaps, offsets = [], []
    with torch.no_grad(), tg.one_torch_thread():
        for input, _, _, _ in loader:
            maps = predict_heatmaps(model, input, val_dataset.flip_pairs,
                                    cfg.TEST.SHIFT_HEATMAP, precision).numpy()
            n, j, h, w = maps.shape
            flat = np.sort(maps.reshape(n, j, -1), axis=2)
            top = flat[..., -1]
            positive = top > 0
            gaps.extend(((top - flat[..., -2]) / np.abs(top))[positive])
            idx = maps.reshape(n, j, -1).argmax(2)
            py, px = idx // w, idx % w
            for a in range(n):
                for b in range(j):
                    x, y = px[a, b], py[a, b]
                    if positive[a, b] and 1 < x < w - 1 and 1 < y < h - 1:
                        m = maps[a, b]
                        offsets.append(min(abs(m[y, x + 1] - m[y, x - 1]),
                                           abs(m[y + 1, x] - m[y - 1, x])) / top[a, b])
    return min(gaps), min(offsets) if offsets else float('inf')


def compute_all(only):
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = tg.generate_sample(os.path.join(tmp, 'sample'))
        if 'valid' in only:
            out['valid'] = {}
            for boxes in ('detector', 'ground_truth'):
                gt = boxes == 'ground_truth'
                out['valid'][boxes] = tg.compute_valid(root, os.path.join(tmp, 'v' + boxes), gt)
                gap, offset = network_margins(root, os.path.join(tmp, 'm' + boxes), gt)
                print('valid ({} boxes): smallest relative argmax gap {:.2e}, smallest '
                      'relative quarter-offset difference {:.2e} (float32 noise between '
                      'CPUs: ~1e-6)'.format(boxes, gap, offset))
                out['valid'][boxes]['tie_margins'] = {'argmax_gap': float(gap),
                                                      'quarter_offset': float(offset)}
            out['valid']['boxes'] = tg.compute_boxes(root, os.path.join(tmp, 'boxes'))
            out['valid']['sample_sha256'] = tg.sample_hashes(root)
        if 'train' in only:
            out['train'] = tg.compute_training(root, os.path.join(tmp, 'train'))
        if 'oracle' in only:
            out['oracle'] = tg.compute_oracle(root, os.path.join(tmp, 'oracle'))
    if 'decode' in only:
        out['decode'] = {'cases': tg.compute_decode()}
    return out


def dumps(data):
    """json with one line per innermost list of numbers (a joint's x, y, maxval; a
    list of losses): small, and readable in a diff."""
    text = json.dumps(data, indent=1, sort_keys=True)
    return re.sub(r'\[\s*([^\[\]{}"]*?)\s*\]',
                  lambda m: '[' + ', '.join(v.strip() for v in m.group(1).split(',')) + ']',
                  text) + '\n'


def compare(name, new, old):
    """Lines naming what moved from the stored file `old`, under the tests' checks."""
    if old is None:
        return ['{}: no stored file yet'.format(name)]
    if name == 'valid':
        pairs = [(new['valid'][b], old.get(b), tg.VALID_CHECKS, b)
                 for b in ('detector', 'ground_truth')]
        pairs += [(new['valid']['boxes'][b], old.get('boxes', {}).get(b), tg.BOX_CHECKS,
                   'boxes ' + b) for b in tg.BOX_SETS]
    elif name == 'train':
        pairs = [(new['train'], old, tg.TRAIN_CHECKS, '')]
    elif name == 'oracle':
        pairs = [(new['oracle'][d], old.get(d), tg.ORACLE_CHECKS, d) for d in tg.DECODERS]
    else:
        pairs = [(new['decode']['cases'][k], old['cases'].get(k), tg.DECODE_CHECKS, k)
                 for k in new['decode']['cases']]
    lines = []
    if name == 'valid' and new['valid']['sample_sha256'] != old.get('sample_sha256'):
        lines.append('valid: the generated sample differs (sample_sha256)')
    for a, g, checks, label in pairs:
        if g is None:
            lines.append('{} {}: not stored'.format(name, label))
            continue
        if 'images' in a and a['images'] != g.get('images'):
            lines.append('{} {}: other images'.format(name, label))
        lines += ['{} {}: {}'.format(name, label, p) for p in tg.mismatches(a, g, checks)]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--check', action='store_true', help='compare only, write nothing')
    parser.add_argument('--force', action='store_true',
                        help='rewrite the files also where nothing moved beyond the tolerances')
    parser.add_argument('--only', nargs='+', choices=sorted(tg.FILES), default=sorted(tg.FILES))
    args = parser.parse_args(argv)
    new = compute_all(set(args.only))
    changed = False
    for name in args.only:
        path = tg.golden_path(name)
        old = None
        if os.path.isfile(path):
            with open(path) as f:
                old = json.load(f)
        try:
            lines = compare(name, new, old)
        except (KeyError, TypeError, AttributeError) as error:
            lines = ['{}: the stored file has another layout ({!r})'.format(name, error)]
        changed |= bool(lines)
        print('{}: {}'.format(os.path.relpath(path, TESTS), 'unchanged' if not lines else
                              '\n  ' + '\n  '.join(lines)))
        if not args.check and (lines or args.force):
            data = tg.to_jsonable(new[name])
            data['_about'] = about()
            with open(path, 'w') as f:
                f.write(dumps(data))
            print('  written ({:.1f} KB)'.format(os.path.getsize(path) / 1024))
    return 1 if args.check and changed else 0


if __name__ == '__main__':
    sys.exit(main())
