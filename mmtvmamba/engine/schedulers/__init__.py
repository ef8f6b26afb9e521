# Copyright (c) mmtvmamba contributors. All rights reserved.
from .three_stage_lr import ThreeStageLR, ThreeStageParamScheduler

__all__ = ['ThreeStageLR', 'ThreeStageParamScheduler']
