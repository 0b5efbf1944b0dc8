"""The one place that puts this clone's lib/ on sys.path for the tools: each tool
imports it first (`import _paths`), so that a clone runs its own code whether or not
the package is installed. Without lib/hsrnet beside tools/, the installed package
is used."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, 'lib')

if os.path.isdir(os.path.join(LIB, 'hsrnet')) and LIB not in sys.path:
    sys.path.insert(0, LIB)
