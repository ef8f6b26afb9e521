# Copyright (c) mmtvmamba contributors. All rights reserved.
from .q2t_annealing_hook import Q2TAnnealingHook

__all__ = ['Q2TAnnealingHook']
