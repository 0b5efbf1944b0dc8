"""Speed figures of the project: one entry point, a subcommand each.

    python tools/benchmark.py SUBCOMMAND [--cfg YAML] [flags] [opts KEY VALUE ...]
    python tools/benchmark.py SUBCOMMAND -h       # its figures and flags

The subcommands replace five scripts, whose flags (same names, same defaults) and
figures they keep:
    train    tools/benchmark_train.py: the data pipeline per worker count and path,
             the model step (--profile: the per-category GPU/CPU account), end to end
             with the bound, valid.py persons/s; --json
    data     tools/benchmark_data.py: data pipeline samples/s, training and
             validation, with several samplers
    model    tools/benchmark.py as it was (it still runs this without a subcommand):
             network inference and training-step images/s in float32 and mixed
             precision, then the valid figure unless --skip-valid
    valid    that last figure alone: valid.py persons/s with flip test
    infer    tools/benchmark_infer.py: infer.py persons/s on the synthetic video,
             torch against onnxruntime
    compare  tools/compare_data_pipeline.py: this tree's data pipeline against
             another checkout, alternating rounds
The old names still run for a while: a note on stderr names the new command, which
then runs. The code is tools/benchmarks/: a module per subcommand, and common.py.
"""
import argparse
import importlib
import os
import sys

import _paths  # noqa: F401  (first: this clone's lib/ on sys.path)
from benchmarks import SUBCOMMANDS
from hsrnet.runner.cli import add_opts, base_parser

HELP_FLAGS = ('-h', '--help')


def build_parser():
    parser = argparse.ArgumentParser(prog='benchmark.py', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest='subcommand', metavar='SUBCOMMAND', required=True)
    for name in SUBCOMMANDS:
        module = importlib.import_module('benchmarks.' + name)
        doc = module.__doc__
        shown = dict(help=' '.join(doc.split('\n\n')[0].split()), description=doc,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
        if module.TAKES_CONFIG:   # the scripts' command line: --cfg YAML first
            sub = subparsers.add_parser(name, parents=[base_parser(name, common_flags=False)],
                                        add_help=False, **shown)
        else:
            sub = subparsers.add_parser(name, **shown)
        module.add_arguments(sub)
        if module.TAKES_CONFIG:
            add_opts(sub)   # last: the trailing KEY VALUE overrides
        sub.set_defaults(run=module.run)
    return parser


def note(old, subcommand):
    print('note: {} is now `tools/benchmark.py {}`; running that'.format(old, subcommand),
          file=sys.stderr, flush=True)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0].startswith('-') and argv[0] not in HELP_FLAGS:
        note('tools/benchmark.py without a subcommand', 'model')   # as it was before them
        argv = ['model'] + argv
    args = build_parser().parse_args(argv)
    return args.run(args)


def run_old_name(script, subcommand):
    """What a tool's old name runs: the note, then the subcommand with its arguments."""
    note('tools/' + os.path.basename(script), subcommand)
    return main([subcommand] + sys.argv[1:])


if __name__ == '__main__':
    sys.exit(main())
