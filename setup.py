"""The Cython NMS extension of the hsrnet package (everything else is in
pyproject.toml). `pip install -e .` builds it; without the install,
`make -C lib` builds it in place (lib/hsrnet/nms/cpu_nms*.so)."""
import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

NMS = Extension(
    'hsrnet.nms.cpu_nms',
    sources=['lib/hsrnet/nms/cpu_nms.pyx'],
    include_dirs=[np.get_include()],
    define_macros=[('NPY_NO_DEPRECATED_API', 'NPY_1_7_API_VERSION')],
)

setup(ext_modules=cythonize([NMS], language_level=3, quiet=True))
