# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Registries of mmtvmamba, children of mmengine's root registries.

Configs name mmtvmamba types with the scope prefix, for example
``type='mmtvmamba.TVMambaVSSM'``, so they are found whatever the run's
default scope is (``mmdet``, ``mmpretrain`` or ``mmseg``).
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import Registry

__all__ = [
    'MODELS', 'HOOKS', 'LOOPS', 'METRICS', 'PARAM_SCHEDULERS',
    'OPTIM_WRAPPER_CONSTRUCTORS'
]

MODELS = Registry(
    'model',
    parent=MMENGINE_MODELS,
    scope='mmtvmamba',
    locations=['mmtvmamba.models'])
HOOKS = Registry(
    'hook',
    parent=MMENGINE_HOOKS,
    scope='mmtvmamba',
    locations=['mmtvmamba.engine'])
LOOPS = Registry(
    'loop',
    parent=MMENGINE_LOOPS,
    scope='mmtvmamba',
    locations=['mmtvmamba.engine'])
METRICS = Registry(
    'metric',
    parent=MMENGINE_METRICS,
    scope='mmtvmamba',
    locations=['mmtvmamba.evaluation'])
PARAM_SCHEDULERS = Registry(
    'parameter scheduler',
    parent=MMENGINE_PARAM_SCHEDULERS,
    scope='mmtvmamba',
    locations=['mmtvmamba.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope='mmtvmamba',
    locations=['mmtvmamba.engine'])
