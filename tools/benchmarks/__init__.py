"""The subcommands of tools/benchmark.py, a module each with `add_arguments(parser)`,
`run(args)` (the exit status) and `TAKES_CONFIG` (whether it takes the scripts'
command line: --cfg YAML, its flags, then [opts] KEY VALUE overrides); what they
share is benchmarks.common. Importing the package puts this clone's lib/ on sys.path."""
import _paths  # noqa: F401

SUBCOMMANDS = ('train', 'data', 'model', 'valid', 'infer', 'compare')
