# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Hooks and parameter schedulers of TVMamba training."""
from .hooks import Q2TAnnealingHook
from .schedulers import ThreeStageLR, ThreeStageParamScheduler

__all__ = ['Q2TAnnealingHook', 'ThreeStageLR', 'ThreeStageParamScheduler']
