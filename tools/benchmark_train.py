"""Old name of `tools/benchmark.py train`, kept for a while: says so on stderr, runs it."""
from benchmark import run_old_name

if __name__ == '__main__':
    raise SystemExit(run_old_name(__file__, 'train'))
