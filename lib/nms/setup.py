"""Builds the cpu_nms extension in place: `python setup.py build_ext --inplace`
(run by `cd lib && make`)."""
import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

extension = Extension(
    'cpu_nms',
    sources=['cpu_nms.pyx'],
    include_dirs=[np.get_include()],
    define_macros=[('NPY_NO_DEPRECATED_API', 'NPY_1_7_API_VERSION')],
)

setup(name='cpu_nms', ext_modules=cythonize([extension], language_level=3, quiet=True))
