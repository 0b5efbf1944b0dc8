"""SPEED.CPU_MALLOC_CACHE: keep freed memory in the process on the CPU.

glibc hands each allocation above 32 MiB (a batch's activations, gradients) to the
kernel with mmap and gives it back on free, so every forward pass on the CPU faults
the same pages in again: on 2 cores valid.py with flip test spent about a third of
its time in the kernel (`sys`). Telling glibc to serve everything from its heap and
to keep what is freed there (mallopt: M_MMAP_MAX 0, a high M_TRIM_THRESHOLD) lets
the next batch reuse those pages. Results are unchanged; the resident memory stays
at its peak instead of shrinking between batches.
"""
import ctypes
import ctypes.util
import logging
import sys

logger = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
TRIM_THRESHOLD = (1 << 31) - 1   # the largest value mallopt takes: 2 GiB


def keep_freed_memory():
    """Apply the policy in this process (and in the DataLoader workers it forks
    later). Returns whether it could (glibc only; a no-op elsewhere)."""
    if not sys.platform.startswith('linux'):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # One arena for every thread: the policy holds for threads other than the
    # main one too (the flip test's second forward pass runs in one,
    # core.inference), whose own arenas would give their memory back.
    mallopt(M_ARENA_MAX, 1)
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
