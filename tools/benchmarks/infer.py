"""persons/s of pose_estimation/infer.py on the synthetic video: torch fp32 vs onnxruntime.

    python tools/benchmark.py infer [--cfg experiments/sample/hsrnet59_demo.yaml] [--rounds 2]

(Was tools/benchmark_infer.py.) Generates the synthetic video
(tools/make_sample_data.py --video: 3 figures, 3 s at 10 frames/s) in a temporary
folder, saves the yaml's network with seeded random weights (speed does not depend
on the weights) and its ONNX export, then runs infer.py's whole loop (video
decoding, crops, network, decoding, tracking, drawing, mp4 and json writing) on the
video's ground-truth boxes with each backend, alternating them `--rounds` times,
and prints the best persons/s of each and their ratio. Threads: torch and
onnxruntime use their defaults (all cores) unless --threads N sets both.
"""
import contextlib
import io
import os
import sys
import tempfile
import time

import torch

from benchmarks.common import ROOT, say
from hsrnet import models
from hsrnet.apps.onnx_model import export_onnx
from hsrnet.config import check_config, get_default_config, update_config
from hsrnet.engine.precision import cpu_name
from hsrnet.runner.launch import SETUP_ERRORS, report_error
from hsrnet.samples.synthetic_video import write_video

TAKES_CONFIG = False   # infer.py's own yaml by default, no overrides
DEFAULT_CFG = os.path.join('experiments', 'sample', 'hsrnet59_demo.yaml')


def add_arguments(parser):
    parser.add_argument('--cfg', default=os.path.join(ROOT, DEFAULT_CFG), help='experiment yaml')
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--seconds', type=float, default=3.0)
    parser.add_argument('--flip-test', action='store_true')
    parser.add_argument('--threads', type=int, help='threads of torch and onnxruntime')


def infer_script():
    """pose_estimation/infer.py as a module (it finds its _init_paths beside it)."""
    scripts = os.path.join(ROOT, 'pose_estimation')
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    import infer
    return infer


class InferFailed(RuntimeError):
    pass


def run_once(args, model_file, video, boxes, out):
    argv = ['--cfg', args.cfg, '--model-file', model_file, '--input', video, '--boxes', boxes,
            '--out', out, '--quiet'] + (['--flip-test'] if args.flip_test else []) + (
                ['--threads', str(args.threads)] if args.threads else [])
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()) as err, \
            contextlib.redirect_stdout(io.StringIO()):
        status = infer_script().main(argv)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise InferFailed('infer.py failed: {}'.format(err.getvalue().strip()))
    return elapsed


def time_backends(args, cfg, tmp):
    """(video info, the model, {backend: [seconds of each round]})."""
    video = os.path.join(tmp, 'video.mp4')
    info = write_video(video, seed=0, seconds=args.seconds)
    torch.manual_seed(0)
    model = models.build_model(cfg, is_train=True).eval()
    ckpt = os.path.join(tmp, 'model.pth')
    torch.save(model.state_dict(), ckpt)
    onnx_file = export_onnx(model, cfg, os.path.join(tmp, 'model.onnx'))
    times = {}
    for r in range(args.rounds):
        for name, model_file in (('torch fp32', ckpt), ('onnxruntime', onnx_file)):
            elapsed = run_once(args, model_file, video, info['boxes_file'],
                               os.path.join(tmp, 'out{}'.format(r)))
            times.setdefault(name, []).append(elapsed)
    return info, model, times


def run(args):
    try:
        cfg = check_config(update_config(args.cfg, get_default_config()))
    except SETUP_ERRORS as error:
        return report_error(error, 2)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            info, model, times = time_backends(args, cfg, tmp)
        except InferFailed as error:
            return report_error(error, 1)
    best = {name: min(values) for name, values in times.items()}
    persons = info['frames'] * info['figures']
    say('infer.py on the synthetic video: {} frames, {} persons, {} ({}x{}{}), CPU: {}, '
        'torch threads {}, {} cores'.format(
            info['frames'], persons, model.arch, *cfg.MODEL.IMAGE_SIZE,
            ', flip test' if args.flip_test else '', cpu_name(), torch.get_num_threads(),
            os.cpu_count()))
    for name, elapsed in best.items():
        say('  {:<12} {:7.1f} persons/s  (best of {}: {:.2f} s; all: {})'.format(
            name, persons / elapsed, args.rounds, elapsed,
            ', '.join('{:.1f}'.format(persons / t) for t in times[name])))
    say('  onnxruntime / torch: {:.2f}x'.format(best['torch fp32'] / best['onnxruntime']))
    return 0
