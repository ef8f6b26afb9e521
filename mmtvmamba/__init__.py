# Copyright (c) mmtvmamba contributors. All rights reserved.
"""mmtvmamba: ternary Visual Mamba (TVMamba) for OpenMMLab 2.x.

Importing the package registers its models, hooks and schedulers in the
``mmtvmamba`` registries and installs the weights-only checkpoint loader
for local files (see :mod:`mmtvmamba.utils.checkpoint`).
"""
from . import engine, models, quantization, utils  # noqa: F401
from .version import __version__

__all__ = ['__version__']
