# Copyright (c) mmtvmamba contributors. All rights reserved.
from .qat_model import QATModel

__all__ = ['QATModel']
