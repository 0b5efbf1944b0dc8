"""Put `lib/` on sys.path so that `import models`, `import dataset` and
`from core.config import config` work as in the original code base."""
import os
import sys

LIB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib')
if LIB_DIR not in sys.path:
    sys.path.insert(0, os.path.abspath(LIB_DIR))
