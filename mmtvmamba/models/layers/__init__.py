# Copyright (c) mmtvmamba contributors. All rights reserved.
from .cross_scan import cross_merge, cross_scan
from .norm import LayerNorm2d
from .ss2d import SS2D
from .vss_block import Mlp2d, VSSBlock

__all__ = ['cross_scan', 'cross_merge', 'LayerNorm2d', 'SS2D', 'Mlp2d', 'VSSBlock']
