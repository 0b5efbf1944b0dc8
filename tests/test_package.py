"""The package: `hsrnet` alone is installed (`pip install -e .`), its API works from
any folder beside a user's own `utils.py`, and the original's module names (with
`lib/` on sys.path, as its scripts arrange) are the package's own module objects."""
import importlib
import os
import subprocess
import sys
import textwrap


from conftest import ROOT

ORIGINAL = ('core', 'utils', 'models', 'dataset', 'nms', 'runner', 'evaluation')


def test_the_original_names_are_the_package_modules():
    pairs = [('core.config', 'hsrnet.config'), ('core.inference', 'hsrnet.head.inference'),
             ('core.function', 'hsrnet.engine.loops'), ('core.loss', 'hsrnet.head.loss'),
             ('core.evaluate', 'hsrnet.head.accuracy'), ('nms.nms', 'hsrnet.nms.nms'),
             ('models.pose_hsrnet', 'hsrnet.models.pose_hsrnet'),
             ('dataset.coco', 'hsrnet.data.coco'), ('utils.transforms', 'hsrnet.utils.transforms')]
    for old, new in pairs:
        assert importlib.import_module(old) is importlib.import_module(new), old
    import core.config
    import dataset
    import models
    import hsrnet.config
    import hsrnet.data
    import hsrnet.models
    import hsrnet.utils.errors
    assert core.config.config is hsrnet.config.config   # one config tree
    assert models.MODELS is hsrnet.models.MODELS        # one registry each
    assert dataset.DATASETS is hsrnet.data.DATASETS
    assert dataset.DataError is hsrnet.utils.errors.DataError   # one set of errors
    assert models.pose_hsrnet.get_pose_net is hsrnet.models.pose_hsrnet.get_pose_net


USER_SCRIPT = textwrap.dedent('''
    import importlib.util, json, sys
    import numpy as np
    import utils                       # the user's own utils.py, beside this script
    assert utils.MINE, 'the user module was shadowed'
    import hsrnet
    from hsrnet import PoseEstimator
    sys.path.remove(sys.path[0])       # the script's folder off the path:
    importlib.invalidate_caches()
    for name in {original!r}:         # nothing of the project at the top level
        sys.modules.pop(name, None)
        assert importlib.util.find_spec(name) is None, name
    estimator = PoseEstimator({cfg!r}, {model!r}, device='cpu')
    image = np.random.default_rng(0).integers(0, 255, (120, 90, 3), dtype=np.uint8)
    poses = estimator.estimate(image)
    print(json.dumps({{'file': hsrnet.__file__, 'persons': len(poses)}}))
''')


def test_pip_install_then_import_from_anywhere(tmp_path):
    """A fresh venv (the test environment's packages reached through a .pth, so that
    nothing is downloaded; this pip installs into it), `pip install -e .`, then a
    script in a folder of its own with a `utils.py` of its own."""
    from tiny_model import save_tiny_checkpoint, tiny_yaml
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
    python = str(venv / 'bin' / 'python')
    site = subprocess.run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                          check=True, capture_output=True, text=True).stdout.strip()
    ours = [p for p in sys.path if p.endswith('site-packages')]
    with open(os.path.join(site, 'outer_site.pth'), 'w') as f:
        f.write('\n'.join(ours) + '\n')
    install = subprocess.run([sys.executable, '-m', 'pip', '--python', python, 'install', '-q',
                              '--no-deps', '--no-build-isolation', '-e', ROOT],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    user = tmp_path / 'user'
    user.mkdir()
    (user / 'utils.py').write_text('MINE = True\n')
    cfg = tiny_yaml(tmp_path / 'tiny.yaml')
    model = save_tiny_checkpoint(tmp_path / 'tiny.pth')
    (user / 'run.py').write_text(USER_SCRIPT.format(original=ORIGINAL, model=model, cfg=cfg))
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    done = subprocess.run([python, 'run.py'], cwd=str(user), capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = __import__('json').loads(done.stdout.strip().splitlines()[-1])
    assert result['file'].startswith(os.path.join(ROOT, 'lib', 'hsrnet'))
    assert result['persons'] == 1   # no boxes: the whole picture is one person


EXIT_SCRIPT = textwrap.dedent('''
    import atexit, gc, sys
    sys.path.insert(0, sys.argv[1])
    # registered first, so run last: after whatever the job wrapper left for the exit
    atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))
    from hsrnet.runner.launch import run_job

    class Job:
        def __init__(self, args):
            pass

        def run(self):
            pass

    sys.exit(run_job(Job, None))
''')


def test_scripts_leave_torchs_objects_out_of_the_shutdown_gc(tmp_path):
    """A script's objects are frozen at exit (gc.freeze): the interpreter's shutdown
    then skips the cyclic GC over torch's modules, 0.3-0.4 s of every run."""
    script = tmp_path / 'exit_job.py'
    script.write_text(EXIT_SCRIPT)
    result = subprocess.run([sys.executable, str(script), os.path.join(ROOT, 'lib')],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'frozen at exit: True' in result.stdout
