# Copyright (c) mmtvmamba contributors. All rights reserved.
from .tvmamba_vssm import TVMambaVSSM

__all__ = ['TVMambaVSSM']
