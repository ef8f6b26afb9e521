# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Build and install mmtvmamba.

The C++ op in ``mmtvmamba/ops/csrc`` is compiled with
``torch.utils.cpp_extension``, so torch must be importable at build time:
install with ``pip install --no-build-isolation -e .``. Set
``MMTVMAMBA_WITH_OPS=0`` to skip the op; the pure-PyTorch reference is then
used at run time.
"""
import os
import os.path as osp
from glob import glob

from setuptools import find_packages, setup

ROOT = osp.dirname(osp.abspath(__file__))


def read_version() -> str:
    """Read ``__version__`` from ``mmtvmamba/version.py`` without importing it."""
    namespace = {}
    with open(osp.join(ROOT, 'mmtvmamba', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def parse_requirements(name: str) -> list:
    """Return the requirement lines of ``requirements/<name>.txt``."""
    with open(osp.join(ROOT, 'requirements', f'{name}.txt')) as f:
        lines = (line.split('#', 1)[0].strip() for line in f)
        return [line for line in lines if line]


def build_extensions() -> tuple:
    """Return the C++ extensions and the build command class, or empty ones."""
    if os.getenv('MMTVMAMBA_WITH_OPS', '1') == '0':
        return [], {}
    sources = sorted(glob(osp.join('mmtvmamba', 'ops', 'csrc', '*.cpp')))
    if not sources:
        return [], {}
    from torch.utils.cpp_extension import BuildExtension, CppExtension

    # The torch 2.14 headers require C++20. The SIMD kernels select their
    # instruction sets per function, so no -march flag is needed.
    extension = CppExtension(
        name='mmtvmamba._ext',
        sources=sources,
        extra_compile_args=['-O3', '-std=c++20', '-fopenmp'],
        extra_link_args=['-fopenmp'])
    return [extension], {'build_ext': BuildExtension}


ext_modules, cmdclass = build_extensions()

setup(
    name='mmtvmamba',
    version=read_version(),
    description='Ternary-weight, ternary-activation Visual Mamba (TVMamba) '
    'for OpenMMLab 2.x',
    long_description=open(osp.join(ROOT, 'README.md')).read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'docs')),
    include_package_data=True,
    install_requires=parse_requirements('torch') + ['mmengine==0.10.7'],
    extras_require={
        'mm': parse_requirements('mminstall') + parse_requirements('runtime'),
        'tests': parse_requirements('tests'),
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False)
