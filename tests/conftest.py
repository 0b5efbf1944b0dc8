import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
LIB = os.path.join(ROOT, 'lib')
if LIB not in sys.path:
    sys.path.insert(0, LIB)

SHARED = os.path.abspath(os.path.join(ROOT, '..', 'shared'))
SPEC = os.path.join(SHARED, 'spec')
SHARED_DATA = os.path.join(SHARED, 'data')
